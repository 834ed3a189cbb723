"""Writes of the workbench: only the existing input events, validated with the same pydantic
models (and catalog context) as the worker's edge, produced to Kafka with ``acks=all`` and
idempotence. A department's event (feedback, inspection result) goes to the topic of the logged-in
user's department (``events.feedback.<dept>``): the worker takes the department from the topic. An
event the broker did not acknowledge raises :class:`BusDown`: the page says the action was NOT
recorded, nothing is queued silently."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from riskwatch.domain.catalog import Catalog
from riskwatch.settings import Settings
from schemas.events import Event
from streams.engine.identity import SENDER_KINDS, topic_for

SOURCE = "workbench"
log = logging.getLogger("riskwatch.web.audit")


class BusDown(RuntimeError):
    """Kafka did not acknowledge the event."""


class Producer:
    def __init__(self, settings: Settings, catalog: Catalog, timeout: float = 10.0):
        self.settings, self.catalog, self.timeout = settings, catalog, timeout
        self._producer: AIOKafkaProducer | None = None
        self.sent: list[Event] = []  # this process's produced events (tests, audit in the log)

    def build(self, model: type[Event], **fields) -> Event:
        """Validate like the worker's edge: raises pydantic's ValidationError on bad input."""
        base = {"event_id": f"web-{uuid.uuid4().hex}", "occurred_at": datetime.now(UTC), "source": SOURCE}
        return model.model_validate({**base, **fields}, context={"catalog": self.catalog})

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is None:
            kw = self.settings.kafka_kwargs()
            p = AIOKafkaProducer(
                bootstrap_servers=kw.pop("bootstrap_servers"),
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=int(self.timeout * 1000),
                client_id="riskwatch-workbench",
                **kw,
            )
            try:
                await asyncio.wait_for(p.start(), self.timeout)
            except (TimeoutError, KafkaError, OSError) as e:
                await p.stop()
                raise BusDown(f"消息总线(Kafka {self.settings.kafka_bootstrap})无法连接:{type(e).__name__}") from None
            self._producer = p
        return self._producer

    async def send(self, event: Event, actor: str = "", dept: str = "") -> None:
        """Produce and wait for the broker's acknowledgement; the audit log names who did it. A
        department's event goes to ``dept``'s topic (the logged-in user's department)."""
        if event.topic in SENDER_KINDS and not dept:
            raise ValueError(f"{event.topic}: a department's event needs the sending department")
        p = await self._ensure()
        value = event.model_dump_json().encode()
        topic = self.settings.topic(topic_for(event, dept))
        try:
            await asyncio.wait_for(
                p.send_and_wait(topic, value=value, key=event.entity_id.encode()),
                self.timeout,
            )
        except (TimeoutError, KafkaError, OSError) as e:
            raise BusDown(f"消息总线(Kafka)未确认写入:{type(e).__name__}") from None
        self.sent.append(event)
        log.info("produced %s %s entity=%s by %s", topic, event.event_id, event.entity_id, actor or "?")

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
