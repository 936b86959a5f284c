// First-party storage (localStorage, "ff_" prefix). Nothing is written while
// writes are disabled (consent pending or refused); reads stay possible so
// an earlier decision can be honored. Where localStorage is unavailable
// (blocked storage), everything stays in memory for the page's lifetime.

let enabled
const P = 'ff_'

export const enable = b => (enabled = b)

export const get = k => {
  try {
    return JSON.parse(localStorage.getItem(P + k))
  } catch (e) {}
}

// force: the consent decision itself, remembered even when storage is refused.
export const set = (k, v, force) => {
  try {
    ;(enabled || force) && localStorage.setItem(P + k, JSON.stringify(v))
  } catch (e) {}
}

export const del = k => {
  try {
    localStorage.removeItem(P + k)
  } catch (e) {}
}

// Keys (without prefix) of stored items whose name starts with prefix p.
export const keys = p => {
  try {
    return Object.keys(localStorage).filter(k => !k.indexOf(P + p)).map(k => k.slice(3))
  } catch (e) {
    return []
  }
}
