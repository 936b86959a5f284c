// Page context and page views. Every message carries the current page in
// context.page; the page view changes on load and on SPA navigation
// (history.pushState / replaceState / popstate). The URL without its hash is
// the key: the same URL twice is one page view.

import { W, D, on } from './util.js'

const L = location
let lastKey

export let pageInfo

const key = () => L.href.split('#')[0]

export const isNewPage = () => lastKey != key()

// Make the current location the page view (the previous one becomes the referrer).
export const enterPage = () => {
  if (!isNewPage()) return
  // The first page view's referrer is the document's; an SPA view's is the previous view's URL.
  pageInfo = { url: L.href, path: L.pathname, referrer: lastKey || D.referrer, title: D.title, search: L.search }
  lastKey = key()
}

// Call onNav after each navigation (deferred a tick: routers set the title after pushState).
export const watchHistory = onNav => {
  const H = history, later = () => setTimeout(onNav)
  for (const f of ['pushState', 'replaceState']) {
    const orig = H[f]
    H[f] = function () {
      later()
      return orig.apply(this, arguments)
    }
  }
  on(W, 'popstate', later)
}
