// Sessions: an id that slides with every message and expires after
// sessionTimeout of inactivity (30 min) or sessionMaxAge (24 h). Kept in
// storage so all tabs of a visit share it.

import { uuid, now } from './util.js'
import { get, set, remove } from './store.js'
import { options } from './options.js'

// { i: id, s: started at, l: last message at } (short keys: it is stored)
let inMemory

// Put the session in a message's context: sessionId, and sessionStart on its first message.
export const touch = context => {
  const time = now()
  let session = get('s') || inMemory
  if (!session || time - session.l > options.sessionTimeout || time - session.s > options.sessionMaxAge) {
    session = { i: uuid(), s: time }
    context.sessionStart = true
  }
  context.sessionId = session.i
  session.l = time
  inMemory = session
  set('s', session)
}

export const endSession = () => {
  inMemory = 0
  remove('s')
}
