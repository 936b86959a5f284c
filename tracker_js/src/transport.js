// Lossless delivery. Messages are serialized once, wait in an in-memory queue
// mirrored to localStorage (under a per-page key, so tabs don't overwrite each
// other), go out in batches by count or time, and leave the queue only when
// the collector acknowledged them. Network errors, 429 and 5xx are retried
// with exponential backoff and jitter (Retry-After wins); other 4xx are final
// (dropped, counted), and a 401/403 (wrong write key or origin) stops sending
// for the page. A page closing mid-request keeps its copy in storage and the
// next page sends it again: the collector deduplicates by messageId.

import { uuid } from './util.js'
import { get, putJson, remove, keys } from './store.js'
import { options, debugLog } from './options.js'
import { receiveSegments } from './segments.js'

// Browsers allow 64 KB of keepalive request bodies in flight per page.
const MAX_REQUEST_BYTES = 6e4
const storageKey = 'q' + uuid()

// JSON text of each message not yet acknowledged, oldest first.
let queue = []
// Messages of requests still waiting for an answer.
const inFlight = new Set()
let timer
let attempt = 0
let stoppedByStatus

// What stats() reports besides the queue length; refused/failed/errors map a reason to a count.
const counts = { dropped: 0, refused: {}, failed: {}, errors: {} }

// One more refusal, failure or error (by reason) in stats(); logged with debug: true.
const count = (kind, reason, number, ...details) => {
  const table = counts[kind]
  table[reason] = (table[reason] || 0) + number
  debugLog(kind, reason, ...details)
}

// Bound the queue (1000 messages, 500 KB; oldest dropped, counted), then mirror it.
const save = () => {
  let json
  while ((json = '[' + queue.join() + ']').length > 5e5 || queue.length > 1e3) {
    queue.shift()
    counts.dropped++
  }
  queue.length ? putJson(storageKey, json) : remove(storageKey)
}

// One timer: the batching delay, or while retrying (attempt > 0) the backoff.
const schedule = delay => {
  timer = timer || setTimeout(() => {
    timer = 0
    flush(true)
  }, delay)
}

const retryLater = retryAfterSeconds => {
  clearTimeout(timer)
  timer = 0
  schedule(
    retryAfterSeconds >= 0
      ? retryAfterSeconds * 1e3
      : Math.min(options.retryDelay * 2 ** attempt, 6e4) * (0.5 + Math.random() / 2),
  )
  attempt++
}

// What the collector said about the messages it took (refusals, failures, the
// visitor's segments) or why it took none.
const readAnswer = (status, answer) => {
  if (F_SEGMENTS) receiveSegments(answer.segments)
  if (!F_ANSWERS) return
  if (status > 399) count('errors', answer.error || status, 1, status, answer.detail)
  for (const reason in answer.refused) count('refused', reason, answer.refused[reason], answer.refused[reason])
  for (const failure of answer.failed || []) count('failed', failure.reason, 1, failure.messageId, failure.errors)
}

const send = (batch, bytes) => {
  for (const message of batch) inFlight.add(message)
  const body =
    '{"batch":[' + batch.join() + '],"sentAt":"' + new Date().toISOString() + '","writeKey":' + JSON.stringify(options.writeKey) + '}'
  fetch(options.endpoint + options.apiPath, {
    method: 'POST',
    // A string body goes as text/plain;charset=UTF-8: a CORS "simple" request, no preflight.
    body,
    keepalive: bytes < MAX_REQUEST_BYTES,
    credentials: options.credentials,
  })
    .finally(() => {
      for (const message of batch) inFlight.delete(message)
    })
    .then(response => {
      const status = response.status
      if (status == 429 || status > 499) return retryLater(parseFloat(response.headers.get('Retry-After')))
      // Delivered (2xx), or never to be accepted (4xx): off the queue either way.
      attempt = 0
      queue = queue.filter(message => !batch.includes(message))
      if (status > 399) counts.dropped += batch.length
      // A wrong write key or origin will not fix itself: stop, and say so once.
      if (status == 401 || status == 403) {
        stoppedByStatus = 1
        counts.dropped += queue.length
        queue = []
      }
      save()
      flush()
      if (F_ANSWERS || F_SEGMENTS)
        response
          .json()
          .catch(() => ({}))
          .then(answer => readAnswer(status, answer))
    }, () => retryLater())
}

// Take over queues that earlier pages (or other tabs) left behind, before our own.
export const adopt = () => {
  for (const key of keys('q'))
    if (key != storageKey) {
      queue = (get(key) || []).map(message => JSON.stringify(message)).concat(queue)
      remove(key)
    }
  save()
  schedule(0)
}

export const push = message => {
  if (stoppedByStatus) {
    counts.dropped++
    return
  }
  queue.push(JSON.stringify(message))
  save()
  queue.length < options.batchSize ? schedule(options.flushInterval) : flush()
}

export const stats = () => ({ queued: queue.length, ...counts })

// Send the oldest waiting messages: at most batchSize and MAX_REQUEST_BYTES
// (counted in UTF-8 bytes, as the browser counts them) per request. Normally
// one request at a time; during a backoff only the retry timer (or coming back
// online) may send. leaving (page hidden or left): everything not already in
// a request goes out now, in as many keepalive requests as it takes; a request
// still unanswered is keepalive too and outlives the page. Prerendered pages
// send nothing until shown.
export const flush = (retry, leaving) => {
  if (document.prerendering || stoppedByStatus) return
  if (!leaving && (inFlight.size || (attempt && !retry))) return
  clearTimeout(timer)
  timer = 0
  let batch = []
  let bytes = 200 // the envelope: sentAt, writeKey
  for (const message of queue) {
    if (inFlight.has(message)) continue
    const size = new Blob([message]).size + 1
    if (batch.length == options.batchSize || (batch.length && bytes + size > MAX_REQUEST_BYTES)) {
      send(batch, bytes)
      if (!leaving) return
      batch = []
      bytes = 200
    }
    batch.push(message)
    bytes += size
  }
  if (batch.length) send(batch, bytes)
}
