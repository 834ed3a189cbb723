"""The edge: raw Kafka bytes → a validated event, or a dead letter saying exactly what was wrong.

Nothing raises out of :meth:`Decoder.decode`; every refusal keeps the original bytes and where
they came from.

>>> from riskwatch.domain.catalog import load_catalog
>>> d = Decoder(load_catalog())
>>> dl = d.decode("events.sensor", 0, 42, b"E1", b'{"event_id": 1}')
>>> dl.offset, dl.error.splitlines()[0]
(42, 'events.sensor[0]@42: 8 validation errors for SensorReading')
>>> "event_id: Input should be a valid string" in dl.error
True

A gateway batch (``kind: sensor_batch``) on ``events.sensor`` decodes to a :class:`Batch`: its
valid readings as events, and the position and reason of each bad reading. The worker turns those
(plus the readings its processor refuses) into ONE dead letter per batch message
(:meth:`Decoder.dead_batch`): the payload once, every bad index and its reason:

>>> raw = (b'{"kind":"sensor_batch","entity_id":"E1","gateway_id":"gw-1","readings":['
...        b'{"event_id":"r1","device_id":"d1","channel":"cold_chain_temp","value":3.5,"unit":"C",'
...        b'"occurred_at":"2026-11-27T08:00:00"},'
...        b'{"event_id":"r2","device_id":"d1","channel":"cold_chain_temp","value":"hot","unit":"C",'
...        b'"occurred_at":"2026-11-27T08:05:00"}]}')
>>> b = d.decode("events.sensor", 0, 43, b"E1", raw)
>>> [(r.event_id, r.source, r.value) for r in b.events], [i for i, _ in b.bad]
([('r1', 'gw-1', 3.5)], [1])
>>> b.bad[0][1].splitlines()[0]
"readings[1] (event_id 'r2'): 1 validation error"
>>> dl = Decoder.dead_batch("events.sensor", 0, 43, b"E1", raw, b.bad, b.total)
>>> dl.indexes, dl.error.splitlines()[0]
([1], 'events.sensor[0]@43: 1 of 2 readings of the gateway batch refused (readings[1]); the others were processed')
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter, ValidationError

from riskwatch.domain.catalog import Catalog
from schemas.events import EVENT_MODELS, DeadLetter, Event, SensorBatch, SensorReading
from schemas.privacy import mask_pii
from streams.engine.identity import Senders

MAX_DEPTH = 32
BATCH_MARK = b'"sensor_batch"'  # a gateway batch names its kind; a single reading has no `kind`
BATCH_BYTES_FACTOR = 4  # a gateway batch (≤ 500 readings of ~140 bytes) may be this many times the message limit
ERROR_CHARS = 4000  # a dead letter's `error`
REASONS_CHARS = 200_000  # all reasons of one batch dead letter (with its ≤ 341 KB payload it stays under 1 MiB)


class Batch(NamedTuple):
    """A decoded gateway batch: its valid readings, in order, and where and why each bad one was refused."""

    events: list[SensorReading]
    bad: list[tuple[int, str]]  # (index in ``readings``, why; not yet masked) of each refused reading, ascending
    positions: list[int]  # each event's index in the batch's ``readings``
    total: int  # readings in the message


def _too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Cheap pre-check (no parse): bracket depth outside strings exceeds ``limit``."""
    depth = 0
    in_str = esc = False
    for b in raw:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:  # backslash
                esc = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x7B, 0x5B):
            depth += 1
            if depth > limit:
                return True
        elif b in (0x7D, 0x5D):
            depth -= 1
    return False


