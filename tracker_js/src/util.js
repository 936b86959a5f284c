// Shared helpers. Kept tiny: every byte here ships to every page.

export const W = window
export const D = document
export const N = navigator
export const now = () => Date.now()

// RFC 4122 version 4 id from crypto.getRandomValues (randomUUID needs a secure context).
export const uuid = () =>
  ([1e7] + -1e3 + -4e3 + -8e3 + -1e11).replace(/[018]/g, c =>
    (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16))

// Capturing + passive: sees events even when the page stops propagation, never blocks scrolling.
export const on = (target, types, fn) =>
  types.split(' ').map(t => target.addEventListener(t, fn, { capture: true, passive: true }))

// data-ff-ignore on the element or any ancestor silences it.
export const ignored = el => el.closest('[data-ff-ignore]')

export const round2 = x => +x.toFixed(2)

// Visible label of an element, whitespace collapsed, at most 100 chars.
// textContent never includes what was typed into a field (an <input>'s is empty).
const text = el => el.textContent.replace(/\s+/g, ' ').trim().slice(0, 100)

// A short CSS selector: up to 5 levels, stopping at the nearest id.
const selector = el => {
  let parts = [], s, i
  for (; el && el.localName != 'body' && parts.length < 5; el = el.parentElement) {
    if (el.id) {
      parts.unshift('#' + CSS.escape(el.id))
      break
    }
    s = el.localName
    for (i of [...el.classList].slice(0, 2)) s += '.' + CSS.escape(i)
    i = [...el.parentNode.children].indexOf(el)
    parts.unshift(i ? s + ':nth-child(' + (i + 1) + ')' : s)
  }
  return parts.join('>')
}

// Properties that describe an element in Element Clicked / Element Hovered.
export const describe = el => ({
  selector: selector(el),
  tag: el.localName,
  id: el.id,
  classes: [...el.classList],
  text: text(el),
})
