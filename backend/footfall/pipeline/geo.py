"""Geo enrichment step: country, region, city, coarse location, time zone and ASN from the IP.

The MaxMind databases (GeoLite2/GeoIP2 City, optionally ASN) are opened once in
the app's lifespan (:func:`open_geo`) and closed on exit; the step only reads
them (memory-mapped, safe to share). The IP comes from the request context and
is never stored: only what the database says about it. Latitude and longitude
are rounded to one decimal (about 11 km), so a row never pinpoints a household.
A message the consent step marked anonymous keeps only the country.

The records are read with ``maxminddb`` as plain dicts (the fields geoip2's
models name, in English): building geoip2's model objects cost more than the
look-up itself. One look-up per request (its messages share the IP).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb import MODE_AUTO, InvalidDatabaseError

from footfall.pipeline.types import Draft, RequestContext

log = logging.getLogger(__name__)

GEO_COLUMNS = (
    "geo_country",
    "geo_region",
    "geo_city",
    "geo_latitude",
    "geo_longitude",
    "geo_timezone",
    "geo_asn",
    "geo_asn_org",
)

HOW_TO_ENABLE = (
    "geo enrichment is off: no GeoIP database configured. To enable it, download "
    "GeoLite2-City (and optionally GeoLite2-ASN) with MaxMind's `geoipupdate` and set "
    "FOOTFALL_GEOIP_CITY_DB (and FOOTFALL_GEOIP_ASN_DB) to the .mmdb paths"
)


_GEO = "geo.lookup"  # RequestMemo key


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class GeoLookup:
    """Open MaxMind readers: City (required) and ASN (optional)."""

    def __init__(self, city: maxminddb.Reader, asn: maxminddb.Reader | None = None) -> None:
        self._city = city
        self._asn = asn

    @classmethod
    def open(cls, city_path: Path, asn_path: Path | None = None) -> GeoLookup:
        city = maxminddb.open_database(str(city_path), MODE_AUTO)
        asn = maxminddb.open_database(str(asn_path), MODE_AUTO) if asn_path else None
        return cls(city, asn)

    def close(self) -> None:
        self._city.close()
        if self._asn is not None:
            self._asn.close()

    def lookup(self, ip: str) -> dict[str, Any]:
        """The geo columns for ``ip``; empty for an unknown, private or malformed address."""
        columns: dict[str, Any] = {}
        city = _record(self._city, ip)  # unknown, malformed or damaged: no geo, event kept
        if city:
            country = _text(city, "country", "iso_code")
            subdivisions = city.get("subdivisions")
            subdivision = (
                _text(subdivisions[-1], "iso_code")  # the most specific one
                if isinstance(subdivisions, list) and subdivisions
                else None
            )
            columns["geo_country"] = country
            # ISO 3166-2, e.g. "US-CA", "GB-ENG".
            columns["geo_region"] = (
                f"{country}-{subdivision}" if country and subdivision else subdivision
            )
            columns["geo_city"] = _text(city, "city", "names", "en")
            columns["geo_latitude"] = _round(_number(city, "location", "latitude"))
            columns["geo_longitude"] = _round(_number(city, "location", "longitude"))
            columns["geo_timezone"] = _text(city, "location", "time_zone")
        asn = _record(self._asn, ip) if self._asn is not None else None
        if asn:
            number = _field(asn, "autonomous_system_number")
            columns["geo_asn"] = number if type(number) is int else None
            columns["geo_asn_org"] = _text(asn, "autonomous_system_organization")
        return {name: value for name, value in columns.items() if value is not None}


def _record(reader: maxminddb.Reader, ip: str) -> dict[str, Any] | None:
    try:
        record = reader.get(ip)
    except (ValueError, InvalidDatabaseError):
        return None
    return record if isinstance(record, dict) else None


def _field(record: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(record, dict):
            return None
        record = record.get(name)
    return record


def _text(record: Any, *path: str) -> str | None:
    value = _field(record, *path)
    return value if isinstance(value, str) else None


def _number(record: Any, *path: str) -> float | None:
    value = _field(record, *path)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def open_geo(city_path: Path | None, asn_path: Path | None) -> GeoLookup | None:
    """The readers for the configured paths, or None (and one log line saying how to enable)."""
    if city_path is None:
        log.warning(HOW_TO_ENABLE)
        return None
    if not city_path.is_file():
        # Not fatal: events are still collected (e.g. geoipupdate has not run yet).
        log.error("geo enrichment is off: FOOTFALL_GEOIP_CITY_DB=%s is not a file", city_path)
        return None
    if asn_path is not None and not asn_path.is_file():
        log.error("no ASN enrichment: FOOTFALL_GEOIP_ASN_DB=%s is not a file", asn_path)
        asn_path = None
    lookup = GeoLookup.open(city_path, asn_path)
    log.info("geo enrichment from %s%s", city_path, f" and {asn_path}" if asn_path else "")
    return lookup


@dataclass(frozen=True, slots=True)
class GeoStep:
    """Pipeline step: geo columns from the request's IP (nothing without a database)."""

    geo: GeoLookup | None

    def __call__(self, draft: Draft, ctx: RequestContext) -> None:
        geo, ip = self.geo, ctx.ip
        if geo is None or not ip:
            return
        # One look-up per request: every message of a batch comes from its IP.
        columns = ctx.memo.once((_GEO, geo, ip), lambda: geo.lookup(ip))
        if draft.anonymous:
            columns = {k: v for k, v in columns.items() if k == "geo_country"}
        draft.columns.update(columns)
