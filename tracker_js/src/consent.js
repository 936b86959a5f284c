// Consent. allowed() is true (collect, store, send), false (drop), or null
// (undecided under requireConsent: hold in memory, store nothing, send nothing).
// An explicit decision wins; without one, Global Privacy Control (and Do Not
// Track when respectDNT is set) count as an opt-out.

import { N } from './util.js'
import { get } from './store.js'
import { o } from './options.js'

export let decision

export const loadConsent = () => (decision = get('c'))

export const allowed = () =>
  decision
    ? !!decision.analytics
    : (o.respectGPC && N.globalPrivacyControl) || (o.respectDNT && N.doNotTrack == '1')
      ? false
      : o.requireConsent
        ? null
        : true

// Purposes become booleans; policy_version is kept apart as a string.
// Returns the Consent Updated properties.
export const decide = prefs => {
  let k, props = {}
  decision = {}
  for (k in prefs) k == 'policy_version' ? (props[k] = '' + prefs[k]) : (decision[k] = props[k] = !!prefs[k])
  return props
}
