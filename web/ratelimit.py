"""Requests per minute per client address (token bucket), for the anonymous public pages.

:class:`PublicRateLimit` (ASGI middleware, outermost but for the proxy headers) applies it to
``/public…`` before routing: a refused request is a 150-byte answer, not a rendered page, and
that answer is held back until the next token is due (at most ``TARPIT`` seconds): a client that
retries at once is slowed to the allowed rate instead of spinning the workbench's CPU (a sleeping
coroutine costs nothing).

Each address has a bucket of ``burst`` tokens refilled at ``per_minute / 60`` per second; a
request takes one, an empty bucket answers 429 with ``Retry-After``. Buckets live in memory (one
process is the deployment) and the table is bounded: the fullest (idle) buckets go first.

>>> now = [0.0]
>>> r = RateLimit(per_minute=60, burst=2, clock=lambda: now[0])
>>> [r.take("1.2.3.4") for _ in range(3)], r.take("5.6.7.8")
([0.0, 0.0, 1.0], 0.0)
>>> now[0] = 1.0; r.take("1.2.3.4")
0.0
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Receive, Scope, Send


class RateLimit:
    def __init__(self, per_minute: int, burst: int | None = None, clock=time.monotonic, max_clients: int = 10_000):
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(10, per_minute // 4))
        self.clock, self.max_clients = clock, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # address → (tokens, at)

    def take(self, client: str) -> float:
        """0 if the request may go on (a token taken), else seconds until the next token."""
        now = self.clock()
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._store(client, tokens - 1.0, now)
            return 0.0
        self._store(client, tokens, now)
        return (1.0 - tokens) / self.rate

    def _store(self, client: str, tokens: float, now: float) -> None:
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            for k in [k for k, (t, a) in self._buckets.items() if t + (now - a) * self.rate >= self.burst]:
                del self._buckets[k]
            if len(self._buckets) >= self.max_clients:
                self._buckets.clear()
        self._buckets[client] = (tokens, now)


TARPIT = 2.0  # seconds: longest hold of a refused request


class PublicRateLimit:
    def __init__(self, app: ASGIApp, per_minute: int, prefix: str = "/public"):
        self.app, self.limit, self.prefix = app, RateLimit(per_minute), prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            wait = self.limit.take((scope.get("client") or ("?", 0))[0])
            if wait > 0:
                await asyncio.sleep(min(wait, TARPIT))
                secs = max(1, int(wait - min(wait, TARPIT)) + 1)
                body = (
                    f'<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>访问过于频繁</title>'
                    f"<h1>访问过于频繁</h1><p>请 {secs} 秒后再试。</p></html>"
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [
                            (b"content-type", b"text/html; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"retry-after", str(secs).encode()),
                            (b"x-content-type-options", b"nosniff"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
