"""What a request may take before it is decoded: images and decoded pixels per request, and
decoded pixels in flight for the whole server. A request is admitted from its images' headers
(nothing decoded yet); one over its own limit is 413, one the server cannot hold now waits a
moment for the pixels in flight to drop, then gets 503 with Retry-After - never an OOM.

Decoding a 40 MP image takes ~120 MB of RGB (and PIL's copy on the way); the limit per image
alone let 8 such images in one 1 MB request, or three such requests at once, take the server to
4 GB. After a large request its memory is handed back to the system (glibc keeps freed heap
pages otherwise: RSS stayed at 2 GB).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import time

MAX_REQUEST_PIXELS = 64_000_000  # eight 8 MP photos in one request
MAX_PIXELS_IN_FLIGHT = 128_000_000  # ~384 MB of decoded RGB for the whole server
WAIT_S = 1.0  # how long a request waits for pixels in flight to drop before its 503
TRIM_PIXELS = 4_000_000  # requests at least this large hand their freed memory back


class PixelBudget:
    """Decoded pixels in flight, server-wide. Used from one event loop (HTTP and gRPC share it);
    a request larger than the whole budget is admitted alone (its own limit is checked first)."""

    def __init__(self, capacity: int = MAX_PIXELS_IN_FLIGHT, wait_s: float = WAIT_S) -> None:
        self.capacity, self.wait_s, self.used = capacity, wait_s, 0

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int, busy):
        """Hold ``pixels`` for the block; ``busy()`` -> the exception to raise when they cannot
        be had within ``wait_s``."""
        deadline = time.monotonic() + self.wait_s
        while self.used and self.used + pixels > self.capacity:
            if time.monotonic() >= deadline:
                raise busy()
            await asyncio.sleep(0.01)  # polled: any loop, no waiter bookkeeping to leak
        self.used += pixels
        try:
            yield
        finally:
            self.used -= pixels


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to do
        fn = None
    return fn


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim; a no-op elsewhere)."""
    if _TRIM is not None:
        _TRIM(0)
