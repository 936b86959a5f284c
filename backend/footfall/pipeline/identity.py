"""Identity rules: which ids may link, and what linking two ids does (pure functions).

Storage (storage/identity.py) reads the current state of the ids a message
carries, asks :func:`decide_link` or :func:`decide_alias` what to do, and
applies the answer in the writer's transaction. The rules, learned from
PostHog's merge bugs and Segment's identity spec:

* An ``anonymousId`` and a ``userId`` on one message (``identify``, or any
  message sent after ``identify``) belong to one person. If the anonymous id's
  person has no user id yet, it is merged into the user's person.
* Two persons that each already carry a user id are **never merged
  implicitly**. On a shared device without ``reset()``, the anonymous id stays
  on the person it was first linked to; the second user gets (or keeps) a
  person of their own, and that message's events map to the second user
  because a user id outranks an anonymous id when events are mapped to persons.
* ``alias`` (Segment spec: ``previousId`` -> ``userId``) is explicit: the
  previous id's person is merged into the user's person even when both are
  identified (that is what alias is for: a user id that changed).
* Ids that name nobody (``anonymous``, ``null``, ``undefined``, ``0``,
  ``guest``, ``[object Object]`` ...; compared trimmed and case-insensitively)
  never link. User ids are hashed by the privacy step, so the illegal ones
  are caught before it, by :class:`IdentityHygiene`, which drops them
  from the message; anonymous ids are stored as sent and are checked again
  in storage with :func:`is_illegal_id`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from footfall.pipeline.privacy import PSEUDONYMIZED_MARK, PiiKey, memo_key, stored_anonymous_id
from footfall.pipeline.types import Draft, EventRow, RequestContext

# Values SDKs and buggy integrations send in place of an id (PostHog's list and
# a few more). Compared after strip() and lower().
ILLEGAL_IDS = frozenset(
    {
        "",
        "0",
        "-1",
        "anonymous",
        "anon",
        "guest",
        "null",
        "none",
        "nil",
        "undefined",
        "nan",
        "true",
        "false",
        "[object object]",
        "not_authenticated",
        "distinct_id",
        "id",
        "user",
        "user_id",
        "userid",
        "email",
        "unknown",
        "{}",
        "[]",
    }
)


# EventRow.extras key: an alias's previousId as an anonymous id would be stored.
PREVIOUS_AS_ANONYMOUS = "alias_previous_as_anonymous"


def is_illegal_id(value: Any) -> bool:
    """True if ``value`` must never link: absent, not a string or number, or on the list."""
    if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return True
    return str(value).strip().lower() in ILLEGAL_IDS


@dataclass(frozen=True, slots=True)
class IdentityHygiene:
    """Pipeline step before privacy: drop illegal ``userId``/``previousId`` values.

    After hashing, ``HMAC("null")`` would be indistinguishable from a real user
    id, and every message with ``userId: "null"`` would belong to one giant
    person. The message is kept (under its anonymous id, if any); only the
    value that names nobody is removed. A message that is already
    pseudonymized (a replayed failed event) is left as it is.

    For ``alias`` it also hands the writer (in memory, never stored) the
    ``previousId`` as an anonymous id would be stored, because after hashing
    nobody can tell whether it named an anonymous id or a user id.
    """

    key: PiiKey

    def __call__(self, draft: Draft, ctx: RequestContext) -> None:
        message = draft.message
        if message.get(PSEUDONYMIZED_MARK):
            return
        bad = [
            name
            for name in ("userId", "previousId")
            if message.get(name) is not None and is_illegal_id(message[name])
        ]
        if bad:
            message = draft.message = {k: v for k, v in message.items() if k not in bad}
        previous = message.get("previousId")
        if (
            message.get("type") == "alias"
            and isinstance(previous, str | int | float)
            and not isinstance(previous, bool)
        ):
            draft.extras[PREVIOUS_AS_ANONYMOUS] = stored_anonymous_id(
                previous, memo_key(self.key, ctx.memo)
            )


# --- link decisions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Known:
    """An id that already has a person: its canonical person and whether that is identified."""

    person: int
    identified: bool


class Act(Enum):
    NOTHING = "nothing"
    CREATE = "create"  # a new person holding both ids
    ATTACH_FIRST = "attach_first"  # the first id joins the second id's person
    ATTACH_SECOND = "attach_second"  # the second id joins the first id's person
    CREATE_SECOND = "create_second"  # the second id gets a person of its own
    MERGE = "merge"  # the first id's person merges into the second id's person


@dataclass(frozen=True, slots=True)
class LinkDecision:
    act: Act
    reason: str = ""  # why nothing happened, or the merge reason recorded


def decide_link(anonymous: Known | None, user: Known | None) -> LinkDecision:
    """An anonymous id and a user id seen on one message (identify, or any later message)."""
    if anonymous is None and user is None:
        return LinkDecision(Act.CREATE)
    if anonymous is None:
        return LinkDecision(Act.ATTACH_FIRST)
    if user is None:
        if anonymous.identified:
            # Shared device: the anonymous id already belongs to another user.
            return LinkDecision(Act.CREATE_SECOND, "anonymous id belongs to another user")
        return LinkDecision(Act.ATTACH_SECOND)
    if anonymous.person == user.person:
        return LinkDecision(Act.NOTHING, "already linked")
    if anonymous.identified:
        return LinkDecision(Act.NOTHING, "both persons have a user id: no implicit merge")
    return LinkDecision(Act.MERGE, "identify")


def decide_alias(previous: Known | None, user: Known | None) -> LinkDecision:
    """``alias``: the previous id (a user id, hashed) and the new user id are one person."""
    if previous is None and user is None:
        return LinkDecision(Act.CREATE)
    if previous is None:
        return LinkDecision(Act.ATTACH_FIRST)
    if user is None:
        return LinkDecision(Act.ATTACH_SECOND)
    if previous.person == user.person:
        return LinkDecision(Act.NOTHING, "already linked")
    return LinkDecision(Act.MERGE, "alias")


# --- which ids a batch of messages links ----------------------------------------------

ANONYMOUS = "anonymous"
USER = "user"

IdKey = tuple[int, str, str]  # (site_id, kind, value)

# EventRow.extras key: the row's canonical person, set by the writer's identity
# step once its links are applied (the user id's person, else the anonymous
# id's), so the steps after it (sessions, profiles, segments) need no query.
PERSON = "person"


@dataclass(frozen=True, slots=True)
class Link:
    """Two ids one message says are the same person; ``second`` is always a user id.

    For an alias, ``first`` is the previousId taken as a user id (hashed) and
    ``anonymous_first`` the same previousId taken as an anonymous id: if that
    anonymous id is known, the alias links it like an identify would.
    """

    first: IdKey
    second: IdKey
    alias: bool
    message_id: str
    anonymous_first: IdKey | None = None


@dataclass(slots=True)
class IdentityPlan:
    """The links to apply in order, and the ids that only need a person if they have none."""

    links: list[Link]
    singles: dict[IdKey, str]  # id -> the message that first carried it


def plan_identities(rows: Iterable[EventRow]) -> IdentityPlan:
    """What a batch of new events asks of the identity tables (in event-time order).

    A message with both an anonymous id and a user id links them; an ``alias``
    links its ``previousId`` to its ``userId`` (unless the previousId is the
    message's own anonymous id, already linked as such); an id seen alone only
    needs a person. Repeated links are planned once.
    """
    links: list[Link] = []
    seen: set[tuple[IdKey, IdKey, bool]] = set()
    singles: dict[IdKey, str] = {}
    linked: set[IdKey] = set()
    for row in sorted(rows, key=lambda r: (r.timestamp, r.message_id)):
        anonymous = (
            (row.site_id, ANONYMOUS, row.anonymous_id)
            if row.anonymous_id is not None and not is_illegal_id(row.anonymous_id)
            else None
        )
        user = (row.site_id, USER, row.user_id) if row.user_id is not None else None
        pairs: list[tuple[IdKey, IdKey, bool]] = []
        if anonymous and user:
            pairs.append((anonymous, user, False))
        previous = row.properties.get("previousId") if row.type == "alias" else None
        as_anonymous = row.extras.get(PREVIOUS_AS_ANONYMOUS)
        alternative = None
        if isinstance(as_anonymous, str) and not is_illegal_id(as_anonymous):
            alternative = (row.site_id, ANONYMOUS, as_anonymous)
        if (
            user
            and isinstance(previous, str)
            and previous
            and previous != row.user_id
            and (alternative is None or alternative != anonymous)
        ):
            pairs.append(((row.site_id, USER, previous), user, True))
        for first, second, alias in pairs:
            if (first, second, alias) not in seen:
                seen.add((first, second, alias))
                links.append(
                    Link(first, second, alias, row.message_id, alternative if alias else None)
                )
            linked.update((first, second))
        for key in (anonymous, user):
            if key is not None:
                singles.setdefault(key, row.message_id)
    return IdentityPlan(links, {k: m for k, m in singles.items() if k not in linked})
