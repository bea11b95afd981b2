"""The event loop every ticker process runs on.

uvloop when it is installed (it is a dependency on Linux and macOS): its transports and
accept path are in C, which roughly halves the cost of a WebSocket handshake and of each
write, and every process and the benchmark's floor use the same loop, so they compare
fairly. The standard loop otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
