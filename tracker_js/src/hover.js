// Element Hovered: the pointer rested on a [data-ff-hover] element (or
// hoverSelector) for at least hoverMs. Sent when the pointer leaves (or the
// page is hidden) with the whole dwell time; a quick pass sends nothing.

import { D, now, on, ignored, describe } from './util.js'
import { o } from './options.js'
import { track } from './events.js'

let cur, since

export const endHover = () => {
  const dwell = now() - since
  if (cur && dwell >= o.hoverMs) track('Element Hovered', { ...describe(cur), dwell_ms: dwell })
  cur = 0
}

export const hover = () => {
  on(D, 'mouseover', e => {
    const el = e.target.closest(o.hoverSelector)
    if (el == cur) return
    endHover()
    if (el && !ignored(el)) (cur = el), (since = now())
  })
  on(D, 'mouseout', e => cur && !cur.contains(e.relatedTarget) && endHover())
}
