// Entry: replaces the snippet's stub, runs the commands, wires the features.
// Feature flags F_* are compile-time constants (build.mjs) so the byte cost
// of each feature can be measured by building without it.

import { on } from './util.js'
import { enable, set, remove, keys } from './store.js'
import { options, configure } from './options.js'
import { adopt, flush, stats } from './transport.js'
import { message, stamp, emit, release, track } from './events.js'
import * as identity from './identity.js'
import { endSession } from './session.js'
import { loadConsent, allowed, decide, decision } from './consent.js'
import { pageInfo, isNewPage, enterPage, watchHistory } from './page.js'
import { segments } from './segments.js'
import { clicks } from './clicks.js'
import { scroll, resetScroll } from './scroll.js'
import { hover, endHover } from './hover.js'
import { video } from './video.js'
import { engage, reportEngaged, resumeEngagement } from './engage.js'
import { dataLayer } from './datalayer.js'
import { views, resetViews } from './views.js'
import { formTracking, abandonForms } from './forms.js'
import { frustration, endFrustration } from './frustration.js'

// Commands called before init (init may come later in the snippet's queue).
let beforeInit = []

const page = (name, properties) => {
  if (typeof name == 'object') {
    properties = name
    name = 0
  }
  enterPage()
  emit(message('page', { name: name ? '' + name : undefined, properties: { ...pageInfo, ...properties } }))
}

// After an SPA navigation (or, forced, a restore from the back/forward
// cache): close the old page view, open the new one.
const navigate = force => {
  if (!force && !isNewPage()) return
  if (F_ENGAGEMENT) reportEngaged()
  enterPage(force)
  if (F_SCROLL) resetScroll()
  if (F_VIEWS) resetViews()
  if (F_PAGES && options.pageviews) page()
}

// Page hidden (pageLeft false) or left: last words, then everything not yet
// acknowledged goes out in keepalive requests.
const leave = pageLeft => {
  if (F_HOVER) endHover()
  if (F_ENGAGEMENT) reportEngaged(1)
  if (F_FRUSTRATION) endFrustration()
  if (F_FORMS && pageLeft) abandonForms()
  flush(0, 1)
}

// The automatic events. They start after the snippet's queued commands ran,
// so an identify() or consent() queued right after init applies to the first
// page view; a prerendered page starts them (and sends) only once shown.
const startFeatures = () => {
  watchHistory(navigate)
  if (F_PAGES && options.pageviews) page()
  if (F_CLICKS && options.clicks) clicks()
  if (F_SCROLL && (options.scroll || options.engagement)) scroll()
  if (F_HOVER && options.hover) hover()
  if (F_VIDEO && options.video) video()
  if (F_ENGAGEMENT && options.engagement) engage()
  if (F_DATALAYER && options.dataLayerEvents) dataLayer(options.dataLayerEvents)
  if (F_VIEWS && options.views) views()
  if (F_FORMS && options.forms) formTracking()
  if (F_FRUSTRATION && options.frustration) frustration()
  on(window, 'online', () => flush(true))
  on(window, 'pagehide', () => leave(1))
  on(document, 'visibilitychange', () => (document.hidden ? leave() : F_ENGAGEMENT && resumeEngagement()))
  if (F_LIFECYCLE) on(window, 'pageshow', event => event.persisted && navigate(1))
}

// Storage allowed or not: once allowed, the ids are written and earlier pages' queues adopted.
const useStorage = granted => {
  enable(granted)
  if (granted) {
    identity.save()
    adopt()
  }
}

const api = {
  init(given) {
    configure(given)
    loadConsent()
    identity.load()
    useStorage(allowed())
    enterPage()
    if (F_LIFECYCLE && document.prerendering)
      on(document, 'prerenderingchange', () => {
        startFeatures()
        flush()
      })
    else setTimeout(startFeatures)
  },
  track,
  page,
  identify(userId, traits) {
    if (typeof userId == 'object' && userId) {
      traits = userId
      userId = 0
    }
    if (userId) identity.setUser(userId)
    emit(message('identify', { traits: traits || {} }))
  },
  alias(newUserId) {
    const previousId = identity.userId || identity.anonymousId
    identity.setUser(newUserId)
    emit(message('alias', { previousId }))
  },
  reset() {
    identity.reset()
    endSession()
  },
  consent(preferences) {
    const properties = decide(preferences)
    const granted = allowed()
    // The decision itself is remembered either way (a strictly necessary record).
    set('c', decision, 1)
    useStorage(granted)
    if (!granted) for (const key of keys('')) if (key != 'c') remove(key)
    // Sent even when refused, so the collector's consent ledger records it
    // (a refusal stores no identifier on the device, and the collector
    // expires its id cookie). Held events follow it when consent is given and
    // are discarded when it is not.
    stamp(message('track', { event: 'Consent Updated', properties }))
    release(granted)
    flush()
  },
  flush,
  stats,
  anonymousId: () => identity.anonymousId,
  segments: F_SEGMENTS ? segments : () => {},
}

// Run one command; before init, commands wait.
const run = commandLine => {
  const [command, ...args] = commandLine
  if (command == 'init') {
    if (options) return
    api.init(args[0])
    beforeInit.forEach(run)
    beforeInit = []
  } else if (!options) beforeInit.push(commandLine)
  else return api[command]?.(...args)
}

const stub = window.footfall || {}
if (!stub.v) {
  const footfall = (window.footfall = (...commandLine) => run(commandLine))
  footfall.v = VERSION
  for (const commandLine of stub.q || []) run([...commandLine])
}
