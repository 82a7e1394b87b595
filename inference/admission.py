"""One admission gate for every image request, page and API alike: the work in flight (decode, preprocessing, the
model and the answer's images) is bounded as a whole by the memory it may take, so a burst of large allowed images
cannot stack its memory past the process's limit.

    python -c "from inference.admission import admitted; print(admitted)"

Each request holds its share of IMAGE_MEMORY_MB from before its image is decoded until its answer is made: what its
header says decoding it will take (inference.images.working_memory_mb; the worst allowed image, 25 megapixels, about
110 MB), and never more than the whole budget, so one image larger than it still runs, alone. A canvas drawing takes
a few MB, so many run beside each other. A request that does not fit waits up to IMAGE_WAIT_SECONDS, then is refused
with `Busy` (the API: 503 with Retry-After; the page: a plain message). When the last request in flight leaves, the
freed heap is handed back to the system (glibc's malloc_trim), so the RSS returns near idle after a burst instead of
keeping its peak (`make bench-burst`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import threading
import time
from collections.abc import Callable, Iterator

from config.settings import settings
from inference.images import working_memory_mb

RETRY_AFTER_SECONDS = 2  # what a refused client is told to wait: a worst-case image takes well under a second


class Busy(ValueError):
    """The budget had no room for the request for the whole wait; the message is the user's, `retry_after` the
    seconds to wait."""

    retry_after = RETRY_AFTER_SECONDS


class Gate:
    """A budget of megabytes shared by the requests in flight, and their count (to know when the process goes
    idle)."""

    def __init__(self, budget_mb: float, wait_seconds: float) -> None:
        self.budget_mb = budget_mb
        self.wait_seconds = wait_seconds
        self._changed = threading.Condition()
        self._used_mb = 0.0
        self._in_flight = 0

    @contextlib.contextmanager
    def admitted(self, cost_mb: float) -> Iterator[None]:
        cost = min(cost_mb, self.budget_mb)  # larger than the whole budget: it runs, alone
        deadline = time.monotonic() + self.wait_seconds
        with self._changed:
            while self._used_mb + cost > self.budget_mb:
                if not self._changed.wait(max(deadline - time.monotonic(), 0.0)):
                    raise Busy("The server is busy reading other images: try again in a moment.")
            self._used_mb += cost
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._used_mb -= cost
                self._in_flight -= 1
                idle = self._in_flight == 0
                self._changed.notify_all()
            if idle:
                give_back_memory()

    @property
    def in_flight(self) -> int:
        return self._in_flight


@functools.cache
def gate() -> Gate:
    """The process's gate, made at first use (after server.py checked the settings)."""
    current = settings()
    return Gate(current.image_memory_mb, current.image_wait_seconds)


def admitted(data: bytes) -> contextlib.AbstractContextManager[None]:
    """`with admitted(data):` around reading the image `data` (its encoded bytes) and answering it; raises Busy
    when the server has no room for it within IMAGE_WAIT_SECONDS."""
    return gate().admitted(working_memory_mb(data))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to hand back this way
        return None


def give_back_memory() -> None:
    """Return the heap's free pages to the system (glibc keeps them otherwise: the RSS would stay at the burst's
    peak). A few milliseconds, run only when no image request is in flight."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
