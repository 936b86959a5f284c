// First-party storage (localStorage, "ff_" prefix). Nothing is written while
// writes are disabled (consent pending or refused); reads stay possible so
// an earlier decision can be honored. Where localStorage is unavailable
// (blocked storage, some private modes) or full, every call quietly does nothing.

const PREFIX = 'ff_'
let writable

// Storage throws where it is blocked: such a call just has no effect.
const attempt = operation => {
  try {
    return operation()
  } catch (error) {}
}

export const enable = allowed => {
  writable = allowed
}

// Named properties of localStorage are its items (a missing one reads as undefined).
export const get = key => attempt(() => JSON.parse(localStorage[PREFIX + key]))

// Store text that already is JSON (the queue keeps its messages serialized).
// force: the consent decision itself, remembered even when storage is refused.
export const putJson = (key, json, force) =>
  (writable || force) &&
  attempt(() => {
    localStorage[PREFIX + key] = json
  })

export const set = (key, value, force) => putJson(key, JSON.stringify(value), force)

export const remove = key => attempt(() => delete localStorage[PREFIX + key])

// Keys (without prefix) of stored items whose name starts with prefix.
export const keys = prefix =>
  attempt(() =>
    Object.keys(localStorage)
      .filter(key => key.startsWith(PREFIX + prefix))
      .map(key => key.slice(PREFIX.length)),
  ) || []
