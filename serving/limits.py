"""Limits that protect the service: requests per minute per user, and a time limit per request."""

from __future__ import annotations

import threading
import time
from collections import deque

from errors import LimitReached


class RateLimited(LimitReached):
    """The caller sent too many requests; the message says the limit and when to retry."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimiter:
    """At most `per_minute` requests in any 60-second window per key (a user, a session, an API key).

    Args:
        per_minute: the limit; 0 turns limiting off.
        clock: seconds, monotonic (injected by tests).
    """

    def __init__(self, per_minute: int, clock=time.monotonic, window_s: float = 60.0):
        self.per_minute, self.clock, self.window_s = per_minute, clock, window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> None:
        """Count one request for `key`, or raise RateLimited when its window is full."""
        if self.per_minute <= 0:
            return
        now = self.clock()
        with self._lock:
            times = self._seen.setdefault(key, deque())
            while times and now - times[0] >= self.window_s:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = self.window_s - (now - times[0])
                raise RateLimited(f"rate limit reached: at most {self.per_minute} requests per minute; "
                                  f"try again in {wait:.0f} s", retry_after_s=wait)
            times.append(now)
            if len(self._seen) > 10_000:  # forget keys that went quiet
                for k in [k for k, v in self._seen.items() if not v or now - v[-1] >= self.window_s]:
                    del self._seen[k]


class Deadline:
    """Sets `stop` when the `with` block runs longer than `seconds` (None or 0: never); `fired` says it did."""

    def __init__(self, stop: threading.Event, seconds: float | None):
        self.stop, self.seconds, self.fired = stop, seconds, False
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        self.fired = True
        self.stop.set()

    def __enter__(self) -> Deadline:
        if self.seconds:
            self._timer = threading.Timer(self.seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
