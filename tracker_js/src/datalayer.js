// dataLayer bridge: dataLayer.push({event: name, ...}) of the configured
// event names becomes track(name, {...}) (gtm.* keys left out). Entries
// pushed before footfall loaded are forwarded too.

import { track } from './events.js'

export const dataLayer = eventNames => {
  const layer = (window.dataLayer = window.dataLayer || [])
  const originalPush = layer.push
  const forward = entry => {
    if (!eventNames.includes(entry?.event)) return
    const properties = {}
    for (const key in entry) if (key != 'event' && !key.startsWith('gtm.')) properties[key] = entry[key]
    track(entry.event, properties)
  }
  layer.forEach(forward)
  layer.push = (...entries) => {
    entries.forEach(forward)
    return originalPush.apply(layer, entries)
  }
}
