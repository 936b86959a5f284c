// Building messages and the consent gate every message passes.

import { N, uuid } from './util.js'
import { o } from './options.js'
import { push } from './transport.js'
import * as id from './identity.js'
import { touch } from './session.js'
import { allowed, decision } from './consent.js'
import { pageInfo } from './page.js'

const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone
let held = []

export const message = (type, fields) => {
  const m = {
    type,
    messageId: uuid(),
    timestamp: new Date().toISOString(),
    context: {
      library: { name: 'footfall.js', version: VERSION },
      page: pageInfo,
      userAgent: N.userAgent,
      locale: N.language,
      timezone: TZ,
      screen: { width: screen.width, height: screen.height },
    },
    ...fields,
  }
  if (id.userId) m.userId = id.userId
  return m
}

// Identity, session and consent are attached when a message is let through,
// so messages held for consent get the ids that exist once it is given.
export const stamp = m => {
  const [sid, first] = touch()
  m.anonymousId = id.anonymousId
  m.context.sessionId = sid
  if (first) m.context.sessionStart = true
  if (decision) m.context.consent = { categoryPreferences: decision }
  push(m)
}

// After a consent decision: send what was held (granted) or forget it.
export const release = granted => {
  granted && held.map(stamp)
  held = []
}

// The consent gate: send, hold in memory until a decision, or drop.
export const emit = m => {
  const a = allowed()
  a ? stamp(m) : a == null && held.push(m)
}

export const track = (event, properties) => emit(message('track', { event: '' + event, properties: properties || {} }))
