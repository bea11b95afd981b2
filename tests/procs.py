"""Helpers for tests that run real processes on real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

TICKER = [sys.executable, "-m", "ticker.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Ask a process to stop, kill it if it will not, and return its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def ticker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short `ticker` command to its end."""
    return subprocess.run(
        [*TICKER, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def read_until(process: subprocess.Popen[str], needle: str, timeout: float = 10) -> str:
    """Lines from a process's stdout until one contains `needle`."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return "".join(seen)
    raise AssertionError(f"{needle!r} not seen in: {''.join(seen)!r}")
