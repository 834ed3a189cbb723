"""The engine without Kafka: bytes in, the batch step's outputs out (``streams/engine/batch.py``).

Each test drives :class:`~streams.engine.batch.EntityBatch` with plain records, as the Faust runtime
does with a ``take_events`` batch, and reads what it would send and store: alert revisions per
topic, ClickHouse rows, changed states, counts and dead letters (original bytes and the reason).
"""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from riskwatch.domain.county import load_county
from schemas.events import DeadLetter
from sinks import rows
from streams.engine.batch import Destinations, EntityBatch, Message, Record
from streams.engine.dispatch import Processor
from streams.engine.ingest import Decoder
from streams.engine.state import EntityState

COUNTY = load_county()
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DEST = Destinations(
    "alerts.all",
    "alerts.events",
    "inspection.plans",
    {d: f"alerts.{d}" for d in COUNTY.catalog.departments},
    "notices",
    "deadletter",
)


class Engine:
    """An entity batch over a dict of states (the runtime's state store), clock fixed."""

    def __init__(self) -> None:
        self.states: dict[bytes, EntityState] = {}
        self.partitions: dict[bytes, int] = {}
        self.batch = EntityBatch(
            Processor.from_county(COUNTY, clock=lambda: T0.timestamp()),
            Decoder(COUNTY.catalog),
            DEST,
            rows,
            load=self.load,
            partition_of=self.partitions,
        )

    def load(self, key: bytes) -> EntityState:
        """Like the worker: a state survives only as its pickled bytes."""
        raw = self.states.get(key)
        return EntityState.loads(raw.dumps() if raw is not None else None)

    def run(self, *msgs: tuple[str, int, bytes]):
        """``(topic, offset, value)`` messages of entity E1 on partition 0, as one batch."""
        out = self.batch.run([Record(Message(t, 0, off, b"E1"), v) for t, off, v in msgs])
        self.states.update(out.states)
        return out


def _json(**kw) -> bytes:
    return orjson.dumps({"entity_id": "E1", "source": "test", **kw})


def registered(n: int = 0) -> bytes:
    return _json(
        event_id=f"reg{n}",
        occurred_at=T0.isoformat(),
        action="registered",
        name="鑫源食品有限公司",
        kind="food_producer",
        township="舞泉镇",
    )


def reading(i: int, value: float) -> bytes:
    return _json(
        event_id=f"s{i}",
        occurred_at=(T0 + timedelta(minutes=i)).isoformat(),
        device_id="d1",
        channel="cold_chain_temp",
        value=value,
        unit="C",
    )


def complaint(i: int, category: str = "food_poisoning") -> bytes:
    return _json(
        event_id=f"c{i}",
        occurred_at=(T0 + timedelta(minutes=30 + i)).isoformat(),
        channel="12345",
        category=category,
        text="吃完腹泻,电话13912345678",
    )


def sent(out, topic: str) -> list[dict]:
    return [orjson.loads(v) for t, _, v in out.sends if t == topic]


def test_a_reading_that_confirms_a_breach_publishes_the_alert_to_its_departments_and_stores_rows() -> None:
    e = Engine()
    out = e.run(
        ("events.registry", 0, registered()),
        ("events.sensor", 0, reading(1, 9.5)),
        ("events.sensor", 1, reading(2, 9.6)),
        ("events.sensor", 2, reading(3, 9.8)),
    )
    assert out.counts == {("events.registry", "ok"): 1, ("events.sensor", "ok"): 3}
    [alert] = sent(out, "alerts.all")
    assert alert["rule"] == "rule.sensor.cold_chain_temp" and alert["notification"] == "firing"
    assert alert["recipients"] and all(sent(out, f"alerts.{d}") == [alert] for d in alert["recipients"])
    assert [n["kind"] for n in sent(out, "notices")] == ["dual_notification"]
    assert sent(out, "alerts.events") and all(tr["hash"] for tr in sent(out, "alerts.events"))
    assert len(out.rows["events_sensor"]) == 3 and len(out.rows["registry"]) == 1
    assert out.rows["evidence"] and out.rows["risk_scores"]
    assert list(out.states) == [b"E1"] and e.partitions == {b"E1": 0}
    assert out.batch_time == {0: (T0 + timedelta(minutes=3)).timestamp()}
    assert out.alerts_out == {("orange", "firing"): 1}


def test_a_complaint_opens_a_case_at_once_and_keeps_no_phone_number() -> None:
    e = Engine()
    e.run(("events.registry", 0, registered()))
    out = e.run(("events.complaint", 0, complaint(1)))
    [alert] = sent(out, "alerts.all")
    assert alert["rule"] == "rule.complaint.food_poisoning" and alert["status"] == "firing"
    assert "13912345678" not in str(out.rows["evidence"]) and "13912345678" not in str(sent(out, "alerts.events"))


def test_bad_bytes_are_a_dead_letter_with_the_original_bytes_and_the_reason() -> None:
    raw = b'{"event_id": 1}'
    out = Engine().run(("events.sensor", 42, raw), ("events.sensor", 43, b"\xff not json"))
    dls = [DeadLetter.model_validate(d) for d in sent(out, "deadletter")]
    assert [d.offset for d in dls] == [42, 43] and base64.b64decode(dls[0].payload_b64) == raw
    assert "validation error" in dls[0].error and out.counts == {("events.sensor", "dead"): 2}
    assert not out.rows and not out.states


