// dataLayer bridge: dataLayer.push({event: name, ...}) of the configured
// event names becomes track(name, {...}) (gtm.* keys left out). Entries
// pushed before footfall loaded are forwarded too.

import { W } from './util.js'
import { track } from './events.js'

export const dataLayer = names => {
  const dl = (W.dataLayer = W.dataLayer || []), push = dl.push
  const fwd = e => {
    if (e && names.includes(e.event)) {
      const p = {}
      for (const k in e) k == 'event' || !k.indexOf('gtm.') || (p[k] = e[k])
      track(e.event, p)
    }
  }
  dl.map(fwd)
  dl.push = function () {
    [...arguments].map(fwd)
    return push.apply(dl, arguments)
  }
}
