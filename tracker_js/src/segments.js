// The visitor's segments (the collector's browser-exposed segments this
// anonymousId is a member of). The list arrives with every ingest answer of a
// site that exposes segments; footfall('segments', callback) answers from it,
// or asks GET /v1/segments once. A change is announced as a footfall:segments
// event on window (detail.segments).

import { options } from './options.js'
import { anonymousId } from './identity.js'
import { allowed } from './consent.js'

let knownSegments

// segments: the list of an answer that has one (undefined otherwise: nothing to learn).
export const receiveSegments = segments => {
  // Keys are plain strings: the joined lists compare as the lists do.
  if (!segments || '' + segments == knownSegments) return
  knownSegments = segments
  dispatchEvent(new CustomEvent('footfall:segments', { detail: { segments } }))
}

export const segments = callback => {
  if (knownSegments) return callback(knownSegments)
  // Asking sends the anonymousId: not before consent.
  if (allowed() !== true) return callback([])
  fetch(options.endpoint + '/v1/segments?writeKey=' + options.writeKey + '&anonymousId=' + anonymousId, {
    credentials: options.credentials,
  })
    .then(response => response.json())
    .then(answer => receiveSegments(answer.segments))
    .catch(() => {})
    .then(() => callback(knownSegments || []))
}