def test_a_duplicate_event_id_is_refused_and_a_redelivered_message_is_skipped() -> None:
    e = Engine()
    e.run(("events.registry", 0, registered()), ("events.sensor", 5, reading(1, 3.0)))
    again = e.run(("events.registry", 0, registered()), ("events.sensor", 5, reading(1, 3.0)))  # after a restart
    assert again.counts == {("events.registry", "redelivered"): 1, ("events.sensor", "redelivered"): 1}
    assert not again.sends and not again.rows
    dup = e.run(("events.sensor", 6, reading(1, 3.0)))  # the same event_id at another offset
    [dl] = [DeadLetter.model_validate(d) for d in sent(dup, "deadletter")]
    assert (
        "duplicate event_id 's1'" in dl.error and dl.offset == 6 and base64.b64decode(dl.payload_b64) == reading(1, 3.0)
    )
    assert dup.counts == {("events.sensor", "dead"): 1}


def test_a_gateway_batch_sends_one_dead_letter_with_its_payload_once_and_every_bad_reading() -> None:
    def gateway(rs: list[bytes], bad: dict[int, dict[str, object]]) -> bytes:
        body = [orjson.loads(r) for r in rs]
        readings = [
            {k: v for k, v in r.items() if k not in ("entity_id", "source")} | bad.get(i, {})
            for i, r in enumerate(body)
        ]
        return orjson.dumps({"kind": "sensor_batch", "entity_id": "E1", "gateway_id": "gw-1", "readings": readings})

    bad: dict[int, dict[str, object]] = {1: {"value": "hot"}, 3: {"channel": "nope"}, 4: {"value": "NaN"}}
    raw = gateway([reading(i, 3.0) for i in range(6)], bad)
    raw_b = gateway([reading(10 + i, 3.0) for i in range(6)], bad)  # the same bad indexes, other content
    e = Engine()
    e.run(("events.registry", 0, registered()))
    out = e.run(("events.sensor", 9, raw), ("events.sensor", 10, raw), ("events.sensor", 11, raw_b))  # 10: a retry
    dls = [DeadLetter.model_validate(d) for d in sent(out, "deadletter")]
    assert [(d.offset, d.indexes) for d in dls] == [(9, [1, 3, 4]), (10, [0, 1, 2, 3, 4, 5]), (11, [1, 3, 4])]
    assert [base64.b64decode(d.payload_b64) for d in dls] == [raw, raw, raw_b]  # each payload once
    assert all(len(d.reasons) == len(d.indexes) and d.index is None for d in dls)
    assert "value" in dls[0].reasons[0] and "channel" in dls[0].reasons[1]
    assert [r.split(":")[0] for r in dls[1].reasons if "duplicate event_id" in r] == [
        "readings[0] (event_id 's0')",
        "readings[2] (event_id 's2')",
        "readings[5] (event_id 's5')",
    ]  # refused by the processor (the retry), in the same letter as the decoder's refusals
    assert "readings[1] (event_id 's11')" in dls[2].reasons[0]
    assert dls[0].error.splitlines()[0] == (
        "events.sensor[0]@9: 3 of 6 readings of the gateway batch refused (readings[1], readings[3], readings[4]); "
        "the others were processed"
    )
    assert out.counts == {("events.sensor", "dead"): 12, ("events.sensor", "ok"): 6}  # counted per reading


@pytest.mark.parametrize("module", ["streams.engine.batch", "streams.engine.dispatch", "streams.engine.silences"])
def test_the_engine_runs_without_faust_or_kafka_clients(module: str) -> None:
    code = (
        f"import sys, {module}; bad = [m for m in ('faust', 'mode', 'aiokafka', 'kafka') if m in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or r.stdout


def sighting(i: int, hours: float, confidence: float) -> bytes:
    return _json(
        event_id=f"v{i}",
        occurred_at=(T0 - timedelta(days=4) + timedelta(hours=hours)).isoformat(),
        camera_id="E1-CAM1",
        cls="rodent",
        confidence=confidence,
    )


@pytest.mark.parametrize(
    ("sightings", "opens_at"),
    [
        # the soak's INC7-101: one kitchen camera on three nights; the two sure sightings are 49 h apart
        ([(0.0, 0.949), (23.1, 0.707), (48.9, 0.874), (50.3, 0.729), (51.6, 0.709)], 2),
        ([(0.0, 0.95)], None),  # once is not enough: a cat, a shadow
        ([(0.0, 0.95), (96.0, 0.93)], None),  # twice, four days apart: not one infestation
        ([(0.0, 0.74), (1.0, 0.74), (2.0, 0.74)], None),  # unsure sightings never open a case
    ],
)
def test_rodents_seen_again_on_another_night_open_a_case(sightings, opens_at) -> None:
    e = Engine()
    e.run(("events.registry", 0, registered()))
    opened = [
        i
        for i, (h, conf) in enumerate(sightings)
        if any(
            a["rule"] == "rule.video.rodent"
            for a in sent(e.run(("events.video", i, sighting(i, h, conf))), "alerts.all")
        )
    ]
    assert opened[:1] == ([] if opens_at is None else [opens_at])