class Decoder:
    """Validates input messages of every input topic against their pydantic model."""

    def __init__(self, catalog: Catalog, max_bytes: int = 65536, topic_prefix: str = ""):
        self.context = {"catalog": catalog}
        self.max_bytes = max_bytes
        self.adapters = {topic_prefix + t: TypeAdapter(m) for t, m in EVENT_MODELS.items()}
        # a department's topics (events.feedback.<dept> ...): the sender comes from the topic (identity.py)
        self.senders = Senders(catalog, topic_prefix)
        for t, route in self.senders.routes.items():
            self.adapters[t] = self.adapters[topic_prefix + route.kind]
        self.batch_topic = topic_prefix + SensorBatch.topic
        self.batch_adapter = TypeAdapter(SensorBatch)

    def decode(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> Event | Batch | DeadLetter:
        where = f"{topic}[{partition}]@{offset}"
        try:
            adapter = self.adapters.get(topic)
            if topic in self.senders.legacy:  # the old shared topics: read for one release, then gone
                return self.dead(topic, partition, offset, key, value, f"{where}: {self.senders.legacy[topic]}")
            if adapter is None:
                return self.dead(topic, partition, offset, key, value, f"{where}: not an input topic")
            if value is None:
                return self.dead(topic, partition, offset, key, value, f"{where}: empty message (tombstone)")
            if len(value) > self.max_bytes and not (
                topic == self.batch_topic and len(value) <= BATCH_BYTES_FACTOR * self.max_bytes and BATCH_MARK in value
            ):
                return self.dead(
                    topic,
                    partition,
                    offset,
                    key,
                    value,
                    f"{where}: payload of {len(value)} bytes exceeds the limit of {self.max_bytes} "
                    f"(RISKWATCH_MAX_MESSAGE_BYTES; "
                    f"{BATCH_BYTES_FACTOR}x that for a gateway batch)",
                )
            if (value.count(b"{") + value.count(b"[")) > MAX_DEPTH and _too_deep(value):
                return self.dead(
                    topic, partition, offset, key, value, f"{where}: JSON nested deeper than {MAX_DEPTH} levels"
                )
            if topic == self.batch_topic and BATCH_MARK in value:
                return self.decode_batch(topic, partition, offset, key, value)
            event = adapter.validate_json(value, context=self.context)
            if key is not None and key != event.entity_id.encode():
                return self.dead(
                    topic,
                    partition,
                    offset,
                    key,
                    value,
                    f"{where}: message key {key[:80]!r} does not match entity_id {event.entity_id!r}; "
                    "producers must key by entity_id so an entity's events stay in one partition",
                )
            refused = self.senders.refusal(topic, event)
            if refused is not None:
                return self.dead(topic, partition, offset, key, value, f"{where}: {refused}")
            return event
        except ValidationError as e:
            return self.dead(topic, partition, offset, key, value, f"{where}: {_describe(e)}")
        except Exception as e:  # noqa: BLE001 — the edge never crashes the worker
            return self.dead(topic, partition, offset, key, value, f"{where}: {type(e).__name__}: {e}")

    def decode_batch(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes
    ) -> Batch | DeadLetter:
        """A gateway batch: one validation of the whole message when it is all good (the common
        case); else the envelope alone, then each reading on its own. Readings repeating an
        event_id of an earlier reading of the same batch are refused like any duplicate. The bad
        readings come back as (index, reason) in :class:`Batch`; the batch step adds the readings its
        processor refuses and sends one dead letter for them all (:meth:`dead_batch`)."""
        where = f"{topic}[{partition}]@{offset}"
        try:
            batch = self.batch_adapter.validate_json(value, context=self.context)
            bad: dict[int, str] = {}
            readings: list[Any] = []
        except ValidationError as e:
            bad = {}
            for err in e.errors(include_url=False):
                loc = err["loc"]
                if len(loc) < 2 or loc[0] != "readings" or not isinstance(loc[1], int):
                    return self.dead(topic, partition, offset, key, value, f"{where}: {_describe(e)}")
                bad[loc[1]] = ""
            raw = orjson.loads(value)
            readings = raw["readings"]
            good = [r for i, r in enumerate(readings) if i not in bad]
            for i in bad:
                try:
                    self.batch_adapter.validate_python({**raw, "readings": [readings[i]]}, context=self.context)
                except ValidationError as e1:
                    bad[i] = _describe(e1)
            if not good:
                batch = None
            else:
                batch = self.batch_adapter.validate_python({**raw, "readings": good}, context=self.context)
        if batch is not None and key is not None and key != batch.entity_id.encode():
            return self.dead(
                topic,
                partition,
                offset,
                key,
                value,
                f"{where}: message key {key[:80]!r} does not match entity_id {batch.entity_id!r}; "
                "gateways must key by entity_id so an entity's readings stay in one partition",
            )
        dead: list[tuple[int, str]] = []
        for i, why in bad.items():
            r = readings[i]
            eid = r.get("event_id") if isinstance(r, dict) else None
            why = why.replace(" for SensorBatch", "").replace("  readings.0.", "  ")
            dead.append((i, f"readings[{i}] (event_id {eid!r}): {why}"))
        events: list[SensorReading] = []
        kept: list[int] = []
        if batch is not None:
            positions = [i for i in range(len(batch.readings) + len(bad)) if i not in bad]
            good, late = batch.events()  # late: readings refused for their time, by position in batch.readings
            for j, why in late.items():
                i = positions[j]
                r = readings[i] if readings else batch.readings[j]
                dead.append((i, f"readings[{i}] (event_id {r.get('event_id')!r}): {why}"))
            if late:
                positions = [i for j, i in enumerate(positions) if j not in late]
            seen: set[str] = set()
            for i, ev in zip(positions, good, strict=False):  # one position per good reading (as before: no new raise)
                if ev.event_id in seen:
                    dead.append(
                        (
                            i,
                            f"readings[{i}] (event_id {ev.event_id!r}): duplicate event_id within the batch; "
                            "every reading needs its own id",
                        )
                    )
                    continue
                seen.add(ev.event_id)
                events.append(ev)
                kept.append(i)
        dead.sort(key=lambda d: d[0])
        return Batch(events, dead, kept, len(batch.readings) + len(bad) if batch is not None else len(bad))

    @staticmethod
    def dead(
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: str,
        indexes: Sequence[int] = (),
        reasons: Sequence[str] = (),
    ) -> DeadLetter:
        """The dead letter of a message: its bytes and why (masked: reasons quote the input)."""
        return DeadLetter(
            topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            payload_b64=base64.b64encode(value or b"").decode(),
            error=mask_pii(error)[:ERROR_CHARS],
            indexes=list(indexes),
            reasons=[mask_pii(r) for r in reasons],
            received_at=datetime.now(UTC),
        )

    @staticmethod
    def dead_batch(
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        bad: Sequence[tuple[int, str]],
        total: int,
    ) -> DeadLetter:
        """The one dead letter of a gateway batch with bad readings: its payload once, each bad
        reading's index and reason (``bad``: (index, why), from the decoder and the processor), and
        an ``error`` that says how many were refused, then lists the reasons."""
        bad = sorted(bad)
        cap = max(120, min(1000, REASONS_CHARS // max(len(bad), 1)))  # 500 bad readings: 400 characters each
        masked = [mask_pii(why) for _, why in bad]  # before the cut: no half number escapes the mask
        reasons = [why if len(why) <= cap else why[: cap - 1] + "…" for why in masked]
        shown = ", ".join(f"readings[{i}]" for i, _ in bad[:20]) + (", …" if len(bad) > 20 else "")
        head = (
            f"{topic}[{partition}]@{offset}: {len(bad)} of {total} readings of the gateway batch refused ({shown}); "
            "the others were processed"
        )
        return Decoder.dead(
            topic, partition, offset, key, value, "\n".join([head, *reasons]), [i for i, _ in bad], reasons
        )


def _describe(e: ValidationError) -> str:
    lines = [f"{e.error_count()} validation error{'s' if e.error_count() > 1 else ''} for {e.title}"]
    for err in e.errors(include_url=False)[:20]:
        loc = ".".join(str(p) for p in err["loc"]) or "<message>"
        inp = repr(err.get("input"))
        lines.append(f"  {loc}: {err['msg']} (got {inp[:80]})")
    return "\n".join(lines)
