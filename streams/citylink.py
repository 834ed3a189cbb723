"""The county side of the city-platform link (与市级平台的数据对接): masking out, relaying tasks in.

MirrorMaker 2 (``riskwatch city-link``, riskwatch/tools/citylink.py) copies bytes; it cannot look
inside a JSON value. So nothing reaches it unmasked: this bridge writes a **masked copy** of every
county topic sent to the city, and MirrorMaker replicates only those copies.

Outbound, for each topic ``T`` of ``settings.citylink_topics``::

    <prefix>T  --(mask)-->  <prefix>masked.T  --(MirrorMaker 2)-->  city: <county alias>.<prefix>masked.T

* every string in the JSON value goes through :func:`schemas.privacy.mask_pii` (mobile, landline
  and ID numbers), and the values of ``citylink_redact_fields`` (inspectors' names) become ``***``;
  a value that is not JSON is masked as text (the worker dead-letters it in the county anyway);
* partition ``p`` goes to partition ``p`` (same count, same cleanup policy), so keys keep their order;
* **exactly once**: each copy carries the source offset in a header (``rw-src-offset``); on start the
  bridge reads the last record of each copy partition and resumes right after it. The producer is
  idempotent, so retries write no duplicates; a kill -9 at any point repeats nothing and skips
  nothing. (It must be the only writer of the ``masked.*`` topics.)

Inbound: the city's tasks arrive (MirrorMaker 2, default naming) on ``<city alias>.<city task
topic>``. MirrorMaker keeps the city's partition numbers, which need not match the county's
partitioning by ``entity_id`` (the worker's per-entity state lives per partition), so the bridge
re-keys each task by its ``entity_id`` onto the county's own ``<prefix>events.task``, where the
worker consumes it like any other task (a malformed one is dead-lettered there by the worker, with
its original bytes). Offsets are committed after the producer's flush: a kill -9 may repeat a task
(same bytes, same ``event_id``), never lose one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import orjson

from riskwatch.settings import Settings
from schemas.privacy import mask_pii

log = logging.getLogger(__name__)

MASKED = "masked."
SRC_OFFSET = "rw-src-offset"
ORIGIN = "rw-origin"


def masked_topic(settings: Settings, name: str) -> str:
    """The county topic MirrorMaker replicates for ``name`` (a name of ``citylink_topics``)."""
    return settings.topic(MASKED + name)


def city_remote_topic(settings: Settings, name: str) -> str:
    """Where the city finds ``name`` under MirrorMaker 2's DefaultReplicationPolicy."""
    return f"{settings.citylink_county_alias}.{masked_topic(settings, name)}"


def inbound_topic(settings: Settings) -> str:
    """Where the county finds the city's tasks under MirrorMaker 2's DefaultReplicationPolicy."""
    return f"{settings.citylink_city_alias}.{settings.citylink_city_task_topic}"


