"""A value computed at most once per ``ttl`` seconds, however many requests ask at once.

The public pages' data (``/public/spot-checks``: a three-table FINAL join) is the same for every
anonymous visitor: it is read once per minute, and concurrent requests on an expired entry wait
for the one read in flight (single flight) instead of each starting their own. A failure is kept
for ``ttl_error`` seconds so a store that is down is not hammered either.

>>> import asyncio
>>> calls = []
>>> async def read():
...     calls.append(1); await asyncio.sleep(0.01); return [1]
>>> c = Cached(60.0)
>>> async def main(): return await asyncio.gather(*(c.get(read) for _ in range(30)))
>>> len(asyncio.run(main())), len(calls)
(30, 1)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Cached:
    def __init__(self, ttl: float, ttl_error: float = 5.0, clock=time.monotonic):
        self.ttl, self.ttl_error, self.clock = ttl, ttl_error, clock
        self._at = -float("inf")
        self._value: Any = None
        self._error: BaseException | None = None
        self._lock: asyncio.Lock | None = None
        self.reads = 0

    def _fresh(self) -> bool:
        age = self.clock() - self._at
        return age < (self.ttl_error if self._error is not None else self.ttl)

    async def get(self, read: Callable[[], Awaitable[Any]]) -> Any:
        if not self._fresh():
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self._fresh():  # the request that held the lock may have read it meanwhile
                    self.reads += 1
                    try:
                        self._value, self._error = await read(), None
                    except Exception as e:  # noqa: BLE001 — kept and re-raised to every caller until ttl_error passes
                        self._error = e
                    self._at = self.clock()
        if self._error is not None:
            raise self._error
        return self._value
