"""Who counts as one client for a per-client limit (the API's failed authentications and
self-service limits, the mail listener's peers): one key per subscriber, not per address."""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64
"""The IPv6 network counted as one client: a subscriber's (RFC 6177; mobile networks hand each
phone a /64, as do most home lines and cloud servers), who can take any of its 2**64
addresses."""


def address_key(address: str) -> str:
    """What a per-client limit counts ``address`` under: an IPv4 address itself (an
    IPv4-mapped IPv6 address is its IPv4 one), an IPv6 address its /64 network. Anything else
    (no peer, a Unix socket) as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
