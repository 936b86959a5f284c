// First-party storage (localStorage, "ff_" prefix). Nothing is written while
// writes are disabled (consent pending or refused); reads stay possible so
// an earlier decision can be honored. Where localStorage is unavailable
// (blocked storage, some private modes) every call quietly does nothing.

const PREFIX = 'ff_'
let writable

export const enable = allowed => {
  writable = allowed
}

export const get = key => {
  try {
    return JSON.parse(localStorage.getItem(PREFIX + key))
  } catch (error) {}
}

// Store text that already is JSON (the queue keeps its messages serialized).
// force: the consent decision itself, remembered even when storage is refused.
export const putJson = (key, json, force) => {
  try {
    if (writable || force) localStorage.setItem(PREFIX + key, json)
  } catch (error) {}
}

export const set = (key, value, force) => putJson(key, JSON.stringify(value), force)

export const remove = key => {
  try {
    localStorage.removeItem(PREFIX + key)
  } catch (error) {}
}

// Keys (without prefix) of stored items whose name starts with prefix.
export const keys = prefix => {
  try {
    return Object.keys(localStorage)
      .filter(key => key.startsWith(PREFIX + prefix))
      .map(key => key.slice(PREFIX.length))
  } catch (error) {
    return []
  }
}
