// Element Hovered: the pointer rested on a [data-ff-hover] element (or
// hoverSelector) for at least hoverMs. Sent when the pointer leaves (or the
// page is hidden) with the whole dwell time; a quick pass sends nothing.

import { now, on, ignored, describe } from './util.js'
import { options } from './options.js'
import { track } from './events.js'

let hovered
let hoveredSince

export const endHover = () => {
  const dwell = now() - hoveredSince
  if (hovered && dwell >= options.hoverMs) track('Element Hovered', { ...describe(hovered), dwell_ms: dwell })
  hovered = 0
}

export const hover = () => {
  on(document, 'mouseover', event => {
    const element = event.target.closest(options.hoverSelector)
    if (element == hovered) return
    endHover()
    if (element && !ignored(element)) {
      hovered = element
      hoveredSince = now()
    }
  })
  // mouseleave (captured: each element left) on the hovered element itself.
  on(document, 'mouseleave', event => {
    if (event.target == hovered) endHover()
  })
}
