"""Which address a request comes from, for the login throttle: the socket's peer, or the client
a trusted proxy names in X-Forwarded-For (TOKENSERVICE_TRUSTED_PROXIES). The one place that
parses the setting and decides whom to believe; the core (server/abuse.py) and the HTTP bridge
(http_bridge/context.py) both ask it.
"""

from __future__ import annotations

import ipaddress

from server.settings import ConfigError

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def client_address(peer: str, forwarded_for: str, trusted: Networks) -> str:
    """The address to throttle: `peer` (the socket's), unless `peer` is a trusted proxy that
    sent `forwarded_for` (X-Forwarded-For): then the right-most address in it that is not itself
    a trusted proxy (entries further left are whatever the client chose to write)."""
    if not forwarded_for or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if _ip(hop) is None:
            return peer  # not an address: do not guess
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: Networks) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in network for network in trusted)


def parse_networks(text: str) -> Networks:
    """Comma-separated addresses or CIDR networks (TOKENSERVICE_TRUSTED_PROXIES)."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                "TOKENSERVICE_TRUSTED_PROXIES must list IP addresses or CIDR networks"
            ) from None
    return tuple(networks)


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None


def grpc_peer_host(peer: str) -> str:
    """The host of a grpc peer string: `ipv4:1.2.3.4:5678` -> `1.2.3.4`, `ipv6:[::1]:5678` ->
    `::1`; anything else (a unix socket) whole."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0] if rest.startswith("[") else rest
        return host.strip("[]")
    return peer
