"""Free-text and URL scrubbing: emails, phones and IPs redacted, secret query parameters gone.

Runs on every string the privacy step keeps, so it is built for the common case
of a string with nothing to find: each rule first asks a question that costs a
substring test (is there an ``@``, a ``=``, a digit run?) and only then runs its
precompiled regular expression.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EMAIL_MARK = "[email]"
PHONE_MARK = "[phone]"
IP_MARK = "[ip]"
REDACTED_MARK = "[redacted]"

# Query/fragment parameter names whose value is a secret or a direct identifier.
# A name matches when it, or one of its words (split at ``_ - .`` and camelCase),
# is in this set: ``access_token``, ``apiKey``, ``user-email`` and ``sessionid`` all do.
SENSITIVE_PARAMS = frozenset(
    {
        "email", "mail", "phone", "tel", "mobile",
        "token", "password", "passwd", "pwd", "pass", "secret", "key", "apikey",
        "session", "sessionid", "sid", "auth", "authorization", "code", "otp", "pin",
        "ssn", "signature", "sig", "jwt", "credential", "credentials",
        "accesstoken", "refreshtoken", "idtoken",
    }
)  # fmt: skip

# Local part, "@" (or its percent-encoding), a dotted domain.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+(?:@|%40)[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# user:password@ in a URL's authority.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]+@")
# Phone-like: international (+ or 00), (area) local, NANP 555-123-4567, or a national
# number with a trunk 0. Never glued to letters or to more digits, so dates, times,
# IPs, UUIDs, versions and long numeric ids do not match; 7-15 digits (E.164) in all.
_SEP = r"[ .\-/]"
_PHONE = re.compile(
    r"(?<![\w+./\-])(?:"
    rf"(?:\+|00)\d{{1,3}}{_SEP}?(?:\(\d{{1,4}}\){_SEP}?)?\d{{1,4}}(?:{_SEP}?\d{{2,5}}){{1,4}}"
    rf"|\(\d{{2,5}}\){_SEP}?\d{{3,4}}{_SEP}?\d{{3,5}}"
    rf"|\d{{3}}[ .\-]\d{{3}}[ .\-]\d{{4}}"
    rf"|0\d{{2,4}}[ \-/]\d{{3,9}}(?:[ \-]\d{{2,5}})?"
    r"|0\d{9,11}"
    r")(?!\w)(?![.\-/]\d)"
)
# Cheap pre-check: 7 digits with at most 2 separator characters between neighbours
# (every phone the expression above matches has that; most strings do not).
_SEVEN_DIGITS = re.compile(r"\d(?:[ .\-/()]{0,2}\d){6}")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# IP address candidates, confirmed by ``ipaddress`` before they are replaced. IPv4: four
# dotted numbers not glued to a word, a dot or a ``name/`` (so ``Chrome/120.0.0.0`` and
# ``v1.2.3.4`` are versions, while a sentence's last word is an address). IPv6: hex groups
# and colons (a zone id allowed), not glued to a word or another colon. A URL's host
# (``http://10.0.0.1:8080/``, ``http://[::1]/``) is the address of the site's server, not
# of a person, and the data team needs it to tell pages apart: it is kept.
_IPV4 = re.compile(r"(?<![\w.\-])(?<!\w/)(?<!://)(?:\d{1,3}\.){3}\d{1,3}(?!\w|[.\-]\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?<!://\[)(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?<=:))(?:%\w+)?(?![\w:])"
)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(ch.isdigit() for ch in text)
    return PHONE_MARK if 7 <= digits <= 15 else text


def _ip(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text  # a time (12:30:45), a MAC, a version: not an address
    return IP_MARK


def redact_text(text: str) -> str:
    """``text`` with email addresses, phone-like numbers and IP addresses replaced by markers."""
    # A valid IPv4 address has three dots; an IPv6 one "::" or seven colons.
    if "." in text and text.count(".") >= 3:
        text = _IPV4.sub(_ip, text)
    if ":" in text and ("::" in text or text.count(":") >= 7):
        text = _IPV6.sub(_ip, text)
    if "@" in text or "%40" in text:
        text = _USERINFO.sub(r"\1", text)
        text = _EMAIL.sub(EMAIL_MARK, text)
    if _SEVEN_DIGITS.search(text) is not None:
        text = _PHONE.sub(_phone, text)
    return text


@lru_cache(maxsize=4096)
def _param_words(name: str) -> tuple[str, ...]:
    decoded = unquote_plus(name)
    return (decoded.lower(), *(w.lower() for w in _WORDS.findall(decoded)))


class ParamPolicy:
    """Which query parameter names are removed (built-ins and extras, minus kept names)."""

    __slots__ = ("keep", "sensitive")

    def __init__(self, extra: Iterable[str] = (), keep: Iterable[str] = ()) -> None:
        self.sensitive = SENSITIVE_PARAMS | {e.lower() for e in extra}
        self.keep = frozenset(k.lower() for k in keep)

    def is_sensitive(self, name: str) -> bool:
        words = _param_words(name)
        if words[0] in self.keep:
            return False
        return any(word in self.sensitive for word in words)

    def _filter(self, query: str) -> str:
        return "&".join(
            part for part in query.split("&") if part and not self.is_sensitive(part.split("=")[0])
        )

    def strip(self, url: str) -> str:
        """``url`` (or a bare query string) without its sensitive parameters."""
        fragment = None
        hash_at = url.find("#")
        if hash_at >= 0:
            url, fragment = url[:hash_at], url[hash_at + 1 :]
        query_at = url.find("?")
        if query_at >= 0:
            query = self._filter(url[query_at + 1 :])
            url = url[:query_at] + ("?" + query if query else "")
        elif "=" in url and " " not in url and "/" not in url:
            url = self._filter(url)  # a bare "a=1&token=x" (context.page.search without "?")
        if fragment is not None:
            if "=" in fragment:  # OAuth's implicit flow puts tokens here; SPAs put routes
                fragment = self.strip(fragment) if "?" in fragment else self._filter(fragment)
            if fragment:
                url += "#" + fragment
        return url


DEFAULT_PARAMS = ParamPolicy()


def scrub_string(text: str, params: ParamPolicy = DEFAULT_PARAMS) -> str:
    """One string as it may be stored: secret parameters removed, emails and phones redacted."""
    if "=" in text:
        text = params.strip(text)
    return redact_text(text)


def scrub_value(value: object, scrub: Callable[[str], str]) -> object:
    """Every string inside ``value`` (dicts, lists) through ``scrub``, keys included.

    A key is data too (``{"jane@example.org": 1}``); two keys that scrub alike keep
    the last value. Depth is bounded: input limits were checked before any step runs.
    """
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        # Leaves inline (most values are strings or numbers): no call per leaf.
        return {
            (scrub(k) if isinstance(k, str) else k): (
                scrub(v) if isinstance(v, str)
                else scrub_value(v, scrub) if isinstance(v, dict | list)
                else v
            )
            for k, v in value.items()
        }  # fmt: skip
    if isinstance(value, list):
        return [
            scrub(v) if isinstance(v, str)
            else scrub_value(v, scrub) if isinstance(v, dict | list)
            else v
            for v in value
        ]  # fmt: skip
    return value


# --- pass-through context fields ------------------------------------------------------

# RFC 5646 language tag, well-formed: language (2-3 letters) with up to three extlangs,
# script, region, variants, extensions and a private use part. Underscores (``en_US``, as
# some SDKs send) are read as hyphens. Anything else (an e-mail, a name) is not a locale.
_LANGUAGE_TAG = re.compile(
    r"(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3})"
    r"(?:-[A-Za-z]{4})?"
    r"(?:-(?:[A-Za-z]{2}|\d{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|\d[A-Za-z0-9]{3}))*"
    r"(?:-[0-9A-WY-Za-wy-z](?:-[A-Za-z0-9]{2,8})+)*"
    r"(?:-[Xx](?:-[A-Za-z0-9]{1,8})+)?"
)
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}")


def language_tag(value: Any) -> str | None:
    """``value`` as a BCP 47 language tag (``en-US``), or None when it is not one."""
    if not isinstance(value, str) or len(value) > 35:
        return None
    return _language_tag(value)


@lru_cache(maxsize=1024)
def _language_tag(value: str) -> str | None:
    tag = value.replace("_", "-")
    return tag if _LANGUAGE_TAG.fullmatch(tag) else None


@lru_cache(maxsize=1024)
def iana_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone named ``name`` (``Europe/Berlin``), or None when there is none."""
    if len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def zone_name(value: Any) -> str | None:
    """``value`` if it names an IANA time zone, else None."""
    return value if isinstance(value, str) and iana_zone(value) is not None else None
