// Sessions: an id that slides with every message and expires after
// sessionTimeout of inactivity (30 min) or sessionMaxAge (24 h). Kept in
// storage so all tabs of a visit share it.

import { uuid, now } from './util.js'
import { get, set, del } from './store.js'
import { o } from './options.js'

let mem

// Returns [sessionId, isFirstMessageOfSession].
export const touch = () => {
  let t = now(), s = get('s') || mem, fresh
  if (!s || t - s.l > o.sessionTimeout || t - s.s > o.sessionMaxAge) (s = { i: uuid(), s: t }), (fresh = 1)
  s.l = t
  set('s', (mem = s))
  return [s.i, fresh]
}

export const endSession = () => {
  mem = 0
  del('s')
}
