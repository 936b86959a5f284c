// Who: a random anonymousId and the userId given to identify()/alias(). The
// anonymousId is read from localStorage, else from the ff_id cookie the
// collector sets when configured to (it outlives Safari's 7-day cap on
// script-written storage), else made new and kept in memory. Both ids are
// written only when storage is allowed (see consent.js), so nothing persists
// before consent.

import { uuid } from './util.js'
import { get, set, remove } from './store.js'

export let anonymousId
export let userId

const idCookie = () => document.cookie.match(/(?:^|; )ff_id=([\w-]+)/)?.[1]

export const load = () => {
  anonymousId = get('a') || (F_ID_COOKIE && idCookie()) || uuid()
  userId = get('u')
}

export const save = () => {
  set('a', anonymousId)
  userId ? set('u', userId) : remove('u')
}

export const setUser = id => {
  userId = '' + id
  save()
}

export const reset = () => {
  anonymousId = uuid()
  userId = null
  save()
}
