// Sensitive query parameters are removed from every URL and referrer before
// it leaves the browser (a GET form puts its fields in the URL). The list and
// the matching are the collector's (backend/footfall/pipeline/scrub.py): a
// name matches when it, or one of its words (split at _ - . and camelCase),
// is listed; the sensitiveParams option adds names.

const SENSITIVE_PARAMS =
  'email mail phone tel mobile token password passwd pwd pass secret key apikey session sessionid sid auth authorization code otp pin ssn signature sig jwt credential credentials accesstoken refreshtoken idtoken'.split(
    ' ',
  )

const isSensitive = (name, extraNames) =>
  [name, ...(name.match(/[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])/g) || [])].some(word =>
    SENSITIVE_PARAMS.concat(extraNames).includes(word.toLowerCase()),
  )

// url: a URL or a bare "?query"; what comes after "#" is left alone.
export const scrubUrl = (url, extraNames) =>
  !F_URL_SCRUB ? url : url.replace(/\?([^#]*)/, (query, parameters) => {
    const kept = parameters.split('&').filter(part => part && !isSensitive(part.split('=')[0], extraNames))
    return kept.length ? '?' + kept.join('&') : ''
  })
