"""The gateway's Kafka producer: ``acks="all"``, idempotent, and a yes only after every message is acknowledged.

:meth:`Bus.send_all` sends a request's messages (events and dead letters) together and waits for all
acknowledgements; any failure or timeout raises :class:`BusDown` (the route answers 503: nothing is
reported accepted that was not written; the client re-posts and the worker drops duplicates by
``event_id``). After a failure the producer is closed and the next request connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from edge.gateway.accept import Message
from riskwatch.settings import Settings


class BusDown(RuntimeError):
    """Kafka did not acknowledge (or could not be reached)."""


class Bus:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.timeout = settings.gateway_kafka_timeout_seconds
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                kw = self.settings.kafka_kwargs()
                p = AIOKafkaProducer(
                    bootstrap_servers=kw.pop("bootstrap_servers"),
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    max_request_size=4 * 1024 * 1024,
                    request_timeout_ms=int(self.timeout * 1000),
                    client_id="riskwatch-gateway",
                    **kw,
                )
                try:
                    await asyncio.wait_for(p.start(), self.timeout)
                except (TimeoutError, KafkaError, OSError) as e:
                    await p.stop()
                    raise BusDown(f"Kafka {self.settings.kafka_bootstrap} unreachable: {type(e).__name__}") from None
                self._producer = p
            return self._producer

    async def send_all(self, msgs: Sequence[Message]) -> None:
        if not msgs:
            return
        p = await self._ensure()
        topic = self.settings.topic

        async def all_acked() -> None:
            futs = [await p.send(topic(m.topic), value=m.value, key=m.key) for m in msgs]
            await asyncio.gather(*futs)

        try:
            await asyncio.wait_for(all_acked(), self.timeout)
        except (TimeoutError, KafkaError, OSError) as e:
            await self._reset()
            raise BusDown(f"Kafka did not acknowledge: {type(e).__name__}") from None

    async def _reset(self) -> None:
        async with self._lock:
            p, self._producer = self._producer, None
        if p is not None:
            with contextlib.suppress(Exception):  # it is being discarded
                await asyncio.wait_for(p.stop(), 5)

    async def close(self) -> None:
        await self._reset()
