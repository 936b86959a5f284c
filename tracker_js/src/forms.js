// Form Started (first input in a form), Form Submitted, and Form Abandoned
// (the page is left after a start without a submit). Never a field's value:
// only the form's id, name and selector, how many fields were touched, the
// last field's name (never a password's or a data-ff-ignore field's) and the
// time since the start.

import { now, on, ignored, selectorOf } from './util.js'
import { track } from './events.js'

// form -> { startedAt_, touched_: Set of fields, lastField_, done_ } (a trailing _: internal,
// the minifier shortens the name)
const forms = new Map()

const send = (event, form, state = forms.get(form)) =>
  track(event, {
    form_id: form.getAttribute('id') || '',
    form_name: form.getAttribute('name') || '',
    selector: selectorOf(form),
    fields_touched: state.touched_.size,
    last_field: state.lastField_ || '',
    ms_since_start: now() - state.startedAt_,
  })

// A form's state; the first time it is seen, a new one starting now (Map.set returns the map).
const stateOf = form => forms.get(form) || forms.set(form, { startedAt_: now(), touched_: new Set() }).get(form)

export const formTracking = () => {
  on(document, 'input change', ({ target: field }) => {
    const form = field.form
    if (!form || ignored(form)) return
    const started = forms.has(form)
    const state = stateOf(form)
    state.touched_.add(field)
    if (field.type != 'password' && !ignored(field)) state.lastField_ = field.name || field.getAttribute('id')
    if (!started) send('Form Started', form)
  })
  on(document, 'submit', ({ target: form }) => {
    if (ignored(form)) return
    stateOf(form).done_ = 1
    send('Form Submitted', form)
  })
}

// The page is being left: every started, unsubmitted form is abandoned (once).
export const abandonForms = () =>
  forms.forEach((state, form) => {
    if (!state.done_) send('Form Abandoned', form, state)
    state.done_ = 1
  })
