"""A real redis-server for the tests, which they may stop, restart, pause and wipe.

The Redis broker's promises are about what happens when Redis goes away, so the tests
need a Redis of their own to take away. It runs with an append-only file synced on every
write, as production should, so a restart keeps the data unless a test drops it.

If `redis-server` is missing and the tests run as root in CI (the `CI` variable is set),
it is installed once with apt-get. Anywhere else the tests stop with instructions: a
Redis test that skips proves nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from procs import free_port

_INSTALL_HINT = (
    "redis-server is not on PATH. Install Redis 7 or newer (Debian/Ubuntu: "
    "`sudo apt-get install -y redis-server`; macOS: `brew install redis`) and run the tests again."
)


def find_redis_server() -> str:
    """The redis-server binary, installed with apt-get when that is allowed (root in CI)."""
    found = shutil.which("redis-server")
    if found is None and os.environ.get("CI") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-q"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "redis-server"], check=False)
        found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(_INSTALL_HINT)
    return found


class RedisServer:
    """One redis-server process on a fixed port, so its URL survives restarts."""

    def __init__(self, start_timeout: float = 10.0, extra_args: tuple[str, ...] = ()) -> None:
        """`extra_args` go to redis-server as they are (for example `--requirepass`)."""
        self.binary = find_redis_server()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ticker-redis-"))
        self.data = self.root / "data"
        self.data.mkdir()
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.data),
            *self.extra_args,
        ]
        with (self.root / "redis.log").open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self.paused = False
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        with self._client() as client:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    if not self.running or time.monotonic() > deadline:
                        log = (self.root / "redis.log").read_text(errors="replace")[-2000:]
                        self.stop()
                        raise RuntimeError(f"redis-server did not start:\n{log}") from None
                    time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.running:
            self.resume()  # a stopped process would never handle SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.paused = False

    def restart(self, lose_data: bool = False) -> None:
        """Stop and start again on the same port; `lose_data` wipes the data first, like a
        Redis that came back empty."""
        self.stop()
        if lose_data:
            shutil.rmtree(self.data)
            self.data.mkdir()
        self.start()

    def pause(self) -> None:
        """Freeze the process: connections stay open but nothing answers."""
        if self.running and not self.paused:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def ensure_running(self) -> None:
        """Undo whatever the last test did to the process."""
        self.resume()
        self.start()

    def flush(self) -> None:
        with self._client() as client:
            client.flushall()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _client(self) -> redis.Redis:
        password = None
        if "--requirepass" in self.extra_args:
            password = self.extra_args[self.extra_args.index("--requirepass") + 1]
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=password,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
