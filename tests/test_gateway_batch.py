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
    assert isinstance(b, Batch) and not b.bad and b.total == 20
    assert [r.event_id for r in b.events] == [f"r{i}" for i in range(20)] and b.positions == list(range(20))
    r = b.events[3]
    assert isinstance(r, SensorReading) and r.entity_id == "E1" and r.source == "gw-7" and r.occurred_at.tzinfo


def test_the_bad_readings_of_a_batch_are_one_dead_letter_with_the_batch_bytes_once_and_every_index():
    rs = [reading(0), reading(1, value="hot"), reading(2), reading(3, channel="nope"), reading(4), reading(2)]
    raw = batch(rs)
    b = DEC.decode("events.sensor", 1, 77, b"E1", raw)
    assert [r.event_id for r in b.events] == ["r0", "r2", "r4"] and b.positions == [0, 2, 4] and b.total == 6
    assert [i for i, _ in b.bad] == [1, 3, 5]
    d = Decoder.dead_batch("events.sensor", 1, 77, b"E1", raw, b.bad, b.total)
    assert base64.b64decode(d.payload_b64) == raw and d.offset == 77 and d.index is None
    assert d.indexes == [1, 3, 5] and len(d.reasons) == 3
    assert d.reasons[0].startswith("readings[1] (event_id 'r1')") and "value" in d.reasons[0]
    assert "channel" in d.reasons[1]
    assert "duplicate event_id within the batch" in d.reasons[2]
    head, *listed = d.error.splitlines()
    assert head.startswith(
        "events.sensor[1]@77: 3 of 6 readings of the gateway batch refused (readings[1], readings[3]"
    )
    assert all(any(line.startswith(f"readings[{i}]") for line in listed) for i in d.indexes)
    assert DeadLetter.model_validate_json(d.model_dump_json()) == d


def test_a_batch_dead_letter_masks_its_reasons_and_bounds_them():
    rs = [reading(0, device_id=f"tel1381234{i:04d}", value="hot") for i in range(500)]
    d = Decoder.dead_batch(
        "events.sensor", 0, 1, b"E1", batch(rs), [(i, f"readings[{i}]: {r}") for i, r in enumerate(rs)], 500
    )
    assert d.indexes == list(range(500)) and len(d.reasons) == 500
    assert "13812340007" not in d.model_dump_json() and "138****0007" in d.reasons[7]
    assert sum(map(len, d.reasons)) <= 200_000 and len(d.error) <= 4000
    assert len(d.model_dump_json()) < 1_000_000  # under Kafka's default message limit


def test_implausible_reading_times_are_refused_reading_by_reading_and_naive_times_are_shanghai():
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
    assert [i for i, _ in b.bad] == [1, 2, 3]
    assert "readings[1] (event_id 'r1')" in b.bad[0][1] and "before 2000" in b.bad[0][1]
    assert "readings[3] (event_id 'r3')" in b.bad[2][1] and "in the future" in b.bad[2][1]
    assert b.events[1].occurred_at.utcoffset() == timedelta(hours=8)
    assert b.events[1].occurred_at == T0 + timedelta(minutes=4)  # the same instant, read as Asia/Shanghai
    # all good but the time: the one-call path
    b = DEC.decode("events.sensor", 0, 9, b"E1", batch([reading(0), reading(1, occurred_at="1980-01-01T00:00:00Z")]))
    assert [r.event_id for r in b.events] == ["r0"] and [i for i, _ in b.bad] == [1] and "before 2000" in b.bad[0][1]


def test_a_bad_envelope_refuses_the_whole_message():
    for raw, why in [
        (batch([reading(i) for i in range(501)]), "readings"),  # more than 500
        (batch([reading(0)], entity=""), "entity_id"),
        (batch([]), "readings"),
        (batch([reading(0)], extra=1), "extra"),
    ]:
        out = DEC.decode("events.sensor", 0, 5, None, raw)
        assert isinstance(out, DeadLetter) and out.indexes == [] and why in out.error, (why, out)
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


COUNT_DEAD_LETTERS = """
import json, sys
from sinks.clickhouse import make_client
ch = make_client(sys.argv[1])
q = ("SELECT offset, indexes, length(reasons) AS n_reasons, base64Decode(payload) AS payload "
     "FROM riskwatch.dead_letters FINAL WHERE topic LIKE '%events.sensor' ORDER BY offset")
out = {}
for stage in ("final", "optimized"):
    if stage == "optimized":
        ch.command("OPTIMIZE TABLE riskwatch.dead_letters FINAL")
    out[stage] = [[o, list(ix), n, p] for o, ix, n, p in ch.query(q).result_rows]
ch.close()
print(json.dumps(out))
"""


