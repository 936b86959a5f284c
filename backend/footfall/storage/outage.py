"""Telling "the database is unavailable" from "this statement or value is bad".

The collector answers the first with 503 + Retry-After (nothing stored, retry
later) and the second by failing the message or the request alone: a value the
database refuses will be refused on every retry, so retrying it is pointless,
and it must never take other requests' messages down with it.
"""

from __future__ import annotations

import psycopg

# SQLSTATE classes that say nothing about the statement: the connection failed
# (08), the server lacks resources (53: too many connections, disk full, out of
# memory), an operator intervened (57: shutdown, cancel, statement timeout),
# a system error (58: I/O). Class 54 (program limit exceeded, e.g. an index row
# too large) is also an OperationalError in psycopg but is about the value.
_OUTAGE_CLASSES = frozenset({"08", "53", "57", "58"})


class StorageUnavailable(Exception):
    """The database could not take the messages; nothing of them was committed."""


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database can't be used now" (retry later)."""
    if isinstance(exc, StorageUnavailable | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: raised by the client (connection refused or lost, pool
        # timeout or closed), never by the server about a statement.
        state = exc.sqlstate
        return state is None or state[:2] in _OUTAGE_CLASSES
    return False


def is_bad_value(exc: BaseException) -> bool:
    """Whether ``exc`` is the database refusing a value (the same input fails again)."""
    if isinstance(exc, psycopg.DataError | psycopg.errors.ProgramLimitExceeded):
        return True
    # psycopg could not encode the value (e.g. a lone surrogate in a str).
    return isinstance(exc, UnicodeError)
