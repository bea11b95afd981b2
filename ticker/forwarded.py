"""Who the client is when a proxy stands in front: `X-Forwarded-For`, believed only from
trusted proxies.

Each proxy appends the address it was connected from, so the header reads left to right
from the client to the last proxy. Anyone can write the left part, so it is read from the
right: past the trusted proxies, the first address that is not one of them is the client.
If every address is trusted, the leftmost is. From a peer that is not trusted, the header
is ignored: the peer is the client. (uvicorn's proxy headers middleware reads it the same
way for the publisher; this is the hub's copy, and both take the same setting.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries
        )
        self._cache: dict[str, bool] = {}

    def trusts(self, address: str) -> bool:
        known = self._cache.get(address)
        if known is None:
            try:
                ip = ipaddress.ip_address(address.strip("[]"))
            except ValueError:
                known = False
            else:
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                known = any(ip in network for network in self.networks)
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[address] = known
        return known

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: `peer` (the socket's), or from `forwarded_for` (the
        X-Forwarded-For values, joined by commas) when the peer is a trusted proxy."""
        if peer is None or not forwarded_for or not self.trusts(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        hops = [hop for hop in hops if hop]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer
