"""Real Redis Cluster and Redis Sentinel deployments for the tests, on free local ports.

A cluster is six redis-server processes (three masters, three replicas) joined with
`redis-cli --cluster create`; a sentinel deployment is one master, one replica and three
sentinels (`redis-server --sentinel`) with a quorum of 2. Both use small timeouts so a
failover takes seconds, and both let a test kill a node (SIGKILL) to watch one happen.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from procs import free_port
from redisserver import find_redis_server

NODE_TIMEOUT_MS = 2000


def _cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("redis-cli is not on PATH: install the redis-tools package")
    return found


def _wait(what: str, ready: callable, timeout: float) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen in {timeout:g} s")
        time.sleep(0.05)


class _Node:
    def __init__(self, binary: str, root: Path, args: list[str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = root / str(self.port)
        self.dir.mkdir()
        self.binary = binary
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        command = [self.binary, *extra, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), *self.args]
        with (self.dir / "log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2
        )

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RedisCluster:
    """Three masters with one replica each, `cluster-node-timeout` 2 s."""

    def __init__(self, masters: int = 3) -> None:
        self.binary = find_redis_server()
        self.root = Path(tempfile.mkdtemp(prefix="ticker-cluster-"))
        self.count = masters * 2
        self.nodes: list[_Node] = []

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        for _ in range(self.count):
            node = _Node(self.binary, self.root, [], _cluster_port())
            node.args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{node.port}.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--appendonly", "yes",
                "--save", "",
                "--repl-diskless-sync-delay", "0",
            ]  # fmt: skip
            node.start()
            self.nodes.append(node)
        for node in self.nodes:
            _wait("a cluster node start", lambda n=node: n.client().ping(), 10)
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [_cli(), "--cluster", "create", *addresses, "--cluster-replicas", "1"]
            + ["--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok()

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def live_nodes(self) -> list[_Node]:
        return [node for node in self.nodes if node.running]

    def wait_ok(self, timeout: float = 30) -> None:
        def ok() -> bool:
            for node in self.live_nodes():
                info = node.client().execute_command("CLUSTER", "INFO")
                if isinstance(info, bytes):
                    info = info.decode()
                if "cluster_state:ok" not in str(info):
                    return False
                # A replica that never synced cannot take over: wait for every link.
                replication = node.client().info("replication")
                if replication["role"] != "master" and replication["master_link_status"] != "up":
                    return False
            return True

        _wait("cluster_state:ok on every node", ok, timeout)

    def owner(self, key: str) -> _Node:
        """The live master that owns the slot of `key`."""
        for node in self.live_nodes():
            client = node.client()
            slot = client.execute_command("CLUSTER", "KEYSLOT", key)
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = master[1]
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError("no live node")

    def wait_owner_changed(self, key: str, old: _Node, timeout: float = 30) -> _Node:
        """Wait until a live master other than `old` owns the slot of `key`."""
        _wait("a replica taking over", lambda: self.owner(key) is not old, timeout)
        return self.owner(key)

    def flush(self) -> None:
        for node in self.live_nodes():
            client = node.client()
            if client.info("replication")["role"] == "master":
                client.flushall()

    def restore(self) -> None:
        """Start every killed node again (it rejoins as a replica) and wait for the cluster."""
        for node in self.nodes:
            if not node.running:
                node.start()
        for node in self.nodes:
            _wait("a cluster node restart", lambda n=node: n.client().ping(), 10)
        self.wait_ok()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisSentinels:
    """One master, one replica and three sentinels watching them as `mymaster`."""

    service = "mymaster"

    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.root = Path(tempfile.mkdtemp(prefix="ticker-sentinel-"))
        self.data: list[_Node] = []
        self.sentinels: list[_Node] = []

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        quick = ["--appendonly", "yes", "--save", "", "--repl-diskless-sync-delay", "0"]
        master = _Node(self.binary, self.root, list(quick))
        master.start()
        replica = _Node(self.binary, self.root, list(quick))
        replica.args += ["--replicaof", "127.0.0.1", str(master.port)]
        replica.start()
        self.data = [master, replica]
        for node in self.data:
            _wait("a Redis start", lambda n=node: n.client().ping(), 10)
        _wait("the replica's sync", lambda: self._linked(replica), 15)
        for _ in range(3):
            sentinel = _Node(self.binary, self.root, [])
            config = sentinel.dir / "sentinel.conf"
            config.write_text(
                f"port {sentinel.port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.service} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            sentinel.args = ["--sentinel"]
            sentinel.binary = self.binary
            sentinel.start(str(config))
            self.sentinels.append(sentinel)
        for sentinel in self.sentinels:
            _wait("a sentinel start", lambda s=sentinel: s.client().ping(), 10)
        _wait("the sentinels to know each other", self._settled, 30)

    def _linked(self, replica: _Node) -> bool:
        info = replica.client().info("replication")
        return info.get("master_link_status") == "up"

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            state = sentinel.client().execute_command("SENTINEL", "MASTER", self.service)
            if isinstance(state, list):
                state = dict(zip(state[::2], state[1::2], strict=True))
            fields = {_text(k): _text(v) for k, v in state.items()}
            if int(fields["num-other-sentinels"]) < 2 or int(fields["num-slaves"]) < 1:
                return False
        return True

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def master(self) -> _Node:
        host, port = (
            self.sentinels[0]
            .client()
            .execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        )
        return next(node for node in self.data if node.port == int(port))

    def failover(self) -> None:
        self.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", self.service)

    def wait_master_changed(self, old: _Node, timeout: float = 30) -> _Node:
        def changed() -> bool:
            new = self.master()
            if new is old:
                return False
            return new.client().info("replication")["role"] == "master"

        _wait("a new master", changed, timeout)
        return self.master()

    def restore(self) -> None:
        """Start a killed data node again (the sentinels make it a replica) and wait until
        both data nodes are up and linked."""
        for node in self.data:
            if not node.running:
                node.start()
        for node in self.data:
            _wait("a Redis restart", lambda n=node: n.client().ping(), 10)
        master = self.master()
        replica = next(node for node in self.data if node is not master)
        _wait("the replica's sync", lambda: self._linked(replica), 30)

    def flush(self) -> None:
        self.master().client().flushall()

    def close(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
