// Page Engaged: time the page was visible and in use (an input in the last
// 30 s), reported when the page is hidden or left and on SPA navigation.
// Each report carries the time since the previous one.

import { now, on } from './util.js'
import { options } from './options.js'
import { maxScroll } from './scroll.js'
import { track } from './events.js'

const IDLE_MS = 3e4
let engagedMs = 0
let countedUntil = now()
let lastInput = countedUntil

// Count engaged time up to now (no further than IDLE_MS after the last input).
const countUntilNow = () => {
  const time = now()
  engagedMs += Math.max(0, Math.min(time, lastInput + IDLE_MS) - countedUntil)
  countedUntil = time
}

export const engage = () => {
  on(document, 'mousemove keydown scroll pointerdown touchstart', () => {
    countUntilNow()
    lastInput = countedUntil
  })
}

// The page is visible again: counting starts over from now.
export const resumeEngagement = () => {
  countedUntil = lastInput = now()
}

// Emit Page Engaged for the time collected so far (if any) and start over.
// stop (page hidden or left): nothing counts until it is visible again, so
// pagehide and visibilitychange, which both fire on leaving, report once.
export const reportEngaged = stop => {
  // Features start after init; engage() ran then if this option is on.
  if (!options.engagement) return
  countUntilNow()
  if (stop) countedUntil = 1 / 0
  const reported = engagedMs
  engagedMs = 0
  if (reported) track('Page Engaged', { engaged_ms: reported, max_scroll_percent: maxScroll })
}
