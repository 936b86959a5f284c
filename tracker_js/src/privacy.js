// Sensitive query parameters are removed from every URL and referrer before
// it leaves the browser (a GET form puts its fields in the URL). The list and
// the matching are the collector's (backend/footfall/pipeline/scrub.py,
// SENSITIVE_PARAMS; tests/browser/test_signals.py checks they agree): a name
// matches when it, or one of its words (split at _ - . and camelCase), is
// listed; the sensitiveParams option adds names.

import { options } from './options.js'

const SENSITIVE_WORD =
  /^(e?mail|phone|tel|mobile|(access|refresh|id)?token|pass(wd|word)?|pwd|secret|(api)?key|session(id)?|sid|auth(orization)?|code|otp|pin|ssn|sig(nature)?|jwt|credentials?)$/

const isSensitive = name =>
  [name, ...(name.match(/[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])/g) || [])].some(word => {
    word = word.toLowerCase()
    return SENSITIVE_WORD.test(word) || options.sensitiveParams.includes(word)
  })

// url: a URL or a bare "?query"; what comes after "#" is left alone.
export const scrubUrl = url =>
  !F_URL_SCRUB
    ? url
    : url.replace(/\?([^#]*)/, (query, parameters) => {
        const kept = parameters.split('&').filter(part => !isSensitive(part.split('=')[0]))
        return kept.length ? '?' + kept.join('&') : ''
      })
