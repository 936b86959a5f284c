"""Device enrichment step: device type, browser, OS and device model of the sender.

The User-Agent string is parsed with ``user-agents`` (ua-parser) once per
distinct string (an LRU cache: a parse costs ~0.5 ms, a cache hit ~1 µs), and
the device of a (UA string, client hints) pair is cached the same way.
User-Agent Client Hints win where present, because Chromium freezes the UA
string ("Android 10; K", "Windows NT 10.0" for Windows 11): the ``Sec-CH-UA-*``
request headers, or ``context.userAgentData`` as Segment's analytics.js sends
it (``{brands, mobile, platform}``, plus ``platformVersion``, ``model`` and
``fullVersionList`` when high-entropy hints were granted).

Bots and headless browsers are refused (reason ``bot``) unless the site's
setting ``allow_bots`` is true; then they are stored with ``device_type='bot'``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import user_agents

from footfall.pipeline.reasons import BOT
from footfall.pipeline.types import Draft, Refused, RequestContext

# Longer strings are cut before parsing: ua-parser's regexes are not meant for
# kilobytes of text, and no real UA is that long.
MAX_UA_LENGTH = 512
CACHE_SIZE = 10_000

# Automation that ua-parser does not flag as a spider.
_AUTOMATION = re.compile(
    r"headless|phantomjs|puppeteer|playwright|selenium|webdriver|lighthouse|"
    r"\bbot\b|crawler|spider|slurp|prerender",
    re.IGNORECASE,
)
# GREASE brands ("Not-A.Brand", "Not/A)Brand", "Not A(Brand") carry no information.
_GREASE = re.compile(r"not.a.brand", re.IGNORECASE)
# Client-hint brand -> the name ua-parser uses for the same browser.
_BRAND_NAMES = {
    "Google Chrome": "Chrome",
    "Microsoft Edge": "Edge",
    "Opera": "Opera",
    "Opera GX": "Opera",
    "Brave": "Brave",
    "Vivaldi": "Vivaldi",
    "Yandex": "Yandex Browser",
    "YaBrowser": "Yandex Browser",
    "Samsung Internet": "Samsung Internet",
    "HeadlessChrome": "HeadlessChrome",
    "Chromium": "Chromium",
}
# ua-parser OS family -> the client-hint platform name, so both sources agree.
_OS_NAMES = {"Mac OS X": "macOS", "Chrome OS": "Chrome OS"}
_DESKTOP_PLATFORMS = frozenset({"Windows", "macOS", "Linux", "Chrome OS", "Chromium OS"})


@dataclass(frozen=True, slots=True)
class Device:
    """What enrichment says about the sender's device (all optional)."""

    device_type: str = "other"  # mobile | tablet | desktop | bot | other
    browser_name: str | None = None
    browser_version: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    device_brand: str | None = None
    device_model: str | None = None

    @property
    def is_bot(self) -> bool:
        return self.device_type == "bot"

    def columns(self) -> dict[str, Any]:
        return {
            "device_type": self.device_type,
            "browser_name": self.browser_name,
            "browser_version": self.browser_version,
            "os_name": self.os_name,
            "os_version": self.os_version,
            "device_brand": self.device_brand,
            "device_model": self.device_model,
        }


@dataclass(frozen=True, slots=True)
class ClientHints:
    """User-Agent Client Hints, from headers or ``context.userAgentData``."""

    brands: tuple[tuple[str, str], ...] = ()  # (brand, version), full versions when known
    mobile: bool | None = None
    platform: str | None = None
    platform_version: str | None = None
    model: str | None = None

    @property
    def present(self) -> bool:
        return bool(self.brands) or self.mobile is not None or self.platform is not None


def _none_if_other(value: str | None) -> str | None:
    return None if not value or value == "Other" else value


