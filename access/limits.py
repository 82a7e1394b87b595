"""Per-client limits, in this process's memory: how often one client may do something (`RateLimit`), and how
often a wrong password may be tried (`Throttle`). Each answers "not now" with the seconds to wait, never "never".

    python -c "from access.limits import RateLimit; r = RateLimit(2, 60); print([r.check('a') for _ in range(3)])"

Replicas each keep their own counts; Caddy's sticky cookie sends a browser to the same one, so a client meets one
set of limits in practice.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from config.settings import settings

MAX_CLIENTS = 10_000  # distinct clients remembered per limit; the oldest are forgotten first (memory stays bounded)


class RateLimit:
    """At most `limit` events per client in any `window` seconds (a sliding window); `limit` 0 turns it off."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self._clock = limit, window, clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        events = self._events.pop(client, None) or deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        self._events[client] = events  # re-inserted: the dict's order is the clients' recency
        while len(self._events) > MAX_CLIENTS:
            self._events.pop(next(iter(self._events)))
        return events

    def _look(self, client: str, count: bool) -> float:
        if self.limit <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            events = self._recent(client, now)
            if len(events) >= self.limit:
                return max(events[0] + self.window - now, 0.001)
            if count:
                events.append(now)
            return 0.0

    def wait(self, client: str) -> float:
        """Seconds until `client` may act again (0.0: now); nothing is counted."""
        return self._look(client, count=False)

    def check(self, client: str) -> float:
        """Count one event for `client` if it is allowed: 0.0; else the seconds until it would be (nothing is
        counted)."""
        return self._look(client, count=True)

    def clear(self, client: str) -> None:
        with self._lock:
            self._events.pop(client, None)


class Throttle:
    """Wrong passwords: after `attempts` failures within `window` seconds a client waits until the oldest of them
    is `window` old (so it is never locked out for good). A success clears the client's count.

    A guesser slows down only its own address, so the operator elsewhere signs in as ever. Where the operator shares
    the guesser's address (an office, a NAT), the browser that has signed in before (its visitor id: a device
    cookie, 192 random bits no guesser knows) is counted apart from the address, so it is not locked out with it."""

    def __init__(self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._failures = RateLimit(attempts, window, clock)
        self._known: dict[str, None] = {}  # devices that signed in (insertion order: the oldest forgotten first)

    def _key(self, client: str, device: str | None) -> str:
        return f"device:{device}" if device is not None and device in self._known else client

    def wait(self, client: str, device: str | None = None) -> float:
        """Seconds this client must wait before it may try a password again (0.0: it may try now)."""
        return self._failures.wait(self._key(client, device))

    def failed(self, client: str, device: str | None = None) -> None:
        self._failures.check(self._key(client, device))

    def succeeded(self, client: str, device: str | None = None) -> None:
        self._failures.clear(self._key(client, device))
        if device is not None:
            self._known[device] = None
            while len(self._known) > MAX_CLIENTS:
                self._known.pop(next(iter(self._known)))


def retry_after(seconds: float) -> str:
    """A Retry-After header's value: whole seconds, rounded up."""
    return str(max(1, math.ceil(seconds)))


class Slots:
    """At most `size` of something at once (the CSV exports); `take` never waits."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.size > 0 and self._used >= self.size:
                return False
            self._used += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._used = max(self._used - 1, 0)

    @property
    def used(self) -> int:
        return self._used


def per_minute(events: int) -> RateLimit:
    """A limit of `events` per minute per client (0: off)."""
    return RateLimit(events, 60.0)


# The page's limits, one per process (made at first use, after the settings were checked at start): how many
# predictions and uploads one client may make a minute.
@functools.cache
def predictions() -> RateLimit:
    return per_minute(settings().predict_limit_per_minute)


@functools.cache
def uploads() -> RateLimit:
    return per_minute(settings().upload_limit_per_minute)
