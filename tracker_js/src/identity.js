// Who: a random anonymousId kept in first-party storage, and the userId
// given to identify()/alias(). Both live in memory first and are written only
// when storage is allowed (see consent.js), so nothing persists before consent.

import { uuid } from './util.js'
import { get, set, del } from './store.js'

export let anonymousId, userId

export const load = () => {
  anonymousId = get('a') || uuid()
  userId = get('u')
}

export const save = () => {
  set('a', anonymousId)
  userId ? set('u', userId) : del('u')
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
