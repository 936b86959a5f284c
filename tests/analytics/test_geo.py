"""Geo enrichment from a small GeoIP database the test writes itself (no download)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from footfall.pipeline.geo import GeoLookup, GeoStep, open_geo
from footfall.pipeline.types import Draft, RequestContext, Site
from tests.analytics.messages import page, post
from tests.support import ServerThread, collector_settings, make_site, query

LONDON = {
    "country": {"iso_code": "GB", "geoname_id": 2635167, "names": {"en": "United Kingdom"}},
    "subdivisions": [{"iso_code": "ENG", "geoname_id": 6269131, "names": {"en": "England"}}],
    "city": {"geoname_id": 2643743, "names": {"en": "London"}},
    "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London"},
}
BERLIN = {
    "country": {"iso_code": "DE", "geoname_id": 2921044, "names": {"en": "Germany"}},
    "subdivisions": [{"iso_code": "BE", "names": {"en": "Land Berlin"}}],
    "city": {"geoname_id": 2950159, "names": {"en": "Berlin"}},
    "location": {"latitude": 52.5244, "longitude": 13.4105, "time_zone": "Europe/Berlin"},
}
NO_CITY = {"country": {"iso_code": "FR", "names": {"en": "France"}}}


@pytest.fixture(scope="module")
def geo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A City and an ASN database: an IPv4 and an IPv6 network, and a country-only one."""
    directory = tmp_path_factory.mktemp("geoip")
    city = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-City",
        languages=["en"],
        description="footfall test",
    )
    city.insert_network(IPSet(["81.2.69.0/24"]), LONDON)
    city.insert_network(IPSet(["2001:db8:1::/48"]), BERLIN)
    city.insert_network(IPSet(["192.0.2.0/24"]), NO_CITY)
    city.to_db_file(str(directory / "city.mmdb"))
    asn = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-ASN",
        languages=["en"],
        description="footfall test",
    )
    asn.insert_network(
        IPSet(["81.2.69.0/24"]),
        {"autonomous_system_number": 20712, "autonomous_system_organization": "Andrews & Arnold"},
    )
    asn.to_db_file(str(directory / "asn.mmdb"))
    return directory / "city.mmdb", directory / "asn.mmdb"


@pytest.fixture(scope="module")
def lookup(geo_db: tuple[Path, Path]) -> Iterator[GeoLookup]:
    geo = GeoLookup.open(*geo_db)
    yield geo
    geo.close()


def test_ipv4_city_region_coarse_location_and_asn(lookup: GeoLookup) -> None:
    assert lookup.lookup("81.2.69.160") == {
        "geo_country": "GB",
        "geo_region": "GB-ENG",
        "geo_city": "London",
        "geo_latitude": 51.5,
        "geo_longitude": -0.1,
        "geo_timezone": "Europe/London",
        "geo_asn": 20712,
        "geo_asn_org": "Andrews & Arnold",
    }


def test_ipv6(lookup: GeoLookup) -> None:
    found = lookup.lookup("2001:db8:1::42")
    assert (found["geo_country"], found["geo_city"], found["geo_region"]) == (
        "DE",
        "Berlin",
        "DE-BE",
    )
    assert (found["geo_latitude"], found["geo_longitude"]) == (52.5, 13.4)
    assert "geo_asn" not in found  # not in the ASN database


def test_unknown_private_and_malformed_addresses_give_nothing(lookup: GeoLookup) -> None:
    assert lookup.lookup("8.8.8.8") == {}
    assert lookup.lookup("2001:db8:2::1") == {}
    assert lookup.lookup("10.1.2.3") == {}
    assert lookup.lookup("not-an-ip") == {}
    assert lookup.lookup("192.0.2.7") == {"geo_country": "FR"}