def _mask_obj(obj, redact: frozenset[str]):
    if isinstance(obj, str):
        return mask_pii(obj)
    if isinstance(obj, dict):
        return {k: (_redact(v) if k in redact else _mask_obj(v, redact)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_obj(v, redact) for v in obj]
    return obj


def _redact(v):
    if isinstance(v, str):
        return "***" if v else v
    if isinstance(v, list):
        return [_redact(x) for x in v]
    return v


def mask_value(value: bytes | None, redact: frozenset[str] | set[str] = frozenset()) -> bytes | None:
    """The value as it may leave the county.

    >>> mask_value(b'{"comment":"\\u5df2\\u8054\\u7cfb13812345678","inspectors":["\\u5f20\\u4e09"],"n":1}', {"inspectors"}).decode()
    '{"comment":"已联系138****5678","inspectors":["***"],"n":1}'
    >>> mask_value(b'not json 410521199001011234')
    b'not json 4105**********1234'
    """
    if value is None:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return mask_pii(value.decode("utf-8", errors="replace")).encode()
    return orjson.dumps(_mask_obj(obj, frozenset(redact)))


def task_key(value: bytes | None) -> bytes | None:
    """The county's partitioning key of a relayed task (its ``entity_id``), None if unreadable."""
    try:
        ent = orjson.loads(value or b"").get("entity_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return ent.encode() if isinstance(ent, str) and ent else None


@dataclass
class BridgeStats:
    masked: int = 0
    relayed: int = 0
    started: float = field(default_factory=time.monotonic)


class Bridge:
    """One process: masked copies out, city tasks in (see module doc)."""

    REFRESH_S = 15.0  # look for source topics created later (audit.anchors, the inbound topic)

    def __init__(self, settings: Settings, log_every: float = 10.0):
        self.s = settings
        self.redact = frozenset(settings.citylink_redact_fields)
        self.group = f"{settings.app_id}-citylink"
        self.log_every = log_every
        self.stats = BridgeStats()
        self._out: dict[str, str] = {}  # source topic -> masked copy topic, once set up
        self._inbound = inbound_topic(settings)
        self._inbound_on = False
        self._events_task = settings.topic("events.task")

    # -- topics ----------------------------------------------------------------------------------
    def _admin(self):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(**self.s.kafka_kwargs(), client_id="riskwatch-citylink")

    def ensure_copies(self) -> dict[str, str]:
        """Create the masked copy of every existing source topic (same partitions and cleanup
        policy); returns {source: copy} for the sources that exist."""
        from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = self._admin()
        try:
            existing = set(admin.list_topics())
            out = {}
            for name in self.s.citylink_topics:
                src, dst = self.s.topic(name), masked_topic(self.s, name)
                if src not in existing:
                    continue
                if dst not in existing:
                    desc = admin.describe_topics([src])[0]
                    parts = len(desc["partitions"])
                    cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, src, ["cleanup.policy"])])
                    policy = _cleanup_policy(cfg) or "delete"
                    try:
                        admin.create_topics([NewTopic(dst, parts, self.s.replication, topic_configs={"cleanup.policy": policy})])
                        log.info("created %s (%d partitions, cleanup.policy=%s)", dst, parts, policy)
                    except TopicAlreadyExistsError:
                        pass
                out[src] = dst
            self._inbound_on = self._inbound in existing
            return out
        finally:
            admin.close()

    # -- run -------------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, ready: threading.Event | None = None) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        stop = stop or threading.Event()
        producer = KafkaProducer(**self.s.kafka_kwargs(), acks="all", enable_idempotence=True, linger_ms=5,
                                 client_id="riskwatch-citylink")
        consumer = KafkaConsumer(**self.s.kafka_kwargs(), group_id=self.group, enable_auto_commit=False,
                                 auto_offset_reset="earliest", max_poll_records=2000, fetch_max_wait_ms=100,
                                 client_id="riskwatch-citylink")
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
                            producer.send(self._events_task, value=r.value, key=task_key(r.value),
                                          headers=[(ORIGIN, self.s.citylink_city_alias.encode())])
                            self.stats.relayed += 1
                        else:
                            producer.send(self._out[tp.topic], value=mask_value(r.value, self.redact), key=r.key,
                                          partition=tp.partition, timestamp_ms=r.timestamp,
                                          headers=[(SRC_OFFSET, str(r.offset).encode())])
                            self.stats.masked += 1
                    commits[tp] = recs[-1].offset + 1
                producer.flush()  # raises if the county broker refused: the process exits, a restart resumes exactly
                pending.update(commits)
                if time.monotonic() - last_log >= self.log_every:
                    last_log = time.monotonic()
                    log.info("city-link bridge: %d records masked out, %d city tasks relayed in",
                             self.stats.masked, self.stats.relayed)
            if pending:
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in pending.items()})
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=10)

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
        last record of its masked copy (None where the copy is empty)."""
        from kafka import KafkaConsumer, TopicPartition

        if not tps:
            return {}
        reader = KafkaConsumer(**self.s.kafka_kwargs(), enable_auto_commit=False, group_id=None,
                               client_id="riskwatch-citylink-resume")
        try:
            copies = {TopicPartition(self._out[tp.topic], tp.partition): tp for tp in tps}
            ends = reader.end_offsets(list(copies))
            starts = reader.beginning_offsets(list(copies))
            out = {}
            for ctp, tp in copies.items():
                if ends[ctp] <= starts[ctp]:
                    continue
                reader.assign([ctp])
                reader.seek(ctp, ends[ctp] - 1)
                deadline = time.monotonic() + 30
                recs = []
                while not recs and time.monotonic() < deadline:
                    recs = reader.poll(timeout_ms=1000).get(ctp, [])
                if not recs:
                    raise RuntimeError(f"cannot read the last record of {ctp.topic}[{ctp.partition}]; is the county broker healthy?")
                hdr = dict(recs[-1].headers or ()).get(SRC_OFFSET)
                if hdr is None:
                    raise RuntimeError(f"{ctp.topic}[{ctp.partition}] has a record without {SRC_OFFSET}: "
                                       "only the city-link bridge may write masked.* topics")
                out[tp] = int(hdr) + 1
            return out
        finally:
            reader.close()


def _cleanup_policy(resp) -> str | None:
    """cleanup.policy out of a kafka-python 3 DescribeConfigs answer: {'topic': {name: {key: {'value': ...}}}}."""
    for configs in (resp or {}).get("topic", {}).values():
        entry = configs.get("cleanup.policy")
        if entry:
            return entry.get("value")
    return None
