"""The worker supervisor with real (tiny) worker processes and short timings."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ticker.supervisor import Backoff, Supervisor


@pytest.fixture
def own_signals() -> Iterator[None]:
    """The supervisor installs SIGTERM and SIGINT handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def worker(log: Path, code: int, lives: float = 0.0) -> list[str]:
    """A worker that notes when it started, lives `lives` seconds and exits with `code`."""
    script = f"""
        import sys, time
        with open({str(log)!r}, "a") as f:
            f.write(f"{{time.monotonic()}}\\n")
        time.sleep({lives})
        sys.exit({code})
    """
    return [sys.executable, "-c", textwrap.dedent(script)]


def starts(log: Path) -> list[float]:
    return [float(line) for line in log.read_text().split()]


def test_a_worker_that_keeps_failing_to_start_is_given_up_with_one_line(
    tmp_path: Path, own_signals: None, capfd: pytest.CaptureFixture[str]
):
    log = tmp_path / "starts"
    backoff = Backoff(first=0.1, cap=0.3, healthy_after=60, startup=5, give_up=5)
    supervisor = Supervisor("hub", lambda i: worker(log, 3), 1, backoff=backoff, poll=0.02)
    began = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - began < 10
    times = starts(log)
    assert len(times) == 5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for gap, pause in zip(gaps, (0.1, 0.2, 0.3, 0.3), strict=True):  # doubling, capped
        assert gap >= pause
    assert gaps[2] > gaps[0]
    err = capfd.readouterr().err
    assert err.endswith(
        "ticker: hub worker 0 exited with code 3, 5 times in a row within 5 s of starting; "
        "stopping all workers\n"
    )


def test_a_worker_that_refuses_its_settings_stops_everything_at_once(
    tmp_path: Path, own_signals: None, capfd: pytest.CaptureFixture[str]
):
    log = tmp_path / "starts"
    commands = {0: worker(tmp_path / "other", 0, lives=60), 1: worker(log, 2)}
    supervisor = Supervisor("publisher", commands.__getitem__, 2, poll=0.02)
    began = time.monotonic()
    assert supervisor.run() == 2
    assert time.monotonic() - began < 10
    assert len(starts(log)) == 1
    assert all(w.process is None or w.process.poll() is not None for w in supervisor.workers)
    assert capfd.readouterr().err.endswith(
        "ticker: publisher worker 1 exited with code 2 (it refused its settings); "
        "stopping all workers\n"
    )


def test_a_worker_that_ran_a_while_is_restarted_without_growing_pauses(
    tmp_path: Path, own_signals: None
):
    log = tmp_path / "starts"
    backoff = Backoff(first=0.1, cap=5, healthy_after=0.3, startup=0.2, give_up=2)
    supervisor = Supervisor("hub", lambda i: worker(log, 1, lives=0.4), 1, backoff=backoff)
    threading.Timer(3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert supervisor.run() == 0  # stopped by SIGTERM, never gave up
    assert len(starts(log)) >= 3
    # Each life outlasted `healthy_after`, so each death found the pause back at `first`.
    assert supervisor.workers[0].delay <= 2 * backoff.first


def test_a_worker_stops_when_its_parent_dies_without_the_kernel_telling_it(tmp_path: Path):
    """The portable watch: the parent is SIGKILLed and the worker, which asked for no
    death signal, notices the new parent and stops on its own."""
    pid_file = tmp_path / "worker.pid"
    worker_code = f"""
        import os, time
        from ticker.supervisor import stop_with_parent
        stop_with_parent(os.getppid(), interval=0.1, deathsig=False)
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(60)
    """
    parent_code = f"""
        import subprocess, sys, time
        subprocess.Popen([sys.executable, "-c", {textwrap.dedent(worker_code)!r}])
        time.sleep(60)
    """
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(parent_code)])
    try:
        deadline = time.monotonic() + 15
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        worker_pid = int(pid_file.read_text())
        assert alive(worker_pid)
        parent.kill()
        parent.wait()
        assert gone_within(worker_pid, 5)
    finally:
        parent.kill()
        parent.wait()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its reaper does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.05)
    return True
