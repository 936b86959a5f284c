"""The client's IP address: the direct peer, or what trusted proxies say it was.

``X-Forwarded-For`` and ``Forwarded`` (RFC 7239) are believed only when the
direct peer is in ``FOOTFALL_TRUSTED_PROXIES``. The chain is then walked from
the right (the hop nearest to us) past every trusted proxy; the first address
that is not one is the client. Anything to its left was written by the client
itself and is ignored, so a forged header cannot choose the IP. The result is
used in memory only (geolocation, the cookieless hash, the stored /24 or /48).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def trusted_networks(spec: str) -> tuple[Network, ...]:
    """``FOOTFALL_TRUSTED_PROXIES`` (comma-separated IPs or CIDRs), parsed once."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()
    )


def _parse(text: str) -> Address | None:
    """An address from a header element: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``"[::1]"``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def _forwarded_for(header: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    hops = []
    for element in header.split(","):
        for pair in element.split(";"):
            name, _, value = pair.partition("=")
            if name.strip().lower() == "for":
                hops.append(value)
    return hops


def client_ip(
    peer: str | None, headers: Mapping[str, str], trusted: Sequence[Network]
) -> str | None:
    """The client's address as a string (see the module docstring)."""
    if peer is None:
        return None
    direct = _parse(peer)
    if direct is None or not trusted or not _trusted(direct, trusted):
        return str(direct) if direct is not None else peer
    forwarded = headers.get("forwarded")
    if forwarded:
        hops = _forwarded_for(forwarded)
    else:
        hops = [h for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    client = direct
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # "unknown" or garbage: stop at the last address we can vouch for
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)
