"""What the admin API and the CLI share: the PII keyring of the settings, a site by name,
a consent decision recorded outside ingest."""

from __future__ import annotations

from typing import Any

import psycopg

from footfall.errors import FootfallError
from footfall.pipeline.identifiers import storable_text
from footfall.pipeline.privacy import Keyring, keyring_of
from footfall.pipeline.segments.consent import withdraws_purposes
from footfall.settings import Settings
from footfall.storage.consent import record_decision
from footfall.storage.segments import forget_subject
from footfall.storage.sites import find_site_id, find_site_id_async

MAX_SITE_NAME_LENGTH = 255


class UnknownSite(FootfallError):
    status, code = 404, "unknown_site"


def keyring(settings: Settings) -> Keyring:
    """The current PII key and the retired ones still used for look-ups."""
    return keyring_of(settings.pii_key_id, settings.pii_key, settings.previous_pii_keys)


def _checked_name(name: str) -> str:
    # A name that cannot be stored (NUL, control characters, a lone surrogate, too
    # long) names no site; refused here, so the query never sees it.
    if not storable_text(name, MAX_SITE_NAME_LENGTH):
        raise UnknownSite("no site by that name")
    return name


def site_id(conn: psycopg.Connection[Any], name: str) -> int:
    """The id of the site called ``name``; :class:`UnknownSite` (404) if there is none."""
    found = find_site_id(conn, _checked_name(name))
    if found is None:
        raise UnknownSite(f"no site named {name!r}")
    return found


async def site_id_async(conn: psycopg.AsyncConnection[Any], name: str) -> int:
    """:func:`site_id` on an async connection."""
    found = await find_site_id_async(conn, _checked_name(name))
    if found is None:
        raise UnknownSite(f"no site named {name!r}")
    return found


def record_consent(
    conn: psycopg.Connection[Any],
    settings: Settings,
    site_name: str,
    *,
    anonymous_id: str | None,
    user_id: str | None,
    purposes: dict[str, bool],
    policy_version: str | None,
    source: str,
) -> dict[str, Any]:
    """Append a decision to the consent ledger in the caller's transaction; a withdrawal
    also removes the subject's segment memberships (docs/segments.md)."""
    site = site_id(conn, site_name)
    keys = keyring(settings)
    result = record_decision(
        conn,
        site,
        keys.current,
        anonymous_id=anonymous_id,
        user_id=user_id,
        purposes=purposes,
        policy_version=policy_version,
        source=source,
    )
    if withdraws_purposes(purposes):
        forget_subject(
            conn,
            site,
            keys.anonymous_ids(anonymous_id) if anonymous_id else [],
            keys.user_hashes(user_id) if user_id else [],
        )
    return result
