// Building messages and the consent gate every message passes.

import { uuid } from './util.js'
import { push } from './transport.js'
import * as identity from './identity.js'
import { touch } from './session.js'
import { allowed, decision } from './consent.js'
import { pageInfo } from './page.js'

const TIME_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone
let held = []

// undefined fields (no userId yet, a page without a name) are left out of the JSON.
export const message = (type, fields) => ({
  type,
  messageId: uuid(),
  timestamp: new Date().toISOString(),
  userId: identity.userId || undefined,
  context: {
    library: { name: 'footfall.js', version: VERSION },
    page: pageInfo,
    userAgent: navigator.userAgent,
    locale: navigator.language,
    timezone: TIME_ZONE,
    screen: { width: screen.width, height: screen.height },
  },
  ...fields,
})

// Identity, session and consent are attached when a message is let through,
// so messages held for consent get the ids that exist once it is given.
export const stamp = built => {
  built.anonymousId = identity.anonymousId
  touch(built.context)
  if (decision) built.context.consent = { categoryPreferences: decision }
  push(built)
}

// After a consent decision: send what was held (granted) or forget it.
export const release = granted => {
  if (granted) held.forEach(stamp)
  held = []
}

// The consent gate: send, hold in memory until a decision, or drop.
export const emit = built => {
  const decided = allowed()
  if (decided) stamp(built)
  else if (decided == null) held.push(built)
}

export const track = (event, properties) => emit(message('track', { event: '' + event, properties: properties || {} }))
