"""Where the Redis broker connects: one Redis, a Redis Cluster, or a master that Redis
Sentinel names.

- `redis://`, `rediss://`, `unix://`: one Redis (redis-py's own URL forms).
- `redis+cluster://[user:password@]host:port[,host:port…]`: a Redis Cluster, reached
  through any of the listed nodes (redis-py's asyncio `RedisCluster`).
- `redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]`: the master of
  `service` as the listed sentinels report it (redis-py's asyncio `Sentinel`); the user
  and password are the data nodes', not the sentinels'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

CLUSTER = "redis+cluster"
SENTINEL = "redis+sentinel"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed `redis+cluster://` or `redis+sentinel://` URL."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    service: str | None = None
    db: int = 0

    @property
    def where(self) -> str:
        """For messages: the nodes, never the password."""
        nodes = ",".join(f"{host}:{port}" for host, port in self.hosts)
        if self.scheme == SENTINEL:
            return f"{nodes} (sentinel service {self.service})"
        return f"{nodes} (cluster)"

    def credentials(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password}


def parse(url: str) -> RedisTarget | None:
    """The target of a cluster or sentinel URL; None for any other scheme. Raises
    ValueError for a malformed one."""
    parts = urlsplit(url)
    if parts.scheme not in (CLUSTER, SENTINEL):
        return None
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        name, _, secret = userinfo.partition(":")
        username, password = unquote(name) or None, unquote(secret) or None
    hosts: list[tuple[str, int]] = []
    default_port = 26379 if parts.scheme == SENTINEL else 6379
    for node in netloc.split(","):
        host, colon, port = node.rpartition(":")
        if not colon:
            host, port = node, str(default_port)
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{parts.scheme}: {node!r} is not host:port")
        hosts.append((host, int(port)))
    path = [segment for segment in parts.path.split("/") if segment]
    if parts.scheme == CLUSTER:
        if path:
            raise ValueError("a redis+cluster:// URL has no path (a cluster has database 0 only)")
        return RedisTarget(CLUSTER, tuple(hosts), username, password)
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError("a redis+sentinel:// URL ends with /service-name or /service-name/db")
    db = int(path[1]) if len(path) == 2 else 0
    return RedisTarget(SENTINEL, tuple(hosts), username, password, unquote(path[0]), db)


def valid(url: str) -> bool:
    try:
        return parse(url) is not None
    except ValueError:
        return False