def test_same_columns_as_geoip2_models(geo_db: tuple[Path, Path], lookup: GeoLookup) -> None:
    """The records are read as dicts (cheaper); geoip2's models would say the same."""
    import geoip2.database
    import geoip2.errors

    city_reader, asn_reader = (geoip2.database.Reader(str(p)) for p in geo_db)
    try:
        for ip in ("81.2.69.160", "2001:db8:1::42", "192.0.2.7", "8.8.8.8", "10.1.2.3", "x"):
            expected: dict[str, object] = {}
            try:
                city = city_reader.city(ip)
            except (geoip2.errors.AddressNotFoundError, ValueError):
                pass
            else:
                country = city.country.iso_code
                region = city.subdivisions.most_specific.iso_code
                lat, lon = city.location.latitude, city.location.longitude
                expected = {
                    "geo_country": country,
                    "geo_region": f"{country}-{region}" if country and region else region,
                    "geo_city": city.city.name,
                    "geo_latitude": None if lat is None else round(lat, 1),
                    "geo_longitude": None if lon is None else round(lon, 1),
                    "geo_timezone": city.location.time_zone,
                }
            try:
                asn = asn_reader.asn(ip)
            except (geoip2.errors.AddressNotFoundError, ValueError):
                pass
            else:
                expected["geo_asn"] = asn.autonomous_system_number
                expected["geo_asn_org"] = asn.autonomous_system_organization
            assert lookup.lookup(ip) == {k: v for k, v in expected.items() if v is not None}, ip
    finally:
        city_reader.close()
        asn_reader.close()


def test_a_damaged_record_gives_only_well_typed_columns(tmp_path: Path) -> None:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City")
    odd = {
        "country": {"iso_code": 7},
        "subdivisions": ["ENG"],
        "city": {"names": "London"},
        "location": {"latitude": "51.5", "longitude": -0.0931, "time_zone": "Europe/London"},
    }
    writer.insert_network(IPSet(["81.2.69.0/24"]), odd)
    writer.to_db_file(str(tmp_path / "odd.mmdb"))
    geo = GeoLookup.open(tmp_path / "odd.mmdb")
    try:
        assert geo.lookup("81.2.69.1") == {"geo_longitude": -0.1, "geo_timezone": "Europe/London"}
    finally:
        geo.close()


def _ctx(ip: str | None) -> RequestContext:
    site = Site(id=1, name="s", write_key="k")
    return RequestContext(site=site, received_at=datetime.now(UTC), ip=ip)


def test_anonymous_messages_keep_only_the_country(lookup: GeoLookup) -> None:
    draft = Draft({"type": "page"}, None, anonymous=True)
    GeoStep(lookup)(draft, _ctx("81.2.69.160"))
    assert draft.columns == {"geo_country": "GB"}


def test_no_database_no_columns_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="footfall.pipeline.geo"):
        geo = open_geo(None, None)
    assert geo is None
    lines = [r.getMessage() for r in caplog.records if r.name == "footfall.pipeline.geo"]
    assert len(lines) == 1
    assert "geoipupdate" in lines[0] and "FOOTFALL_GEOIP_CITY_DB" in lines[0]
    draft = Draft({"type": "page"}, None)
    GeoStep(None)(draft, _ctx("81.2.69.160"))
    assert draft.columns == {}


def test_a_configured_file_that_is_missing_turns_geo_off(
    tmp_path: Path, geo_db: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="footfall.pipeline.geo"):
        assert open_geo(tmp_path / "missing.mmdb", None) is None
        geo = open_geo(geo_db[0], tmp_path / "missing-asn.mmdb")
    assert geo is not None
    try:
        assert "geo_asn" not in geo.lookup("81.2.69.160")
    finally:
        geo.close()
    assert sum("is not a file" in r.getMessage() for r in caplog.records) == 2


def test_over_http_through_a_trusted_proxy(database: str, geo_db: tuple[Path, Path]) -> None:
    """The collector opens the databases at start; the IP itself is never stored."""
    city, asn = geo_db
    settings = collector_settings(
        database, geoip_city_db=str(city), geoip_asn_db=str(asn), trusted_proxies="127.0.0.1"
    )
    server = ServerThread(settings).start()
    try:
        site_id, key = make_site(database)
        for anon, ip in [("v4", "81.2.69.160"), ("v6", "2001:db8:1::42"), ("unknown", "8.8.4.4")]:
            post(server.base_url, key, [page(anon)], headers={"X-Forwarded-For": ip})
    finally:
        server.stop()
    rows = {
        r["anonymous_id"]: r
        for r in query(database, "SELECT * FROM events WHERE site_id = %s", (site_id,))
    }
    assert (rows["v4"]["geo_country"], rows["v4"]["geo_city"], rows["v4"]["geo_asn"]) == (
        "GB",
        "London",
        20712,
    )
    assert (rows["v6"]["geo_country"], rows["v6"]["geo_timezone"]) == ("DE", "Europe/Berlin")
    assert all(rows["unknown"][c] is None for c in ("geo_country", "geo_city", "geo_asn"))
    for row in rows.values():
        text = repr(row)
        assert "81.2.69.160" not in text and "2001:db8:1::42" not in text and "8.8.4.4" not in text
