// Frustration signals.
// Rage Click: at least 3 clicks on one element, each within 1 s of the
// previous and 30 px of the first, sent once per burst (when it ends) with
// the number of clicks.
// Dead Click: a click on a link or button after which nothing happens within
// 1 s: no DOM change, no URL or history change, no navigation, no form submit.

import { now, on, ignored, describe, watchDom, CLICKABLE } from './util.js'
import { track } from './events.js'

const WINDOW_MS = 1000
// The burst of clicks in progress: its element, first click's position, count, end timer.
let burstElement
let burstX
let burstY
let burstClicks = 0
let burstTimer
let lastChange = 0

const endBurst = () => {
  clearTimeout(burstTimer)
  if (burstClicks > 2) track('Rage Click', { ...describe(burstElement), clicks: burstClicks })
  burstElement = burstClicks = 0
}

export const frustration = () => {
  const changed = () => {
    lastChange = now()
  }
  watchDom(changed)
  on(document, 'submit', changed)
  on(document, 'click', event => {
    const { target, clientX: x, clientY: y } = event
    if (ignored(target)) return
    if (target != burstElement || Math.hypot(x - burstX, y - burstY) > 30) {
      endBurst()
      burstElement = target
      burstX = x
      burstY = y
    }
    burstClicks++
    clearTimeout(burstTimer)
    burstTimer = setTimeout(endBurst, WINDOW_MS)

    const clickable = target.closest(CLICKABLE)
    if (!clickable) return
    const clickedAt = now()
    const urlBefore = location.href
    setTimeout(() => {
      // A link followed to another page is no dead click, even when that page is slow
      // to come; a javascript: or same-page link is judged by what changed.
      const href = clickable.href
      const navigates = /^http/.test(href) && href.split('#')[0] != urlBefore.split('#')[0] && !event.defaultPrevented
      if (!navigates && lastChange < clickedAt && location.href == urlBefore) track('Dead Click', describe(clickable))
    }, WINDOW_MS)
  })
}

// The page is being left: a burst in progress ends now.
export const endFrustration = endBurst