@lru_cache(maxsize=CACHE_SIZE)
def parse_user_agent(ua: str) -> Device:
    """The device a User-Agent string describes (cached per distinct string)."""
    parsed = user_agents.parse(ua[:MAX_UA_LENGTH])
    browser = _none_if_other(parsed.browser.family)
    if parsed.is_bot or _AUTOMATION.search(ua[:MAX_UA_LENGTH]):
        kind = "bot"
    elif parsed.is_tablet:
        kind = "tablet"
    elif parsed.is_mobile:
        kind = "mobile"
    elif parsed.is_pc:
        kind = "desktop"
    else:
        kind = "other"
    brand = _none_if_other(parsed.device.brand)
    model = _none_if_other(parsed.device.model)
    if brand is not None and brand.startswith("Generic"):
        brand = None
        if model is not None and len(model) <= 1:  # Chrome's reduced UA says "K"
            model = None
    if kind == "bot":
        brand = model = None  # ua-parser's "Spider"/"Desktop" are not devices
    os_family = _none_if_other(parsed.os.family)
    return Device(
        device_type=kind,
        browser_name=browser,
        browser_version=(parsed.browser.version_string or None) if browser else None,
        os_name=_OS_NAMES.get(os_family, os_family) if os_family else None,
        os_version=(parsed.os.version_string or None) if os_family else None,
        device_brand=brand,
        device_model=model,
    )


# --- client hints -------------------------------------------------------------

_SF_ITEM = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*;\s*v\s*=\s*"((?:[^"\\]|\\.)*)"\s*')


def _sf_string(value: str | None) -> str | None:
    """A structured-field string (``"Windows"``) as plain text."""
    if value is None:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value or None


def _sf_brand_list(value: str | None) -> tuple[tuple[str, str], ...]:
    """``"Chromium";v="124", "Google Chrome";v="124"`` as (brand, version) pairs."""
    if not value:
        return ()
    pairs = []
    for item in value.split(","):
        match = _SF_ITEM.fullmatch(item)
        if match:
            pairs.append((match.group(1), match.group(2)))
    return tuple(pairs)


def _sf_boolean(value: str | None) -> bool | None:
    if value is None:
        return None
    value = value.strip()
    return True if value == "?1" else False if value == "?0" else None


def hints_from_headers(headers: Mapping[str, str]) -> ClientHints:
    """Client hints from ``Sec-CH-UA-*`` request headers (names lower-case)."""
    full = _sf_brand_list(headers.get("sec-ch-ua-full-version-list"))
    return ClientHints(
        brands=full or _sf_brand_list(headers.get("sec-ch-ua")),
        mobile=_sf_boolean(headers.get("sec-ch-ua-mobile")),
        platform=_sf_string(headers.get("sec-ch-ua-platform")),
        platform_version=_sf_string(headers.get("sec-ch-ua-platform-version")),
        model=_sf_string(headers.get("sec-ch-ua-model")),
    )


def _brand_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        return ()
    return tuple(
        (str(item["brand"]), str(item.get("version", "")))
        for item in value
        if isinstance(item, dict) and isinstance(item.get("brand"), str)
    )


def hints_from_context(data: Any) -> ClientHints:
    """Client hints from ``context.userAgentData`` (NavigatorUAData, as analytics.js sends)."""
    if not isinstance(data, dict):
        return ClientHints()
    mobile = data.get("mobile")

    def text(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) and value else None

    return ClientHints(
        brands=_brand_pairs(data.get("fullVersionList")) or _brand_pairs(data.get("brands")),
        mobile=mobile if isinstance(mobile, bool) else None,
        platform=text("platform"),
        platform_version=text("platformVersion"),
        model=text("model"),
    )


def _trim_version(version: str) -> str:
    """``14.0.0`` -> ``14``, ``17.4.0`` -> ``17.4``: as ua-parser prints versions."""
    parts = version.split(".")
    while len(parts) > 1 and parts[-1] in ("0", ""):
        parts.pop()
    return ".".join(parts)


def _os_version(platform: str, version: str) -> str | None:
    if not version:
        return None
    if platform == "Windows":
        # Sec-CH-UA-Platform-Version on Windows is the UniversalApiContract version.
        try:
            major, minor = (int(p) for p in [*version.split("."), "0"][:2])
        except ValueError:
            return None
        if major >= 13:
            return "11"
        if major >= 1:
            return "10"
        return {1: "7", 2: "8", 3: "8.1"}.get(minor)
    return _trim_version(version)


