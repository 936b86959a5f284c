// Scroll Depth Reached, once per page view for each mark. The percent is
// measured against the page's current height, so content added later moves
// the goal instead of firing marks early; a page shorter than the viewport is
// read whole (100 %). maxScroll feeds Page Engaged.

import { W, D, on } from './util.js'
import { o } from './options.js'
import { track } from './events.js'

let done, enabled
export let maxScroll

export const resetScroll = () => {
  done = {}
  maxScroll = 0
}

export const checkScroll = () => {
  const h = D.documentElement.scrollHeight, v = W.innerHeight,
    pct = h <= v ? 100 : Math.min(100, Math.round(((W.scrollY + v) / h) * 100))
  if (pct > maxScroll) maxScroll = pct
  if (enabled)
    for (const m of o.scrollMarks)
      if (pct >= m && !done[m]) {
        done[m] = 1
        track('Scroll Depth Reached', { depth_percent: m, page_height: h, viewport_height: v })
      }
}

// send false: only measure maxScroll (for Page Engaged), send nothing.
export const scroll = send => {
  enabled = send
  resetScroll()
  let pending
  on(W, 'scroll resize', () => pending || (pending = setTimeout(() => ((pending = 0), checkScroll()), 100)))
  // Measure only once the document is complete: a half-parsed page looks short.
  D.readyState == 'complete' ? checkScroll() : on(W, 'load', checkScroll)
}
