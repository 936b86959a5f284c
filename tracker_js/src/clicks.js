// Element Clicked: links, buttons, submit inputs and [data-ff-track] elements.
// Download detection uses GA4's list of file extensions.

import { on, ignored, describe, CLICKABLE } from './util.js'
import { scrubUrl } from './privacy.js'
import { track } from './events.js'

const DOWNLOADS = /\.(pdf|xls[xm]?|docx?|txt|rtf|csv|exe|key|pp(s|tx?)|7z|pkg|rar|gz|zip|avi|mov|mp[34]|mpe?g|wmv|midi?|wav|wma)$/i

export const clicks = () =>
  on(document, 'click', event => {
    const element = event.target.closest(CLICKABLE)
    if (!element || ignored(element)) return
    const properties = describe(element)
    const href = element.href
    // An http(s) link: an <a> (or <area>), which has the URL's parts. (An SVG link's
    // href is an object: no match.)
    if (/^http/.test(href)) {
      const download = DOWNLOADS.exec(element.pathname)
      properties.href = scrubUrl(href)
      properties.outbound = element.hostname != location.hostname
      properties.file_download = !!download
      if (download) properties.file_extension = download[1].toLowerCase()
    }
    track('Element Clicked', properties)
  })
