// Init options, with their defaults (docs/tracker.md lists them). Every
// module reads them from here.

import { D } from './util.js'

const DEFAULTS = {
  apiPath: '/v1/batch',
  batchSize: 20,
  flushInterval: 1000,
  retryDelay: 1000,
  respectGPC: true,
  pageviews: true,
  clicks: true,
  scroll: true,
  scrollMarks: [25, 50, 75, 90, 100],
  hover: true,
  hoverSelector: '[data-ff-hover]',
  hoverMs: 500,
  video: true,
  engagement: true,
  sessionTimeout: 18e5,
  sessionMaxAge: 864e5,
}

// Read while the script runs: the default endpoint is where it was loaded from.
const script = D.currentScript

export let o

export const configure = opts => {
  o = { ...DEFAULTS, ...opts }
  o.endpoint = (o.endpoint || new URL((script && script.src) || location).origin).replace(/\/$/, '')
}
