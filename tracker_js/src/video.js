// HTML5 <video> and <audio>, including elements added later: media events do
// not bubble, but capturing listeners on document see them all.
// Progress marks fire once per play-through (reset when playback ends), so
// seeking back and forth does not repeat them.

import { D, on, ignored, round2 } from './util.js'
import { track } from './events.js'

export const video = () => {
  // Per element: s started, p playing, and the progress marks already sent.
  const state = new WeakMap()
  on(D, 'playing pause seeked timeupdate ended', ({ target: el, type: t }) => {
    if (!(el instanceof HTMLMediaElement) || ignored(el)) return
    const d = el.duration, len = isFinite(d) ? round2(d) : null,
      pct = len ? Math.min(100, Math.floor((el.currentTime / d) * 100)) : 0, st = state.get(el) || {}
    const send = (name, percent = pct) =>
      track('Video ' + name, {
        video_id: el.id || el.currentSrc,
        src: el.currentSrc,
        title: el.title || el.ariaLabel || '',
        media_type: el.localName,
        position: round2(el.currentTime),
        total_length: len,
        percent,
      })
    state.set(el, st)
    // 'playing' (not 'play'): the duration is known by then. It also fires
    // when playback recovers from buffering, which is not a resume.
    if (t == 'playing') st.p || send(st.s ? 'Playback Resumed' : 'Playback Started'), (st.s = st.p = 1)
    // A pause event also precedes 'ended'; that one is not the user's.
    else if (t == 'pause') (st.p = 0), el.ended || send('Playback Paused')
    else if (t == 'seeked') send('Playback Seek Completed')
    else {
      for (const m of [10, 25, 50, 75, 90]) pct < m || st[m] || send('Progress', (st[m] = m))
      if (t == 'ended') send('Playback Completed', 100), state.delete(el)
    }
  })
}
