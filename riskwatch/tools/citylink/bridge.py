"""The bridge: one process that writes masked copies out and relays the city's tasks in (与市级平台的数据对接).

MirrorMaker 2 (:mod:`riskwatch.tools.citylink.service`) copies bytes; it cannot look inside a JSON
value. So nothing reaches it unmasked: this bridge writes a **masked copy** of every county topic
sent to the city (:func:`~riskwatch.tools.citylink.masking.mask_value`), and MirrorMaker replicates
only those copies (names in :mod:`riskwatch.tools.citylink.topics`).

Outbound, for each topic ``T`` of ``settings.citylink_topics``::

    <prefix>T  --(mask)-->  <prefix>masked.T  --(MirrorMaker 2)-->  city: <county alias>.<prefix>masked.T

* partition ``p`` goes to partition ``p`` (same count, same cleanup policy), so keys keep their order;
* **exactly once**: each copy carries the source offset in a header (``rw-src-offset``); on start the
  bridge reads the last record of each copy partition and resumes right after it. The producer is
  idempotent, so retries write no duplicates; a kill -9 at any point repeats nothing and skips
  nothing. (It must be the only writer of the ``masked.*`` topics.)
* a **family** ``K.*`` (``events.inspection.*``): the topic ``K.<sender>`` of every sender of the catalog
  (``events.inspection.<dept>``) is masked into the one copy ``<prefix>masked.K``, partition ``p`` to
  ``p`` (all input topics have the same count, so an entity's results stay in order). Each record of
  that copy carries ``rw-src-offsets``: the last copied offset of every member written to its partition
  so far, so the last record alone says where each member resumes (a member never copied there, or a
  copy last written before the family, i.e. by the old shared topic, resumes at the group's committed
  position, else at its beginning).

Inbound: the city's tasks arrive (MirrorMaker 2, default naming) on ``<city alias>.<city task
topic>``. MirrorMaker keeps the city's partition numbers, which need not match the county's
partitioning by ``entity_id`` (the worker's per-entity state lives per partition), so the bridge
re-keys each task by its ``entity_id`` onto the county's own ``<prefix>events.task.city``, where the
worker consumes it like any other task (a malformed one is dead-lettered there by the worker, with
its original bytes). Offsets are committed after the producer's flush: a kill -9 may repeat a task
(same bytes, same ``event_id``), never lose one.

:func:`serve` is ``riskwatch city-link bridge`` (what ``riskwatch city-link start`` runs detached,
and compose's ``citylink-bridge``): the bridge until SIGTERM/SIGINT, restarted with back-off while
the county broker is away. In a test::

    stop = threading.Event()
    threading.Thread(target=Bridge(settings).run, args=(stop,), daemon=True).start()
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.citylink.masking import mask_value, task_key
from riskwatch.tools.citylink.topics import (
    ORIGIN,
    SRC_OFFSET,
    SRC_OFFSETS,
    family_kind,
    inbound_topic,
    masked_topic,
    source_topics,
)
from schemas.events import InspectionTask
from streams.engine.identity import CITY, sender_topic, senders_of

log = logging.getLogger(__name__)


@dataclass
class BridgeStats:
    masked: int = 0
    relayed: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Copy:
    """Where a source topic's records go: its masked copy, the copy's partition count, and the sender
    of a family member (whose offsets travel in ``rw-src-offsets``; None for a plain topic)."""

    topic: str
    parts: int
    sender: str | None = None


class Bridge:
    """One process: masked copies out, city tasks in (see module doc)."""

    REFRESH_S = 15.0  # look for source topics created later (audit.anchors, the inbound topic)

    def __init__(self, settings: Settings, log_every: float = 10.0):
        self.s = settings
        self.redact = frozenset(settings.citylink_redact_fields)
        self.group = f"{settings.app_id}-citylink"
        self.log_every = log_every
        self.stats = BridgeStats()
        self._out: dict[str, Copy] = {}  # source topic -> its masked copy, once set up
        # a family's copy partition -> {sender: last offset copied there}, the rw-src-offsets of its next record
        self._marks: dict[tuple[str, int], dict[str, int]] = {}
        self._catalog = load_catalog(settings.catalog_path)
        self._inbound = inbound_topic(settings)
        self._inbound_on = False
        self._events_task = settings.topic(sender_topic(InspectionTask.topic, CITY))  # events.task.city

    # -- topics ----------------------------------------------------------------------------------
    def _admin(self):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(**self.s.kafka_kwargs(), client_id="riskwatch-citylink")

    def sources(self, name: str) -> dict[str, str | None]:
        """The county topics of the ``citylink_topics`` entry ``name``: {topic: sender} (see
        :func:`~riskwatch.tools.citylink.topics.source_topics`), a family's senders from the catalog."""
        kind = family_kind(name)
        return source_topics(self.s, name, senders_of(kind, self._catalog) if kind else ())

    def ensure_copies(self) -> dict[str, Copy]:
        """Create the masked copy of every entry with an existing source topic (partitions and cleanup
        policy of its first source); returns {source: copy} for the sources that exist."""
        from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = self._admin()
        try:
            existing = set(admin.list_topics())
            out = {}
            for name in self.s.citylink_topics:
                dst = masked_topic(self.s, name)
                srcs = {src: sender for src, sender in self.sources(name).items() if src in existing}
                if not srcs:
                    continue
                model = dst if dst in existing else next(iter(srcs))
                parts = len(admin.describe_topics([model])[0]["partitions"])
                if dst not in existing:
                    cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, model, ["cleanup.policy"])])
                    policy = _cleanup_policy(cfg) or "delete"
                    try:
                        admin.create_topics(
                            [NewTopic(dst, parts, self.s.replication, topic_configs={"cleanup.policy": policy})]
                        )
                        log.info("created %s (%d partitions, cleanup.policy=%s)", dst, parts, policy)
                    except TopicAlreadyExistsError:
                        pass
                out.update({src: Copy(dst, parts, sender) for src, sender in srcs.items()})
            self._inbound_on = self._inbound in existing
            return out
        finally:
            admin.close()

    # -- run -------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, ready: threading.Event | None = None) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        stop = stop or threading.Event()
        producer = KafkaProducer(
            **self.s.kafka_kwargs(), acks="all", enable_idempotence=True, linger_ms=5, client_id="riskwatch-citylink"
        )
        consumer = KafkaConsumer(
            **self.s.kafka_kwargs(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
            fetch_max_wait_ms=100,
            client_id="riskwatch-citylink",
        )
        from kafka.structs import OffsetAndMetadata

        pending: dict = {}  # flushed but not yet committed positions
        last_commit = time.monotonic()
        assigned: set[TopicPartition] = set()
        next_refresh = 0.0
        last_log = time.monotonic()
        try:
            while not stop.is_set():
                if time.monotonic() >= next_refresh:
                    self._out = self.ensure_copies()
                    self._assign(consumer, assigned)
                    next_refresh = time.monotonic() + self.REFRESH_S
                    if ready is not None:
                        ready.set()
                if not assigned:
                    stop.wait(1.0)
                    continue
                batch = consumer.poll(timeout_ms=500)
                if pending and (not batch or time.monotonic() - last_commit >= 1.0):
                    # copies resume from their own last record; the committed offsets matter for the
                    # inbound relay (a crash repeats at most this second's tasks) and as a fallback
                    consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in pending.items()})
                    pending, last_commit = {}, time.monotonic()
                if not batch:
                    continue
                commits = {}
                for tp, recs in batch.items():
                    for r in recs:
                        if tp.topic == self._inbound:
                            producer.send(
                                self._events_task,
                                value=r.value,
                                key=task_key(r.value),
                                headers=[(ORIGIN, self.s.citylink_city_alias.encode())],
                            )
                            self.stats.relayed += 1
                        else:
                            copy = self._out[tp.topic]
                            part = tp.partition % copy.parts
                            producer.send(
                                copy.topic,
                                value=mask_value(r.value, self.redact),
                                key=r.key,
                                partition=part,
                                timestamp_ms=r.timestamp,
                                headers=[self._position(copy, part, r.offset)],
                            )
                            self.stats.masked += 1
                    commits[tp] = recs[-1].offset + 1
                producer.flush()  # raises if the county broker refused: the process exits, a restart resumes exactly
                pending.update(commits)
                if time.monotonic() - last_log >= self.log_every:
                    last_log = time.monotonic()
                    log.info(
                        "city-link bridge: %d records masked out, %d city tasks relayed in",
                        self.stats.masked,
                        self.stats.relayed,
                    )
            if pending:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in pending.items()})
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=10)

    def _position(self, copy: Copy, part: int, offset: int) -> tuple[str, bytes]:
        """The header saying where the copied record came from: its offset (a plain topic), or the
        last copied offset of every member of the family written to this copy partition."""
        if copy.sender is None:
            return SRC_OFFSET, str(offset).encode()
        marks = self._marks.setdefault((copy.topic, part), {})
        marks[copy.sender] = offset
        return SRC_OFFSETS, orjson.dumps(marks)

    def _assign(self, consumer, assigned: set) -> None:
        """Assign new partitions: copies resume after the last copied offset, the inbound topic
        after the committed offset."""
        from kafka import TopicPartition

        wanted: set[TopicPartition] = set()
        for src in [*self._out, *([self._inbound] if self._inbound_on else [])]:
            for p in consumer.partitions_for_topic(src) or ():
                wanted.add(TopicPartition(src, p))
        new = wanted - assigned
        if not new:
            return
        assigned |= new
        consumer.assign(sorted(assigned))
        resume = self._resume_offsets([tp for tp in new if tp.topic != self._inbound])
        for tp in new:
            if tp in resume:  # a copy: right after its last copied record
                consumer.seek(tp, resume[tp])
                continue
            # the inbound relay, or a copy that is empty (new, or emptied by retention): the
            # committed position, else the beginning
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        log.info("city-link bridge: reading %s", ", ".join(sorted({tp.topic for tp in assigned})))

    def _resume_offsets(self, tps: list) -> dict:
        """Source offset to resume from, per source partition: one past the offset recorded in the
        last record of its masked copy (absent where the copy is empty, or for a family member never
        copied to that partition)."""
        from kafka import KafkaConsumer, TopicPartition

        if not tps:
            return {}
        reader = KafkaConsumer(
            **self.s.kafka_kwargs(), enable_auto_commit=False, group_id=None, client_id="riskwatch-citylink-resume"
        )
        try:
            copies: dict[TopicPartition, list[TopicPartition]] = {}  # copy partition -> its source partitions
            for tp in tps:
                c = self._out[tp.topic]
                copies.setdefault(TopicPartition(c.topic, tp.partition % c.parts), []).append(tp)
            ends = reader.end_offsets(list(copies))
            starts = reader.beginning_offsets(list(copies))
            out = {}
            for ctp, srcs in copies.items():
                family = self._out[srcs[0].topic].sender is not None
                marks = self._marks.get((ctp.topic, ctp.partition)) if family else None
                if marks is None:  # not written by this process yet: its last record says
                    if ends[ctp] <= starts[ctp]:
                        continue
                    headers = _last_headers(reader, ctp, ends[ctp] - 1)
                    if not family:
                        if SRC_OFFSET not in headers:
                            raise RuntimeError(_foreign(ctp, SRC_OFFSET))
                        out[srcs[0]] = int(headers[SRC_OFFSET]) + 1
                        continue
                    if SRC_OFFSETS in headers:
                        marks = {str(k): int(v) for k, v in orjson.loads(headers[SRC_OFFSETS]).items()}
                    elif SRC_OFFSET in headers:  # last written from the old shared topic: no member copied yet
                        marks = {}
                    else:
                        raise RuntimeError(_foreign(ctp, SRC_OFFSETS))
                    self._marks[(ctp.topic, ctp.partition)] = marks
                for tp in srcs:
                    sender = self._out[tp.topic].sender
                    if sender in marks:
                        out[tp] = marks[sender] + 1
            return out
        finally:
            reader.close()


