// Element Viewed: an element matching viewSelector ([data-ff-view]) was at
// least viewThreshold (50 %) visible for viewMs (1 s) without a break, once
// per page view. Elements added later are observed too. A fast scroll past
// an element restarts nothing and sends nothing.

import { now, ignored, describe, watchDom } from './util.js'
import { options } from './options.js'
import { track } from './events.js'

let viewed = new WeakSet()
let observeAll

export const views = () => {
  const pending = new Map() // element -> timer of its running view
  const observer = new IntersectionObserver(
    entries => {
      for (const { target: element, isIntersecting } of entries) {
        clearTimeout(pending.get(element))
        if (isIntersecting) {
          const since = now()
          pending.set(
            element,
            setTimeout(() => {
              observer.unobserve(element)
              viewed.add(element)
              track('Element Viewed', { ...describe(element), visible_ms: now() - since })
            }, options.viewMs),
          )
        }
      }
    },
    { threshold: options.viewThreshold },
  )
  // observe() of an element already observed is a no-op, so scanning again is cheap.
  observeAll = () => {
    for (const element of document.querySelectorAll(options.viewSelector))
      if (!viewed.has(element) && !ignored(element)) observer.observe(element)
  }
  observeAll()
  watchDom(observeAll)
}

// A new page view: every element may be viewed once more.
export const resetViews = () => {
  viewed = new WeakSet()
  observeAll?.()
}
