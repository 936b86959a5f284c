"""Which anonymous id the visitor's first-party ``ff_id`` cookie carries after a request.

The collector can keep the tracker's anonymousId in a cookie it sets itself
(``FOOTFALL_ID_COOKIE``): Safari's ITP deletes script-written storage after 7
days without a visit, but not a cookie set by a first-party server. The cookie
follows the consent rules exactly as the events do: it carries an id only when
the message may be kept with its identifiers (consent step, ``may_identify``),
and a refusal expires it.
"""

from __future__ import annotations

import re
from typing import Any

from footfall.pipeline.consent import DENIED, analytics_consent, may_identify, subject_ids
from footfall.pipeline.types import RequestContext

COOKIE_NAME = "ff_id"
EXPIRE = ""  # the decision "expire the cookie"
# What the tracker generates (uuid v4) and what is safe in a cookie value unquoted.
_COOKIE_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def cookie_anonymous_id(messages: list[Any], ctx: RequestContext) -> str | None:
    """The id to set (the last message's that may be kept with identifiers), EXPIRE
    (the visitor refused analytics), or None (leave the cookie as it is).

    Run after the pipeline, so the consent ledger view holds this batch's decisions.
    """
    decided: str | None = None
    for message in messages:
        if not isinstance(message, dict):
            continue
        anonymous_id, _ = subject_ids(message)
        if anonymous_id is None or _COOKIE_SAFE.fullmatch(anonymous_id) is None:
            continue
        if may_identify(message, ctx):
            decided = anonymous_id
        elif analytics_consent(message, ctx) == DENIED:
            decided = EXPIRE
    return decided
