// Consent. allowed() is true (collect, store, send), false (drop), or null
// (undecided under requireConsent: hold in memory, store nothing, send nothing).
// An explicit decision wins; without one, Global Privacy Control (and Do Not
// Track when respectDNT is set) count as an opt-out.

import { get } from './store.js'
import { options } from './options.js'

export let decision

export const loadConsent = () => {
  decision = get('c')
}

export const allowed = () => {
  if (decision) return !!decision.analytics
  if ((options.respectGPC && navigator.globalPrivacyControl) || (options.respectDNT && navigator.doNotTrack == '1')) return false
  return options.requireConsent ? null : true
}

// Purposes become booleans; policy_version is kept apart as a string.
// Returns the Consent Updated properties. (for-in over undefined runs no loop.)
export const decide = preferences => {
  const properties = {}
  decision = {}
  for (const purpose in preferences) {
    if (purpose == 'policy_version') properties[purpose] = '' + preferences[purpose]
    else decision[purpose] = properties[purpose] = !!preferences[purpose]
  }
  return properties
}
