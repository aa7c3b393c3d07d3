"""One background asyncio loop per process for in-process servers and link emulators (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")
_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on a daemon thread on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="gelato-transport-loop", daemon=True).start()
            _loop = loop
        return _loop


def run_in_background(coro: Awaitable[T], timeout: float | None = 30.0) -> T:
    """Run a coroutine on the background loop and wait for its result from this (other) thread."""
    return asyncio.run_coroutine_threadsafe(coro, background_loop()).result(timeout)
