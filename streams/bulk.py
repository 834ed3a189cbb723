"""Bulk produce: a batch's output records as one aiokafka record batch per topic partition.

Sending through Faust (``await topic.send(...)``, or ``table[key] = value`` for a changelog) costs
a future, callbacks, a sensor call and an accumulator append per message; with ~0.7 changelog
records and a few output records per input event that path was over a third of the worker's CPU.
:class:`BulkProducer` writes the same records through the aiokafka producer Faust already runs
(so Faust's flush before every offset commit covers them too), partitioned as Faust would
(explicitly, or by aiokafka's default murmur2 partitioner on the key — Kafka's own), and
:meth:`BulkProducer.send` returns once the broker has them all. Records of one partition keep
their order.

:func:`table_records` applies ``{key: (partition, value or None)}`` to a raw-serialized Faust
table and returns the changelog records to send: the same topic, key, value and partition Faust
would write, so its recovery reads them as its own; ``None`` is a tombstone (a delete).
"""

from __future__ import annotations

import asyncio
from typing import Iterable, Mapping

from aiokafka.partitioner import DefaultPartitioner

Record = tuple[str, "int | None", "bytes | None", "bytes | None"]  # topic, partition, key, value


class BulkProducer:
    """Send many records at once through a started Faust app's producer; counts what it sent."""

    def __init__(self, app) -> None:
        self.app = app
        self.partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self.records = 0
        self.requests = 0

    async def _partitions_of(self, producer, topic: str) -> list[int]:
        parts = self._partitions.get(topic)
        if parts is None:
            parts = self._partitions[topic] = sorted(await producer.partitions_for(topic))
        return parts

    async def send(self, records: Iterable[Record]) -> None:
        producer = self.app.producer._ensure_producer()  # the aiokafka producer Faust started
        batches: dict[tuple[str, int], object] = {}
        sent = []
        n = 0
        for topic, partition, key, value in records:
            if partition is None:
                parts = self._partitions.get(topic) or await self._partitions_of(producer, topic)
                partition = self.partitioner(key, parts, parts)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start anew
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                self.requests += 1
                batch = batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(f"a record for {topic}[{partition}] key {key!r} ({len(value or b'')} bytes) "
                                     f"exceeds the producer batch size; raise producer_max_batch_size")
            n += 1
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                self.requests += 1
        self.records += n
        await asyncio.gather(*sent)


def table_records(table, items: Mapping[bytes, tuple[int, bytes | None]]) -> list[Record]:
    """Apply ``{key: (partition, value or None)}`` to the table's data and return its changelog records."""
    data = table.data
    topic = table.changelog_topic.get_topic_name()
    out = []
    for key, (partition, value) in items.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
        out.append((topic, partition, key, value))
    return out
