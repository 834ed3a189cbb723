"""Bulk produce: a batch's output records as one aiokafka record batch per topic partition.

Sending through Faust (``await topic.send(...)``, or ``table[key] = value`` for a changelog) costs
a future, callbacks, a sensor call and an accumulator append per message; with ~0.7 changelog
records and a few output records per input event that path was over a third of the worker's CPU.
:class:`BulkProducer` writes the same records through the aiokafka producer Faust already runs
(so Faust's flush before every offset commit covers them too), partitioned as Faust would
(explicitly, or by aiokafka's default murmur2 partitioner on the key — Kafka's own), and
:meth:`BulkProducer.send` returns once the broker has them all, with the highest offset written
per topic partition (what a RocksDB store persists). Records of one partition keep their order.

:func:`table_records` turns ``{key: (partition, value or None)}`` into a raw-serialized Faust
table's changelog records: the same topic, key, value and partition Faust would write, so its
recovery reads them as its own; ``None`` is a tombstone (a delete). The local store is written
only after the broker acknowledged them (``streams.runtime.store.StateCache.written``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)

YIELD_EVERY = 2048  # long loops over a commit's records give the event loop back this often (alert latency)

Record = tuple[str, "int | None", "bytes | None", "bytes | None"]  # topic, partition, key, value


class BulkProducer:
    """Send many records at once through a started Faust app's producer."""

    def __init__(self, app, delivery_timeout: float = 90.0) -> None:
        self.app = app
        self.delivery_timeout = delivery_timeout
        self.partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}  # topics whose partitions all have a leader

    async def _partitions_of(self, producer, topic: str, timeout: float = 30.0) -> list[int]:
        """The topic's partitions, once every one has a leader in the producer's metadata.

        A record batch for a partition without a known leader waits in aiokafka's accumulator
        until the batch expires (Faust's producer request timeout: 20 minutes), e.g. for a
        changelog topic Faust created a moment ago."""
        parts = self._partitions.get(topic)
        if parts is not None:
            return parts
        deadline = time.monotonic() + timeout
        while True:
            parts = sorted(await producer.partitions_for(topic))
            cluster = producer.client.cluster
            missing = [p for p in parts if cluster.leader_for_partition(TopicPartition(topic, p)) in (None, -1)]
            if not missing:
                self._partitions[topic] = parts
                return parts
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Kafka reports no leader for {topic} partitions {missing} after {timeout:.0f} s; "
                    "check the broker (`riskwatch kafka status`, its log)"
                )
            log.info("waiting for leaders of %s partitions %s", topic, missing)
            await producer.client.force_metadata_update()
            await asyncio.sleep(0.2)

    async def send(self, records: Iterable[Record]) -> dict[tuple[str, int], int]:
        """Send and wait for the acknowledgements; return {(topic, partition): highest offset written}."""
        producer = None
        batches: dict[tuple[str, int], BatchBuilder] = {}
        sent = []
        counts = []  # records per sent batch (its future gives the batch's base offset)
        for n, (topic, partition, key, value) in enumerate(records, 1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a commit's changelog (thousands of states): let the agents run between slices
            if producer is None:
                producer = self.app.producer._ensure_producer()  # the aiokafka producer Faust started
            parts = self._partitions.get(topic) or await self._partitions_of(producer, topic)
            if partition is None:
                partition = self.partitioner(key, parts, parts)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start anew
                counts.append(batch.record_count())
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(
                        f"a record for {topic}[{partition}] key {key!r} ({len(value or b'')} bytes) "
                        f"exceeds the producer batch size; raise producer_max_batch_size"
                    )
        if producer is None:
            return {}  # nothing to send (most batches have no alerts)
        for (topic, partition), batch in batches.items():
            if batch.record_count():
                counts.append(batch.record_count())
                sent.append(await producer.send_batch(batch, topic, partition=partition))
        try:
            metas = await asyncio.wait_for(asyncio.gather(*sent), self.delivery_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"Kafka did not acknowledge {len(sent)} record batches within {self.delivery_timeout:.0f} s "
                f"(topics {sorted({t for t, _ in batches})}); the worker exits and its uncommitted events "
                "are redelivered — check the broker if this repeats"
            ) from None
        last: dict[tuple[str, int], int] = {}
        for meta, n in zip(metas, counts, strict=True):  # a batch's records have consecutive offsets from its base
            k = (meta.topic, meta.partition)
            off = meta.offset + n - 1
            if off > last.get(k, -1):
                last[k] = off
        return last


def table_records(table, items: Mapping[bytes, tuple[int | None, bytes | None]]) -> list[Record]:
    """The changelog records of ``{key: (partition, value or None)}`` (the table itself is not written)."""
    topic = table.changelog_topic.get_topic_name()
    return [(topic, partition, key, value) for key, (partition, value) in items.items()]