def _pick_brand(brands: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    """The most specific real brand: "Google Chrome" over "Chromium", never GREASE."""
    real = [(b, v) for b, v in brands if not _GREASE.search(b)]
    if not real:
        return None
    specific = [(b, v) for b, v in real if b != "Chromium"]
    return (specific or real)[0]


def apply_hints(device: Device, hints: ClientHints) -> Device:
    """``device`` (from the UA string) corrected by client hints, which take precedence."""
    if not hints.present:
        return device
    changes: dict[str, Any] = {}
    picked = _pick_brand(hints.brands)
    if picked is not None:
        brand, version = picked
        name = _BRAND_NAMES.get(brand, brand)
        if name == "Chrome" and hints.mobile:
            name = "Chrome Mobile"  # ua-parser's name for the same browser
        changes["browser_name"] = name
        ua_version = device.browser_version or ""
        if "." in version:
            changes["browser_version"] = _trim_version(version)
        elif ua_version.split(".")[0] == version:
            changes["browser_version"] = ua_version  # the UA string has more digits
        else:
            changes["browser_version"] = version or None
        if "headless" in brand.lower():
            changes["device_type"] = "bot"
    if hints.platform and hints.platform != "Unknown":
        changes["os_name"] = hints.platform
        if hints.platform_version is not None:
            changes["os_version"] = _os_version(hints.platform, hints.platform_version)
        elif hints.platform != device.os_name:
            changes["os_version"] = None
    if hints.model:
        changes["device_model"] = hints.model
    if device.device_type != "bot" and changes.get("device_type") != "bot":
        if hints.mobile is True:
            changes["device_type"] = "mobile"
        elif hints.mobile is False:
            platform = hints.platform or device.os_name
            if platform in _DESKTOP_PLATFORMS:
                changes["device_type"] = "desktop"
            elif platform == "Android":
                changes["device_type"] = "tablet"  # Android tablets report mobile ?0
    return replace(device, **changes)


@lru_cache(maxsize=CACHE_SIZE)
def detect(ua: str | None, hints: ClientHints) -> Device:
    """The device of a message: the UA string (cached parse), then the client hints.

    Cached per (UA, hints) pair like the parse: a browser's hints repeat as its UA does.
    """
    device = parse_user_agent(ua) if ua else Device()
    return apply_hints(device, hints)


_NO_HINTS = ClientHints()
_HEADER_DEVICE = "device.from_headers"  # RequestMemo keys
_DEVICE = "device.device"


def device_step(draft: Draft, ctx: RequestContext) -> None:
    """Pipeline step: set the device columns; refuse bots unless the site allows them.

    The request's client-hint headers are parsed once per request, and the device
    of one (UA, hints) pair is worked out once per request (ctx.memo).
    """
    context = draft.message.get("context")
    context = context if isinstance(context, dict) else {}
    ua = context.get("userAgent")
    ua = ua if isinstance(ua, str) and ua else ctx.user_agent
    data = context.get("userAgentData")
    hints = _NO_HINTS if data is None else hints_from_context(data)
    if not hints.present and ua == ctx.user_agent:
        # Request headers describe the sender of the request; they apply only when
        # the message's UA is the request's own (a browser sending for itself). Both
        # are the request's: one device per request.
        headers = ctx.headers
        is_bot, columns = ctx.memo.of(
            _HEADER_DEVICE, headers, lambda: _detected(ua, hints_from_headers(headers))
        )
    else:
        is_bot, columns = ctx.memo.once((_DEVICE, ua, hints), lambda: _detected(ua, hints))
    if is_bot and not ctx.site.settings.get("allow_bots", False):
        raise Refused(BOT)
    draft.columns.update(columns)


def _detected(ua: str | None, hints: ClientHints) -> tuple[bool, dict[str, Any]]:
    device = detect(ua, hints)
    return device.is_bot, device.columns()
