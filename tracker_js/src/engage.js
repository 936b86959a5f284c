// Page Engaged: time the page was visible and in use (an input in the last
// 30 s), reported when the page is hidden or left and on SPA navigation.
// Each report carries the time since the previous one.

import { D, now, on } from './util.js'
import { maxScroll } from './scroll.js'
import { track } from './events.js'

const IDLE = 3e4
let started, total = 0, since = now(), last = since

// Count engaged time up to t (no further than IDLE after the last input).
const fold = t => {
  total += Math.max(0, Math.min(t, last + IDLE) - since)
  since = t
}

export const engage = () => {
  started = 1
  on(D, 'mousemove keydown scroll pointerdown touchstart', () => (fold(now()), (last = since)))
  on(D, 'visibilitychange', () => D.hidden || (since = last = now()))
}

// Emit Page Engaged for the time collected so far (if any) and start over.
// stop (page hidden or left): nothing counts until it is visible again, so
// pagehide and visibilitychange, which both fire on leaving, report once.
export const reportEngaged = stop => {
  if (!started) return
  fold(now())
  if (stop) since = 1 / 0
  const ms = total
  total = 0
  ms && track('Page Engaged', { engaged_ms: ms, max_scroll_percent: maxScroll })
}
