// Init options, with their defaults (docs/tracker.md lists them). Every
// module reads them from here.

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
  views: true,
  viewSelector: '[data-ff-view]',
  viewMs: 1000,
  viewThreshold: 0.5,
  forms: true,
  frustration: true,
  sensitiveParams: [],
  sessionTimeout: 18e5,
  sessionMaxAge: 864e5,
}

// Read while the script runs: the default endpoint is where it was loaded from.
const script = document.currentScript

export let options

export const configure = given => {
  options = { ...DEFAULTS, ...given }
  options.endpoint = (options.endpoint || new URL(script?.src || location).origin).replace(/\/$/, '')
}

// With debug: true every refusal, failure and error is written to the console.
export const debugLog = (...details) => options.debug && console.warn('footfall:', ...details)
