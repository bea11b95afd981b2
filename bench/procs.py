"""Processes the benchmark starts, and what /proc says about them.

CPU time comes from /proc/PID/task/*/schedstat (nanoseconds, per thread) rather than
/proc/PID/stat (10 ms ticks), so even a smoke run measures something. A server that
forks workers is measured as its whole process tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- /proc ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (a hub with --workers forks)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def _cpu_of(pid: int) -> float:
    total = 0.0
    tasks = list(Path(f"/proc/{pid}/task").glob("*"))
    try:
        for task in tasks:
            total += int((task / "schedstat").read_text().split()[0]) / 1e9
        return total
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree, in seconds."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += _cpu_of(member)
    return total


def rss_kb(pid: int) -> int:
    """Resident memory of a process tree, in KB (shared pages count once per process)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def tcp_counters() -> dict[str, int]:
    """Kernel TCP counters (this network namespace): listen-queue overflows show a server
    whose accept backlog is too short for a reconnect storm."""
    wanted = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "SyncookiesSent")
    lines = Path("/proc/net/netstat").read_text().splitlines()
    out: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            pairs = zip(names.split()[1:], values.split()[1:], strict=True)
            out.update({k: int(v) for k, v in pairs if k in wanted})
    return out


def machine() -> dict[str, object]:
    """What the numbers were measured on, for docs/performance.md."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": redis_version(),
        "websockets": _version("websockets"),
        "open_files_limit": _nofile(),
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def redis_version() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        return "not found"
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return next((p[2:] for p in out.split() if p.startswith("v=")), out.strip())


# --- processes -----------------------------------------------------------------------------


def _die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux only: the child gets SIGTERM if the benchmark dies, so an interrupted run
    leaves no hub or Redis behind holding ports."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


class Managed:
    """A child process with its output in a log file, stopped politely then firmly."""

    def __init__(
        self,
        name: str,
        command: list[str],
        logdir: Path,
        env: dict[str, str],
        *,
        death_signal: int = signal.SIGTERM,
    ) -> None:
        """`death_signal` reaches the child if this process dies first: SIGKILL for one
        that may be stopped (SIGSTOP), which would hold a SIGTERM pending forever."""
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            preexec_fn=lambda: _die_with_parent(death_signal),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def start_redis(
    logdir: Path,
    *,
    port: int | None = None,
    data: Path | None = None,
    appendfsync: str | None = None,
    name: str = "redis",
    death_signal: int = signal.SIGTERM,
) -> tuple[Managed, str]:
    """A private redis-server: no persistence, so disk speed is not measured.

    With `appendfsync` ("always", "everysec") it keeps an append-only file in `data`, and
    a restart on the same `port` and `data` reloads it (the fault drill does that)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError(
            "redis-server is not on PATH; install Redis 7+ (Debian: apt-get install redis-server)"
        )
    port = port or free_port()
    data = data or Path(tempfile.mkdtemp(prefix="bench-redis-", dir=logdir))
    persistence = ["--appendonly", "no"]
    if appendfsync is not None:
        persistence = ["--appendonly", "yes", "--appendfsync", appendfsync]
    command = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        *persistence,
        "--dir",
        str(data),
        "--maxclients",
        "10000",
    ]
    redis = Managed(name, command, logdir, {}, death_signal=death_signal)
    wait_for(lambda: _redis_ping(port), redis, "redis-server to answer PING")
    return redis, f"redis://127.0.0.1:{port}/0"


def _redis_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")
    return False


def http_ok(port: int, path: str) -> bool:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as sock:
        sock.sendall(request)
        return sock.recv(64).startswith(b"HTTP/1.1 200")
    return False


def wait_for(ready: object, process: Managed, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        process.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}; see {process.log_path}")
        time.sleep(0.05)


def ticker_command(*args: str) -> list[str]:
    """The ticker CLI of this checkout, whether or not its script is on PATH."""
    return [sys.executable, "-m", "ticker.cli", *args]


def create_token(store: list[str], logdir: Path) -> str:
    """A token in the store the flags name (`--redis-url URL` or `--db PATH`)."""
    done = subprocess.run(
        ticker_command("token", "create", "bench", *store),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 or not done.stdout.strip():
        (logdir / "token.log").write_text(done.stdout + done.stderr)
        raise BenchError(f"`ticker token create` failed:\n{done.stderr[-2000:]}")
    return done.stdout.split()[0]
