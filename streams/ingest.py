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
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

from pydantic import TypeAdapter, ValidationError

from riskwatch.domain.catalog import Catalog
from schemas.events import EVENT_MODELS, DeadLetter, Event

MAX_DEPTH = 32


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

    def decode(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> Event | DeadLetter:
        where = f"{topic}[{partition}]@{offset}"
        try:
            adapter = self.adapters.get(topic)
            if adapter is None:
                return self.dead(topic, partition, offset, key, value, f"{where}: not an input topic")
            if value is None:
                return self.dead(topic, partition, offset, key, value, f"{where}: empty message (tombstone)")
            if len(value) > self.max_bytes:
                return self.dead(topic, partition, offset, key, value,
                                 f"{where}: payload of {len(value)} bytes exceeds the limit of {self.max_bytes} (RISKWATCH_MAX_MESSAGE_BYTES)")
            if (value.count(b"{") + value.count(b"[")) > MAX_DEPTH and _too_deep(value):
                return self.dead(topic, partition, offset, key, value, f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
            event = adapter.validate_json(value, context=self.context)
            if key is not None and key != event.entity_id.encode():
                return self.dead(topic, partition, offset, key, value,
                                 f"{where}: message key {key[:80]!r} does not match entity_id {event.entity_id!r}; "
                                 "producers must key by entity_id so an entity's events stay in one partition")
            return event
        except ValidationError as e:
            return self.dead(topic, partition, offset, key, value, f"{where}: {_describe(e)}")
        except Exception as e:  # noqa: BLE001 — the edge never crashes the worker
            return self.dead(topic, partition, offset, key, value, f"{where}: {type(e).__name__}: {e}")

    @staticmethod
    def dead(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, error: str) -> DeadLetter:
        return DeadLetter(
            topic=topic, partition=partition, offset=offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            payload_b64=base64.b64encode(value or b"").decode(),
            error=error[:4000],
            received_at=datetime.now(timezone.utc),
        )


def _describe(e: ValidationError) -> str:
    lines = [f"{e.error_count()} validation error{'s' if e.error_count() > 1 else ''} for {e.title}"]
    for err in e.errors(include_url=False)[:20]:
        loc = ".".join(str(p) for p in err["loc"]) or "<message>"
        inp = repr(err.get("input"))
        lines.append(f"  {loc}: {err['msg']} (got {inp[:80]})")
    return "\n".join(lines)
