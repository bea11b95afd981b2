"""Worker processes that share one port: start them, restart one that dies, stop them all
together, and never leave one behind.

A worker that dies is started again after a pause that doubles each time (so a crash loop
does not eat the machine) and returns to the shortest once the worker has stayed up a
while. A worker that keeps dying within seconds of starting cannot be helped by restarts
(a port held by another program, a store that refuses us): the supervisor stops everything
and exits non-zero with one line that says so, so an init system or orchestrator sees the
failure instead of a process that looks alive.

If the supervisor itself dies, even by SIGKILL, its workers stop too: on Linux the kernel
sends them SIGTERM (PR_SET_PDEATHSIG); everywhere, each worker also notices that its parent
changed and stops itself the same graceful way.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("ticker.supervisor")

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
CONFIG_EXIT = 2  # a worker that exits 2 refused its settings: restarting cannot help


@dataclass(frozen=True)
class Backoff:
    """When to start a dead worker again, and when to give up on it."""

    first: float = 0.5  # seconds before the first restart
    cap: float = 30.0  # the longest pause between restarts
    healthy_after: float = 30.0  # a worker up this long starts again from `first`
    startup: float = 5.0  # a death this soon after starting is a failure to start
    give_up: int = 5  # failures to start in a row before the supervisor stops


@dataclass
class _Worker:
    index: int
    delay: float
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    failed_starts: int = 0


class Supervisor:
    """Runs `count` workers, each the command `command(index)` returns."""

    def __init__(
        self,
        name: str,
        command: Callable[[int], list[str]],
        count: int,
        *,
        backoff: Backoff | None = None,
        stop_timeout: float = 15.0,
        poll: float = 0.1,
    ) -> None:
        self.name = name
        self.command = command
        self.backoff = backoff or Backoff()
        self.stop_timeout = stop_timeout
        self.poll = poll
        self.workers = [_Worker(i, self.backoff.first) for i in range(count)]
        self.stopping = False

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT (then 0) or until a worker cannot start (then
        non-zero, after one line on stderr)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for worker in self.workers:
            self._start(worker)
        log.info("%s: %d workers", self.name, len(self.workers))
        code = 0
        while not self.stopping:
            failure = self._check()
            if failure is not None:
                code, message = failure
                print(f"ticker: {message}", file=sys.stderr, flush=True)
                break
            time.sleep(self.poll)
        self._stop_all()
        return code

    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None]

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _start(self, worker: _Worker) -> None:
        worker.process = subprocess.Popen(self.command(worker.index))
        worker.started = time.monotonic()

    def _check(self) -> tuple[int, str] | None:
        """Start again the workers whose pause is over; notice the ones that died."""
        now = time.monotonic()
        for worker in self.workers:
            if worker.process is None:
                if now >= worker.restart_at and not self.stopping:
                    self._start(worker)
                continue
            code = worker.process.poll()
            uptime = now - worker.started
            if code is None:
                if uptime >= self.backoff.healthy_after:
                    worker.delay, worker.failed_starts = self.backoff.first, 0
                continue
            worker.process = None
            worker.failed_starts = worker.failed_starts + 1 if uptime < self.backoff.startup else 0
            what = f"{self.name} worker {worker.index} exited with code {code}"
            if code == CONFIG_EXIT:
                return CONFIG_EXIT, f"{what} (it refused its settings); stopping all workers"
            if worker.failed_starts >= self.backoff.give_up:
                return 1, (
                    f"{what}, {worker.failed_starts} times in a row within "
                    f"{self.backoff.startup:g} s of starting; stopping all workers"
                )
            log.error("%s; starting it again in %.1f s", what, worker.delay)
            worker.restart_at = now + worker.delay
            worker.delay = min(worker.delay * 2, self.backoff.cap)
        return None

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(sig)

    def _stop_all(self) -> None:
        """SIGTERM to every worker, then SIGKILL to any still there after `stop_timeout`."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                log.error("%s worker %d did not stop; killing it", self.name, worker.index)
                worker.process.kill()
                worker.process.wait()


# --- in the worker ---------------------------------------------------------------------------


def stop_with_parent(parent: int, *, interval: float = 1.0, deathsig: bool = True) -> None:
    """Called in a worker: when the supervisor `parent` is gone, SIGTERM this process, which
    stops it as gracefully as an operator's SIGTERM would.

    On Linux the kernel does it the moment the parent dies. A thread that checks the parent
    every `interval` seconds covers other systems, and a parent that died before this call.
    """
    if deathsig and sys.platform.startswith("linux"):
        _set_parent_death_signal(signal.SIGTERM)
    threading.Thread(
        target=_watch_parent, args=(parent, interval), name="parent-watch", daemon=True
    ).start()


def _set_parent_death_signal(sig: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError) as exc:  # not glibc/musl: the watch thread remains
        log.debug("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)


def _watch_parent(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    log.warning("the supervisor (pid %d) is gone; stopping", parent)
    os.kill(os.getpid(), signal.SIGTERM)