def test_worker_stores_each_batch_payload_once_with_every_bad_reading_and_clickhouse_keeps_them_all(pipeline):
    import subprocess
    import sys

    from riskwatch.tools.runner import wait_for

    p = pipeline
    p.start_worker()
    p.send("events.registry", F.registered("E-gw"))
    p.flush()
    p.wait_consumed()
    bad_at = {5: {"value": "hot"}, 9: {"channel": "nope"}, 18: {"value": "NaN"}}
    rs = [reading(i, 3.2) for i in range(17)] + [reading(17, 11.0), reading(18), reading(19, 11.4), reading(20, 11.8)]
    raw = batch([r | bad_at.get(i, {}) for i, r in enumerate(rs)], entity="E-gw")
    # a later batch, other readings, bad at the same positions (same indexes, different content)
    raw_b = batch([reading(40 + i, 3.2) | bad_at.get(i, {}) for i in range(21)], entity="E-gw")
    p.send("events.sensor", raw, key="E-gw")
    p.send("events.sensor", raw, key="E-gw")  # the gateway retried: every good reading is a duplicate of the first
    p.send("events.sensor", raw_b, key="E-gw")
    p.flush()
    p.wait_consumed()

    dead = [DeadLetter.model_validate_json(v) for _, v in p.read_topic("deadletter")]
    assert len(dead) == 3  # one per batch message, not one per bad reading
    first, retry, second = sorted(dead, key=lambda d: d.offset)
    assert [base64.b64decode(d.payload_b64) for d in (first, retry, second)] == [raw, raw, raw_b]
    assert first.indexes == second.indexes == [5, 9, 18] and retry.indexes == list(range(21))
    assert all(len(d.reasons) == len(d.indexes) and d.index is None for d in dead)
    assert (
        "value" in first.reasons[0]
        and "channel" in first.reasons[1]
        and "readings[18] (event_id 'r18')" in first.reasons[2]
    )
    assert "readings[5] (event_id 'r45')" in second.reasons[0]
    dups = [r for r in retry.reasons if "duplicate event_id" in r]
    assert len(dups) == 18 and first.error.splitlines()[0].endswith(
        "3 of 21 readings of the gateway batch refused (readings[5], readings[9], readings[18]); "
        "the others were processed"
    )
    alerts = [orjson.loads(v) for _, v in p.read_topic("alerts.all")]
    assert [a["rule"] for a in alerts if a["entity_id"] == "E-gw" and a["revision"] == 1] == [
        "rule.sensor.cold_chain_temp"
    ]
    wait_for(
        lambda: (
            (r := p.worker.query("SELECT count() AS n FROM riskwatch.events_sensor FINAL WHERE entity_id = 'E-gw'"))
            and r[0]["n"] == 36
        ),
        60,
        "both batches' 18 good readings each in ClickHouse",
    )
    wait_for(
        lambda: (
            (r := p.worker.query("SELECT count() AS n FROM riskwatch.dead_letters WHERE topic LIKE '%events.sensor'"))
            and r[0]["n"] >= 3
        ),
        60,
        "the three dead letters in ClickHouse",
    )
    assert p.worker.stop() is not None  # chDB is one process's: count behind the worker's back once it is gone
    got = subprocess.run(
        [sys.executable, "-c", COUNT_DEAD_LETTERS, p.settings.clickhouse_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    counted = orjson.loads(got.stdout.strip().splitlines()[-1])
    want = [
        [d.offset, d.indexes, len(d.indexes), base64.b64decode(d.payload_b64).decode()] for d in (first, retry, second)
    ]
    assert counted["final"] == counted["optimized"] == want  # 3 messages, 3 + 21 + 3 bad readings, none merged away


def test_the_documented_batch_example_is_a_valid_batch():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "throughput.md").read_text(encoding="utf-8")
    body = re.search(r"### events\.sensor \(gateway batch\)\n```json\n(.*?)\n```", text, flags=re.S).group(1)
    b = DEC.decode("events.sensor", 0, 0, b"E000123", body.encode())
    assert isinstance(b, Batch) and not b.bad and len(b.events) == 3
    assert [r.source for r in b.events] == ["iot-gw-07", "iot-gw-07", "iot-gw-07b"]
