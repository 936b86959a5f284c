// Shared helpers. Kept tiny: every byte here ships to every page.

export const now = () => Date.now()

// A random (version 4) UUID. crypto.randomUUID needs a secure context; a blob:
// URL ends in one everywhere (its registration is revoked at once).
export const uuid = () => {
  const url = URL.createObjectURL(new Blob())
  URL.revokeObjectURL(url)
  return url.slice(-36)
}

// Capturing + passive: sees events even when the page stops propagation, never blocks scrolling.
export const on = (target, types, listener) => {
  for (const type of types.split(' ')) target.addEventListener(type, listener, { capture: true, passive: true })
}

// data-ff-ignore on the element or any ancestor silences it.
export const ignored = element => element.closest('[data-ff-ignore]')

export const round2 = number => +number.toFixed(2)

// Elements a click on which is an interaction: Element Clicked, Dead Click.
export const CLICKABLE = 'a,button,[role=button],input[type=submit],[data-ff-track]'

// Visible label of an element, whitespace collapsed, at most 100 chars.
// textContent never includes what was typed into a field (an <input>'s is empty).
const visibleText = element => element.textContent.replace(/\s+/g, ' ').trim().slice(0, 100)

// A short CSS selector: up to 5 levels, stopping at the nearest id. The id is
// read as an attribute: a form's .id can be shadowed by a field named "id".
export const selectorOf = element => {
  const parts = []
  for (; element && element.localName != 'body' && parts.length < 5; element = element.parentElement) {
    const id = element.getAttribute('id')
    if (id) {
      parts.unshift('#' + CSS.escape(id))
      break
    }
    let part = element.localName
    for (const className of [...element.classList].slice(0, 2)) part += '.' + CSS.escape(className)
    const position = [...element.parentNode.children].indexOf(element)
    parts.unshift(position ? part + ':nth-child(' + (position + 1) + ')' : part)
  }
  return parts.join('>')
}

// Properties that describe an element in Element Clicked / Hovered / Viewed and the frustration signals.
export const describe = element => ({
  selector: selectorOf(element),
  tag: element.localName,
  id: element.id,
  classes: [...element.classList],
  text: visibleText(element),
})

// Call onChange after any change to the document (nodes, attributes, text).
export const watchDom = onChange =>
  new MutationObserver(onChange).observe(document, { childList: true, subtree: true, attributes: true, characterData: true })