def _last_headers(reader, ctp, offset: int) -> dict[str, bytes]:
    """The headers of the record at ``offset`` (the last one) of the copy partition ``ctp``."""
    reader.assign([ctp])
    reader.seek(ctp, offset)
    deadline = time.monotonic() + 30
    recs: list[Any] = []  # kafka-python's ConsumerRecords (untyped)
    while not recs and time.monotonic() < deadline:
        recs = reader.poll(timeout_ms=1000).get(ctp, [])
    if not recs:
        raise RuntimeError(
            f"cannot read the last record of {ctp.topic}[{ctp.partition}]; is the county broker healthy?"
        )
    return dict(recs[-1].headers or ())


def _foreign(ctp, header: str) -> str:
    where = f"{ctp.topic}[{ctp.partition}]"
    return f"{where} has a record without {header}: only the city-link bridge may write masked.* topics"


def _cleanup_policy(resp) -> str | None:
    """cleanup.policy out of a kafka-python 3 DescribeConfigs answer: {'topic': {name: {key: {'value': ...}}}}."""
    for configs in (resp or {}).get("topic", {}).values():
        entry = configs.get("cleanup.policy")
        if entry:
            return entry.get("value")
    return None


def run_forever(settings: Settings, stop: threading.Event, say: Callable[[str], None]) -> None:
    """The bridge until ``stop``: after an error (say, the county broker is away) a fresh
    :class:`Bridge` resumes exactly, after a back-off of 1 s doubling to 30 s (reset after a minute's run)."""
    backoff = 1.0
    while not stop.is_set():
        started = time.monotonic()
        try:
            Bridge(settings).run(stop)
        except Exception as e:  # noqa: BLE001  # one line, no traceback; a fresh Bridge resumes exactly
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            say(
                f"riskwatch city-link bridge: {type(e).__name__}: {e}. "
                "Is the county broker up (`riskwatch kafka status`)? "
                f"Retrying in {backoff:.0f}s; nothing is lost (it resumes after the last copied record)."
            )
            stop.wait(backoff)


def serve(settings: Settings, say: Callable[[str], None]) -> None:
    """``riskwatch city-link bridge``: :func:`run_forever` until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_forever(settings, stop, say)
