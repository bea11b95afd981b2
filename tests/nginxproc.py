"""Debian's nginx as an ordinary process, running the committed deploy/nginx.conf.

The config is rendered from the committed file by substitution: only the listen address,
the upstream servers' addresses and the reload timeout change, and every substitution
must match exactly once, so the tests exercise the directives that production runs.
Everything nginx writes (pid, logs, temp files) goes to a temporary prefix.

If nginx is missing, scripts/test installs it (apt-get install nginx); the tests fail
with that instruction rather than skip: a proxy test that skips proves nothing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from procs import free_port

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "deploy" / "nginx.conf"

_INSTALL_HINT = (
    "nginx is not installed: ./scripts/test installs it (Debian/Ubuntu: "
    "`sudo apt-get install -y nginx`); the proxy tests need the real thing."
)


def find_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RuntimeError(_INSTALL_HINT)
    return found


def render(
    text: str,
    *,
    port: int,
    hubs: list[int],
    publisher: int,
    shutdown_timeout: str,
    prefix: Path,
) -> str:
    """The committed config with local addresses and a short reload timeout."""
    replacements = [
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("server publisher:8000;", f"server 127.0.0.1:{publisher};"),
        ("worker_shutdown_timeout 30s;", f"worker_shutdown_timeout {shutdown_timeout};"),
        # Everything nginx writes stays in the prefix.
        (
            "http {\n",
            "http {\n"
            f"    access_log {prefix}/access.log;\n"
            + "".join(
                f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
        ),
    ]
    replacements += [
        (f"server hub-{n}:8001 ", f"server 127.0.0.1:{hub_port} ")
        for n, hub_port in enumerate(hubs, 1)
    ]
    for old, new in replacements:
        count = text.count(old)
        assert count == 1, f"deploy/nginx.conf has {old!r} {count} times, the test expects once"
        text = text.replace(old, new)
    if os.geteuid() == 0:
        # Workers would run as nobody, who may not write the temporary prefix.
        text = "user root;\n" + text
    return text


class Nginx:
    """One nginx master and its workers, on a free port of 127.0.0.1."""

    def __init__(self, *, hubs: list[int], publisher: int, shutdown_timeout: str = "2s") -> None:
        self.binary = find_nginx()
        self.port = free_port()
        self.prefix = Path(tempfile.mkdtemp(prefix="ticker-nginx-"))
        self.conf = self.prefix / "nginx.conf"
        self.conf.write_text(
            render(
                COMMITTED.read_text(),
                port=self.port,
                hubs=hubs,
                publisher=publisher,
                shutdown_timeout=shutdown_timeout,
                prefix=self.prefix,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-p",
            f"{self.prefix}/",
            "-c",
            str(self.conf),
            "-e",
            str(self.prefix / "error.log"),
            "-g",
            f"daemon off; pid {self.prefix}/nginx.pid; error_log {self.prefix}/error.log info;",
            *extra,
        ]

    def check(self) -> None:
        """`nginx -t`: the rendered config is valid."""
        result = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        self.check()
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while len(self.workers()) == 0 or not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{self.log()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def workers(self) -> list[int]:
        """The master's children: its workers, old ones included after a reload."""
        assert self.process is not None
        found = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(pid) for pid in found]

    def reload(self) -> None:
        """What `nginx -s reload` does: new workers now, the old ones shut down gracefully."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)
