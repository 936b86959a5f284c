// HTML5 <video> and <audio>, including elements added later: media events do
// not bubble, but capturing listeners on document see them all.
// Progress marks fire once per play-through (reset when playback ends), so
// seeking back and forth does not repeat them.

import { on, ignored, round2 } from './util.js'
import { track } from './events.js'

export const video = () => {
  // Per element: { started_, playing_, [mark]: sent } (a trailing _: internal, shortened)
  const stateOf = new WeakMap()
  on(document, 'playing pause seeked timeupdate ended', ({ target: media, type }) => {
    if (!(media instanceof HTMLMediaElement) || ignored(media)) return
    const { duration, currentTime } = media
    const length = isFinite(duration) ? round2(duration) : null
    const percent = length ? Math.min(100, Math.floor((currentTime / duration) * 100)) : 0
    const state = stateOf.get(media) || {}
    stateOf.set(media, state)
    const send = (name, reportedPercent = percent) =>
      track('Video ' + name, {
        video_id: media.id || media.currentSrc,
        src: media.currentSrc,
        title: media.title || media.ariaLabel || '',
        media_type: media.localName,
        position: round2(currentTime),
        total_length: length,
        percent: reportedPercent,
      })
    if (type == 'playing') {
      // 'playing' (not 'play'): the duration is known by then. It also fires
      // when playback recovers from buffering, which is not a resume.
      if (!state.playing_) send(state.started_ ? 'Playback Resumed' : 'Playback Started')
      state.started_ = state.playing_ = 1
    } else if (type == 'pause') {
      // A pause event also precedes 'ended'; that one is not the user's.
      state.playing_ = 0
      if (!media.ended) send('Playback Paused')
    } else if (type == 'seeked') send('Playback Seek Completed')
    else {
      for (const mark of [10, 25, 50, 75, 90])
        if (percent >= mark && !state[mark]) {
          state[mark] = 1
          send('Progress', mark)
        }
      if (type == 'ended') {
        send('Playback Completed', 100)
        stateOf.delete(media)
      }
    }
  })
}
