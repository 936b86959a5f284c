"""What the admin API and the CLI share: the PII keyring of the settings, a site by name."""

from __future__ import annotations

from typing import Any

import psycopg

from footfall.errors import FootfallError
from footfall.pipeline.identifiers import storable_text
from footfall.pipeline.privacy import Keyring, keyring_of
from footfall.settings import Settings
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
