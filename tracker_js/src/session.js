// Sessions: an id that slides with every message and expires after
// sessionTimeout of inactivity (30 min) or sessionMaxAge (24 h). Kept in
// storage so all tabs of a visit share it.

import { uuid, now } from './util.js'
import { get, set, remove } from './store.js'
import { options } from './options.js'

// { i: id, s: started at, l: last message at } (short keys: it is stored)
let inMemory

// Returns [sessionId, isFirstMessageOfSession].
export const touch = () => {
  const time = now()
  let session = get('s') || inMemory
  let isNew
  if (!session || time - session.l > options.sessionTimeout || time - session.s > options.sessionMaxAge) {
    session = { i: uuid(), s: time }
    isNew = true
  }
  session.l = time
  inMemory = session
  set('s', session)
  return [session.i, isNew]
}

export const endSession = () => {
  inMemory = 0
  remove('s')
}
