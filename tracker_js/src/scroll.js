// Scroll Depth Reached, once per page view for each mark. The percent is
// measured against the page's current height, so content added later moves
// the goal instead of firing marks early; a page shorter than the viewport is
// read whole (100 %). maxScroll feeds Page Engaged.

import { on } from './util.js'
import { options } from './options.js'
import { track } from './events.js'

// The deepest percent of this page view: the marks up to it were sent.
export let maxScroll

// A new page view (SPA navigation): the marks start over, measured once the new view rendered.
export const resetScroll = () => {
  maxScroll = 0
  setTimeout(checkScroll, 1e3)
}

export const checkScroll = () => {
  const pageHeight = document.documentElement.scrollHeight
  const viewportHeight = innerHeight
  // A page no taller than the viewport is seen whole: 100.
  const percent = Math.min(100, Math.round(((scrollY + viewportHeight) / pageHeight) * 100))
  // Without the scroll option (running for Page Engaged only): measured, never sent.
  if (options.scroll)
    for (const mark of options.scrollMarks)
      if (percent >= mark && mark > maxScroll)
        track('Scroll Depth Reached', { depth_percent: mark, page_height: pageHeight, viewport_height: viewportHeight })
  if (percent > maxScroll) maxScroll = percent
}

export const scroll = () => {
  maxScroll = 0
  let pending
  on(window, 'scroll resize', () => {
    pending = pending || setTimeout(() => {
      pending = 0
      checkScroll()
    }, 100)
  })
  // Measure only once the document is complete: a half-parsed page looks short.
  document.readyState == 'complete' ? checkScroll() : on(window, 'load', checkScroll)
}
