"""Who is generating right now, per session: Stop ends exactly that session's request; rate and time limits apply.

Shared by the UI and the `/v1` API (which counts its requests through `outside`), so it lives outside `ui/`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from serving.limits import Deadline, RateLimiter


class StopRegistry:
    """The running generation of each session, so a Stop click (or `/stop` call) ends exactly that one.

    Every generation starts here, so this is also where the per-user rate limit and the time limit apply.

    Args:
        limiter: requests per minute per user (None: no limit).
        timeout_s: a generation running longer is stopped, with a warning (None: no limit).
    """

    def __init__(self, limiter: RateLimiter | None = None, timeout_s: float | None = None) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._last_end = time.monotonic()
        self._outside = 0
        self.limiter, self.timeout_s = limiter, timeout_s

    @contextmanager
    def generation(self, session: str, on_timeout: Callable[[str], object] | None = None,
                   rate_key: str | None = None) -> Iterator[threading.Event]:
        """A fresh stop event for this session's new generation, forgotten when it ends.

        Raises RateLimited before anything starts when the user is over the rate limit; `on_timeout` hears a
        message when the time limit stopped the generation (the UI shows it as a warning); `rate_key`
        (identity.rate_key_of) is whom the rate limit counts, the session itself when not given.
        """
        if self.limiter is not None:
            self.limiter.admit(rate_key or session)
        event = threading.Event()
        with self._lock:
            self._events[session] = event
        try:
            with Deadline(event, self.timeout_s) as deadline:
                yield event
            if deadline.fired and on_timeout is not None:
                on_timeout(f"Stopped at the server's time limit of {self.timeout_s:g} s per request.")
        finally:
            event.set()  # whatever ended the request (done, error, disconnect) ends the model's work too
            with self._lock:
                if self._events.get(session) is event:
                    del self._events[session]
                self._last_end = time.monotonic()

    def stop(self, session: str) -> bool:
        """Stop the session's running generation; False when none runs."""
        with self._lock:
            event = self._events.get(session)
        if event is None:
            return False
        event.set()
        return True

    def running(self) -> int:
        with self._lock:
            return len(self._events)

    def idle_seconds(self) -> float:
        """How long no generation has been running (0 while one runs, here or through the HTTP API)."""
        with self._lock:
            return 0.0 if self._events or self._outside else time.monotonic() - self._last_end

    @contextmanager
    def outside(self) -> Iterator[None]:
        """Count a generation started elsewhere (the /v1 API), so background work waits for it too."""
        with self._lock:
            self._outside += 1
        try:
            yield
        finally:
            with self._lock:
                self._outside -= 1
                self._last_end = time.monotonic()
