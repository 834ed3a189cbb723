"""Per-source rate limit in events per second (token bucket; a request of n events takes n tokens).

``web/ratelimit.py`` counts requests per address; the gateway counts events per source, so that a
batch of 100 readings costs 100. The bucket holds two seconds of the source's rate (a burst).

>>> now = [0.0]
>>> r = EventRate(clock=lambda: now[0])
>>> r.take("v", 150, rate=100.0), r.take("v", 100, rate=100.0)
(0.0, 0.5)
>>> now[0] = 1.0; r.take("v", 100, rate=100.0)
0.0
"""

from __future__ import annotations

import time
from collections.abc import Callable

BURST_SECONDS = 2.0


class EventRate:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # source → (tokens, at)

    def take(self, source: str, n: int, rate: float) -> float:
        """0 if ``n`` events may pass (tokens taken), else seconds until they may."""
        now = self.clock()
        burst = rate * BURST_SECONDS
        tokens, at = self._buckets.get(source, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        need = min(float(n), burst)  # a request larger than the burst passes when the bucket is full
        if tokens >= need:
            self._buckets[source] = (tokens - need, now)
            return 0.0
        self._buckets[source] = (tokens, now)
        return (need - tokens) / rate
