"""What the admin API and the CLI share: the PII keyring of the settings, a site by name."""

from __future__ import annotations

from typing import Any

import psycopg

from footfall.errors import FootfallError
from footfall.pipeline.privacy import Keyring, keyring_of
from footfall.settings import Settings
from footfall.storage.sites import find_site_id


class UnknownSite(FootfallError):
    status, code = 404, "unknown_site"


def keyring(settings: Settings) -> Keyring:
    """The current PII key and the retired ones still used for look-ups."""
    return keyring_of(settings.pii_key_id, settings.pii_key, settings.previous_pii_keys)


def site_id(conn: psycopg.Connection[Any], name: str) -> int:
    """The id of the site called ``name``; :class:`UnknownSite` (404) if there is none."""
    found = find_site_id(conn, name)
    if found is None:
        raise UnknownSite(f"no site named {name!r}")
    return found
