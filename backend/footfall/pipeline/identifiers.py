"""What an identifier must be before it is used in a query or stored as a key.

PostgreSQL text cannot hold NUL, psycopg cannot encode a lone surrogate, and a
btree index entry is limited to about 2.7 KB: a value breaking any of these makes
the statement fail, so it is checked at the edge (write keys, Basic user names,
messageId, anonymousId, userId) and never reaches SQL.
"""

from __future__ import annotations

MAX_MESSAGE_ID_LENGTH = 128  # as the envelope schema says
MAX_ID_LENGTH = 255  # anonymousId, userId (the envelope schema)
MAX_WRITE_KEY_LENGTH = 200


def storable_text(value: str, max_length: int) -> bool:
    """Bounded, no NUL or other C0 control character, encodable as UTF-8."""
    if len(value) > max_length:
        return False
    # isprintable() is the fast C check; it is also False for harmless characters
    # (e.g. a non-breaking space), so only then look for control characters.
    if not value.isprintable() and _has_control(value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (e.g. "\ud800")
        return False
    return True


def _has_control(value: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
