"""Whether a person may be evaluated for segments: the ``personalization`` purpose.

Strongest first (the same order as the analytics rule in pipeline/consent.py):

1. the consent ledger's latest decision naming ``personalization`` for the
   message's anonymousId or userId: a denial there stops evaluation;
2. the message's own claim, ``context.consent`` (``{"personalization": false}`` or
   Segment's ``categoryPreferences``): a denial stops evaluation;
3. otherwise the site's consent mode already decided: only a message the mode
   allowed to keep its identifiers reaches a person (implied: unless denied;
   required and anonymous: analytics granted), and that message's person is
   evaluated.

A stop is also a withdrawal: the person's memberships and window state are
deleted in the same transaction (storage/segments.py), as when a
``Consent Updated`` message denies ``personalization`` (or denies ``analytics``
without granting ``personalization``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from footfall.pipeline.consent import LedgerEntry

PURPOSE = "personalization"


def claimed(context: Mapping[str, Any] | None) -> bool | None:
    """What a message's ``context.consent`` says about personalization (None: nothing)."""
    consent = context.get("consent") if isinstance(context, Mapping) else None
    if not isinstance(consent, Mapping):
        return None
    preferences = consent.get("categoryPreferences")
    if not isinstance(preferences, Mapping):
        preferences = consent
    for name, value in preferences.items():
        if isinstance(name, str) and name.lower() == PURPOSE and isinstance(value, bool):
            return value
    return None


def withdraws(entry: LedgerEntry) -> bool:
    """A ledger entry that ends segment evaluation for its subject."""
    return withdraws_purposes({**dict.fromkeys(entry.granted, True),
                               **dict.fromkeys(entry.denied, False)})  # fmt: skip


def withdraws_purposes(purposes: Mapping[str, bool]) -> bool:
    """A decision (purpose -> granted) that ends segment evaluation for its subject."""
    if purposes.get(PURPOSE) is False:
        return True
    return purposes.get("analytics") is False and purposes.get(PURPOSE) is not True


def may_evaluate(claim: bool | None, ledger: bool | None) -> bool:
    """The rule of the module docstring, for a message that kept its identifiers."""
    return claim is not False and ledger is not False
