"""Silences / maintenance windows (静默期): the ``control.silences`` topic, read in full by every worker.

A silence applies to alerts of any entity, so it cannot live in the entity-partitioned state: it is
a small compacted topic (one partition, keyed by ``silence_id``, latest spec wins, a tombstone or an
``ends_at`` in the past ends it) that each worker follows from the beginning with its own
group-less consumer, like a broadcast. The processor gets the current list before each batch.

>>> from datetime import datetime, timedelta, timezone
>>> b = SilenceBoard()
>>> t0 = datetime(2026, 11, 27, 9, tzinfo=timezone.utc)
>>> spec = SilenceSpec(silence_id="S1", starts_at=t0, ends_at=t0 + timedelta(hours=3), entity_id="E1",
...                    created_by="amr", comment="锅炉年检停机")
>>> b.apply(b"S1", spec.model_dump_json().encode())
>>> [s.silence_id for s in b.active()], b.active()[0].ends_at - b.active()[0].starts_at
(['S1'], 10800.0)
>>> b.apply(b"S1", None)          # a tombstone ends it
>>> b.active()
[]
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge
from pydantic import ValidationError

from riskwatch.domain.lifecycle import Silence
from schemas.events import SilenceSpec

log = logging.getLogger(__name__)
KNOWN = Gauge("riskwatch_silences_known", "Silences (any state) this worker has read from control.silences")


def to_silence(spec: SilenceSpec) -> Silence:
    return Silence(
        silence_id=spec.silence_id,
        ends_at=spec.ends_at.timestamp(),
        starts_at=spec.starts_at.timestamp(),
        entity_id=spec.entity_id,
        item_id=spec.item_id,
        rule=spec.rule,
        created_by=spec.created_by,
        comment=spec.comment,
    )


class SilenceBoard:
    """The current silences, from the messages of ``control.silences`` (bad ones are logged, skipped)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}
        self._list: list[Silence] = []
        self.refused = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            if key is not None:
                self._by_id.pop(key.decode("utf-8", "replace"), None)
        else:
            try:
                spec = SilenceSpec.model_validate_json(value)
            except ValidationError as e:
                self.refused += 1
                log.error("control.silences: refused message with key %r: %s", key, e)
                return
            self._by_id[spec.silence_id] = to_silence(spec)
        self._list = list(self._by_id.values())
        KNOWN.set(len(self._list))

    def active(self) -> list[Silence]:
        """Every known silence (the lifecycle checks each one's window against its own clock)."""
        return self._list
