// Lossless delivery. Messages wait in an in-memory queue mirrored to
// localStorage (under a per-page key, so tabs don't overwrite each other),
// go out in batches by count or time, and leave the queue only when the
// collector acknowledged them. Network errors, 429 and 5xx are retried with
// exponential backoff and jitter (Retry-After wins); other 4xx are dropped.
// A page closing mid-request keeps its copy in storage and the next page
// sends it again: the collector deduplicates by messageId.

import { W, on } from './util.js'
import { get, set, del, keys } from './store.js'
import { o } from './options.js'

let Q = [], busy, timer, attempt = 0
const key = 'q' + Math.random().toString(36).slice(2)
export let dropped = 0

// One timer: the batching delay, or while retrying (attempt > 0) the backoff.
const later = ms => timer || (timer = setTimeout(() => ((timer = 0), flush(1)), ms))

// Bound the queue (1000 messages, 500 KB; oldest dropped, counted), then mirror it.
const save = () => {
  while (Q.length > 1e3 || JSON.stringify(Q).length > 5e5) Q.shift(), dropped++
  Q.length ? set(key, Q) : del(key)
}

export const start = () => on(W, 'online', () => flush(1))

// Take over queues that earlier pages (or other tabs) left behind.
export const adopt = () => {
  let old = []
  keys('q').map(k => k != key && ((old = old.concat(get(k) || [])), del(k)))
  Q = old.concat(Q)
  save()
  later(0)
}

export const push = m => {
  Q.push(m)
  save()
  Q.length < o.batchSize ? later(o.flushInterval) : flush()
}

export const stats = () => ({ queued: Q.length, dropped })

// Send the oldest batch: at most batchSize messages and ~60 KB, so the request
// fits the 64 KB keepalive budget and survives the page being closed.
// During a backoff only the retry timer (or coming back online) may send.
export const flush = retry => {
  if (busy || (attempt && !retry) || !Q.length) return
  clearTimeout(timer)
  timer = 0
  busy = 1
  let batch = Q.slice(0, o.batchSize), body
  while ((body = JSON.stringify({ batch, sentAt: new Date().toISOString(), writeKey: o.writeKey })).length > 6e4 && batch[1])
    batch.pop()
  const fail = after => {
    busy = 0
    clearTimeout(timer)
    timer = 0
    later(after >= 0 ? after * 1e3 : Math.min(o.retryDelay * 2 ** attempt, 6e4) * (0.5 + Math.random() / 2))
    attempt++
  }
  fetch(o.endpoint + o.apiPath, {
    method: 'POST',
    body,
    headers: { 'Content-Type': 'text/plain' },
    keepalive: body.length < 65e3,
    credentials: 'omit',
  }).then(r => {
    const s = r.status
    if (s == 429 || s > 499) return fail(parseFloat(r.headers.get('Retry-After')))
    // 2xx delivered; any other 4xx will never be accepted: drop, counted.
    if (s > 399) dropped += batch.length
    busy = attempt = 0
    Q = Q.filter(m => !batch.includes(m))
    save()
    flush()
  }, fail)
}
