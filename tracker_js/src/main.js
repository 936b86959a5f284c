// Entry: replaces the snippet's stub, runs the commands, wires the features.
// Feature flags F_* are compile-time constants (build.mjs) so the byte cost
// of each feature can be measured by building without it.

import { W, D, on } from './util.js'
import { enable, set, del, keys } from './store.js'
import { o, configure } from './options.js'
import { start, adopt, flush, stats } from './transport.js'
import { message, stamp, emit, release, track } from './events.js'
import * as id from './identity.js'
import { endSession } from './session.js'
import { loadConsent, allowed, decide, decision } from './consent.js'
import { pageInfo, isNewPage, enterPage, watchHistory } from './page.js'
import { clicks } from './clicks.js'
import { scroll, resetScroll, checkScroll } from './scroll.js'
import { hover, endHover } from './hover.js'
import { video } from './video.js'
import { engage, reportEngaged } from './engage.js'
import { dataLayer } from './datalayer.js'

let pre = []

const page = (name, properties) => {
  if (typeof name == 'object') (properties = name), (name = 0)
  enterPage()
  const m = message('page', { properties: { ...pageInfo, ...properties } })
  if (name) m.name = '' + name
  emit(m)
}

// After an SPA navigation: close the old page view, open the new one.
const navigate = () => {
  if (!isNewPage()) return
  if (F_ENGAGEMENT) reportEngaged()
  enterPage()
  if (F_SCROLL) resetScroll(), setTimeout(checkScroll, 1e3)
  if (F_PAGES && o.pageviews) page()
}

// Page hidden or left: last words, then send what is queued (keepalive).
const leave = () => {
  if (F_HOVER) endHover()
  if (F_ENGAGEMENT) reportEngaged(1)
  flush()
}

const api = {
  init(opts) {
    configure(opts)
    loadConsent()
    enable(allowed() === true)
    id.load()
    start()
    if (allowed()) id.save(), adopt()
    enterPage()
    // Automatic events start after the snippet's queued commands ran, so an
    // identify() or consent() queued right after init applies to the first page view.
    setTimeout(() => {
      watchHistory(navigate)
      if (F_PAGES && o.pageviews) page()
      if (F_CLICKS && o.clicks) clicks()
      if (F_SCROLL && (o.scroll || o.engagement)) scroll(o.scroll)
      if (F_HOVER && o.hover) hover()
      if (F_VIDEO && o.video) video()
      if (F_ENGAGEMENT && o.engagement) engage()
      if (F_DATALAYER && o.dataLayerEvents) dataLayer(o.dataLayerEvents)
      on(W, 'pagehide', leave)
      on(D, 'visibilitychange', () => D.hidden && leave())
    })
  },
  track,
  page,
  identify(userId, traits) {
    if (typeof userId == 'object' && userId) (traits = userId), (userId = 0)
    if (userId) id.setUser(userId)
    emit(message('identify', { traits: traits || {} }))
  },
  alias(newId) {
    const previousId = id.userId || id.anonymousId
    id.setUser(newId)
    emit(message('alias', { previousId }))
  },
  reset() {
    id.reset()
    endSession()
  },
  consent(prefs) {
    const props = decide(prefs || {}), a = allowed()
    // The decision itself is remembered either way (a strictly necessary record).
    set('c', decision, 1)
    enable(a)
    if (a) id.save(), adopt()
    else keys('').map(k => k == 'c' || del(k))
    // Sent even when refused, so the collector's consent ledger records it
    // (a refusal stores no identifier on the device). Held events follow it
    // when consent is given and are discarded when it is not.
    stamp(message('track', { event: 'Consent Updated', properties: props }))
    release(a)
    flush()
  },
  flush,
  stats,
}

// Run one command; before init, commands wait (init may come later in the queue).
const run = args => {
  const [c, ...a] = args
  if (c == 'init') {
    if (!o) api.init(a[0]), pre.map(run), (pre = [])
  } else if (!o) pre.push(args)
  else if (api[c]) return api[c](...a)
}

if (!(W.footfall && W.footfall.v)) {
  const queued = (W.footfall && W.footfall.q) || []
  W.footfall = function () {
    return run([...arguments])
  }
  W.footfall.v = VERSION
  queued.map(args => run([...args]))
}
