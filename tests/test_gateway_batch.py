"""Gateway batches on events.sensor: per-reading validation, dead letters and idempotency."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import orjson

from riskwatch.domain.county import load_county
from schemas.events import DeadLetter, SensorReading
from streams.engine.dispatch import Processor
from streams.engine.ingest import Batch, Decoder
from streams.engine.state import RECENT_IDS, EntityState
from tests import factories as F

COUNTY = load_county()
DEC = Decoder(COUNTY.catalog)
T0 = datetime.now(UTC) - timedelta(hours=2)


def reading(i: int, value: float = 3.5, **kw) -> dict:
    r = {
        "event_id": f"r{i}",
        "device_id": "d1",
        "channel": "cold_chain_temp",
        "value": value,
        "unit": "C",
        "occurred_at": (T0 + timedelta(seconds=60 * i)).isoformat(),
    }
    return {**r, **kw}


def batch(readings: list, entity: str = "E1", **kw) -> bytes:
    return orjson.dumps(
        {
            "schema_version": 1,
            "kind": "sensor_batch",
            "entity_id": entity,
            "gateway_id": "gw-7",
            "readings": readings,
            **kw,
        }
    )


def test_a_good_batch_decodes_to_its_readings_in_order():
    b = DEC.decode("events.sensor", 2, 9, b"E1", batch([reading(i) for i in range(20)]))
    assert isinstance(b, Batch) and not b.dead
    assert [r.event_id for r in b.events] == [f"r{i}" for i in range(20)] and b.positions == list(range(20))
    r = b.events[3]
    assert isinstance(r, SensorReading) and r.entity_id == "E1" and r.source == "gw-7" and r.occurred_at.tzinfo


def test_each_bad_reading_is_a_dead_letter_of_its_own_with_its_index_and_the_batch_bytes():
    rs = [reading(0), reading(1, value="hot"), reading(2), reading(3, channel="nope"), reading(4), reading(2)]
    raw = batch(rs)
    b = DEC.decode("events.sensor", 1, 77, b"E1", raw)
    assert [r.event_id for r in b.events] == ["r0", "r2", "r4"] and b.positions == [0, 2, 4]
    assert [d.index for d in b.dead] == [1, 3, 5]
    assert all(base64.b64decode(d.payload_b64) == raw and d.offset == 77 for d in b.dead)
    assert "readings[1] (event_id 'r1')" in b.dead[0].error and "value" in b.dead[0].error
    assert "channel" in b.dead[1].error
    assert "duplicate event_id within the batch" in b.dead[2].error


def test_implausible_reading_times_are_dead_letters_of_their_own_and_naive_times_are_shanghai():
    rs = [
        reading(0),
        reading(1, occurred_at="1999-12-31T23:00:00+08:00"),
        reading(2, value="hot"),
        reading(3, occurred_at=(datetime.now(UTC) + timedelta(days=3)).isoformat()),
        reading(
            4,
            occurred_at=(T0 + timedelta(minutes=4))
            .astimezone(timezone(timedelta(hours=8)))
            .replace(tzinfo=None)
            .isoformat(),
        ),
    ]
    b = DEC.decode("events.sensor", 0, 8, b"E1", batch(rs))
    assert [r.event_id for r in b.events] == ["r0", "r4"] and b.positions == [0, 4]
    assert [d.index for d in b.dead] == [1, 2, 3]
    assert "readings[1] (event_id 'r1')" in b.dead[0].error and "before 2000" in b.dead[0].error
    assert "readings[3] (event_id 'r3')" in b.dead[2].error and "in the future" in b.dead[2].error
    assert b.events[1].occurred_at.utcoffset() == timedelta(hours=8)
    assert b.events[1].occurred_at == T0 + timedelta(minutes=4)  # the same instant, read as Asia/Shanghai
    # all good but the time: the one-call path
    b = DEC.decode("events.sensor", 0, 9, b"E1", batch([reading(0), reading(1, occurred_at="1980-01-01T00:00:00Z")]))
    assert (
        [r.event_id for r in b.events] == ["r0"]
        and [d.index for d in b.dead] == [1]
        and "before 2000" in b.dead[0].error
    )


def test_a_bad_envelope_refuses_the_whole_message():
    for raw, why in [
        (batch([reading(i) for i in range(501)]), "readings"),  # more than 500
        (batch([reading(0)], entity=""), "entity_id"),
        (batch([]), "readings"),
        (batch([reading(0)], extra=1), "extra"),
    ]:
        out = DEC.decode("events.sensor", 0, 5, None, raw)
        assert isinstance(out, DeadLetter) and out.index is None and why in out.error, (why, out)
    out = DEC.decode("events.sensor", 0, 6, b"E2", batch([reading(0)]))
    assert isinstance(out, DeadLetter) and "does not match entity_id" in out.error


def test_single_readings_decode_as_before():
    ev = DEC.decode("events.sensor", 0, 1, b"E1", orjson.dumps(F.sensor("E1", 4.0)))
    assert isinstance(ev, SensorReading)


def test_a_replayed_batch_is_skipped_reading_by_reading_and_a_reused_id_is_a_duplicate():
    p = Processor.from_county(COUNTY)
    st = EntityState()
    b = DEC.decode("events.sensor", 0, 10, b"E1", batch([reading(i) for i in range(300)]))
    keep = RECENT_IDS + len(b.events)
    first = [p.process(r, st, ("events.sensor", 0, 10), keep) for r in b.events]
    assert not any(o.redelivered or o.rejected for o in first)
    det = st.sensors["d1:cold_chain_temp"]
    n_before = det.n if hasattr(det, "n") else None
    # the same message again (a restart before its offset was committed): every reading skipped
    again = [p.process(r, st, ("events.sensor", 0, 10), keep) for r in b.events]
    assert all(o.redelivered for o in again)
    assert (det.n if hasattr(det, "n") else None) == n_before
    # a later message reusing an id: a duplicate, refused (to the dead-letter topic by the worker)
    b2 = DEC.decode("events.sensor", 0, 11, b"E1", batch([reading(299), reading(300)]))
    out = [p.process(r, st, ("events.sensor", 0, 11), RECENT_IDS + 2) for r in b2.events]
    assert out[0].rejected and "duplicate event_id 'r299'" in out[0].rejected and not out[1].rejected
    # later single events shrink the ring back to RECENT_IDS
    p.process(
        SensorReading.model_validate(reading(400) | {"entity_id": "E1", "source": "x"}), st, ("events.sensor", 0, 12)
    )
    assert len(st.recent) == RECENT_IDS


def test_batched_and_single_readings_give_the_same_detection():
    p1, p2 = Processor.from_county(COUNTY), Processor.from_county(COUNTY)
    s1, s2 = EntityState(), EntityState()
    values = [3.0 + 0.1 * (i % 7) for i in range(60)] + [9.5, 9.6, 9.8]
    rs = [reading(i, v) for i, v in enumerate(values)]
    singles = [
        p1.process(
            SensorReading.model_validate(r | {"entity_id": "E1", "source": "gw-7"}, context=DEC.context),
            s1,
            ("events.sensor", 0, i),
        )
        for i, r in enumerate(rs)
    ]
    b = DEC.decode("events.sensor", 0, 0, b"E1", batch(rs))
    batched = [p2.process(r, s2, ("events.sensor", 0, 0), RECENT_IDS + len(b.events)) for r in b.events]
    assert [[a.rule for a in o.alerts] for o in singles] == [[a.rule for a in o.alerts] for o in batched]
    assert any(o.alerts for o in batched)
    assert s1.sensors["d1:cold_chain_temp"].__getstate__() == s2.sensors["d1:cold_chain_temp"].__getstate__()


def test_worker_processes_a_batch_sends_its_bad_reading_to_the_dead_letter_topic_and_skips_a_replay(pipeline):
    p = pipeline
    p.start_worker()
    p.send("events.registry", F.registered("E-gw"))
    p.flush()
    p.wait_consumed()
    rs = [reading(i, 3.2) for i in range(17)] + [
        reading(17, 11.0),
        reading(18, "NaN"),
        reading(19, 11.4),
        reading(20, 11.8),
    ]
    raw = batch(rs, entity="E-gw")
    p.send("events.sensor", raw, key="E-gw")
    p.send("events.sensor", raw, key="E-gw")  # the gateway retried: every reading is a duplicate of the first
    p.flush()
    p.wait_consumed()
    dead = [orjson.loads(v) for _, v in p.read_topic("deadletter")]
    first = [d for d in dead if d["index"] == 18]
    assert len(first) == 2 and all(base64.b64decode(d["payload_b64"]) == raw for d in first)
    dups = [d for d in dead if "duplicate event_id" in d["error"]]
    assert len(dups) == 20 and {d["index"] for d in dups} == set(range(21)) - {18}
    alerts = [orjson.loads(v) for _, v in p.read_topic("alerts.all")]
    assert [a["rule"] for a in alerts if a["entity_id"] == "E-gw" and a["revision"] == 1] == [
        "rule.sensor.cold_chain_temp"
    ]
    from riskwatch.tools.runner import wait_for

    wait_for(
        lambda: (
            (r := p.worker.query("SELECT count() AS n FROM riskwatch.events_sensor FINAL WHERE entity_id = 'E-gw'"))
            and r[0]["n"] == 20
        ),
        60,
        "the batch's 20 good readings in ClickHouse",
    )


def test_the_documented_batch_example_is_a_valid_batch():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "throughput.md").read_text(encoding="utf-8")
    body = re.search(r"### events\.sensor \(gateway batch\)\n```json\n(.*?)\n```", text, flags=re.S).group(1)
    b = DEC.decode("events.sensor", 0, 0, b"E000123", body.encode())
    assert isinstance(b, Batch) and not b.dead and len(b.events) == 3
    assert [r.source for r in b.events] == ["iot-gw-07", "iot-gw-07", "iot-gw-07b"]
