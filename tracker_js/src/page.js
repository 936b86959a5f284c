// Page context and page views. Every message carries the current page in
// context.page; the page view changes on load, on SPA navigation
// (history.pushState / replaceState / popstate, and hashchange with
// hashRouting) and on a restore from the back/forward cache. The URL without
// its hash is the key (with hashRouting, the full URL): the same key twice is
// one page view. URLs and referrers are scrubbed of sensitive parameters.

import { on } from './util.js'
import { options } from './options.js'
import { scrubUrl } from './privacy.js'

let currentKey
let pageReferrer

export let pageInfo

const pageKey = () => (F_LIFECYCLE && options.hashRouting ? location.href : location.href.split('#')[0])

export const isNewPage = () => currentKey != pageKey()

// Make the current location the page view (the previous one becomes the
// referrer); force: a new view of the same URL (a back/forward cache restore).
// Called again for the same view it only refreshes url, title and search.
export const enterPage = force => {
  if (force || isNewPage()) {
    // The first page view's referrer is the document's; an SPA view's is the previous view's URL.
    pageReferrer = pageInfo ? pageInfo.url : scrubUrl(document.referrer)
    currentKey = pageKey()
  }
  pageInfo = {
    url: scrubUrl(location.href),
    path: location.pathname,
    referrer: pageReferrer,
    title: document.title,
    search: scrubUrl(location.search),
  }
}

// Call onNavigation after each navigation (deferred a tick: routers set the title after pushState).
export const watchHistory = onNavigation => {
  const later = () => setTimeout(onNavigation)
  for (const method of ['pushState', 'replaceState']) {
    const original = history[method]
    history[method] = (...args) => {
      later()
      return original.apply(history, args)
    }
  }
  on(window, 'popstate', later)
  if (F_LIFECYCLE && options.hashRouting) on(window, 'hashchange', later)
}
