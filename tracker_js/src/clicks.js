// Element Clicked: links, buttons, submit inputs and [data-ff-track] elements.
// Download detection uses GA4's list of file extensions.

import { D, on, ignored, describe } from './util.js'
import { track } from './events.js'

const FILES = /\.(pdf|xlsx?|docx?|txt|rtf|csv|exe|key|pp[st]|xlsm|7z|pkg|rar|gz|zip|avi|mov|mp4|mpe?g|wmv|midi?|mp3|wav|wma)$/i

export const clicks = () =>
  on(D, 'click', e => {
    const el = e.target.closest('a,button,[role=button],input[type=submit],[data-ff-track]')
    if (!el || ignored(el)) return
    const p = describe(el), href = el.href, u = href && /^http/.test(href) && new URL(href), ext = u && FILES.exec(u.pathname)
    if (u) {
      p.href = href
      p.outbound = u.hostname != location.hostname
      p.file_download = !!ext
      if (ext) p.file_extension = ext[1].toLowerCase()
    }
    track('Element Clicked', p)
  })
