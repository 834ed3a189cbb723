"""The county simulator: valid events, reproducibility, incidents visible in the data, malformed messages."""

from __future__ import annotations

import csv
import hashlib
import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from riskwatch.domain.catalog import load_catalog
from riskwatch.tools.simulator import SimConfig, Simulator, generate
from riskwatch.tools.simulator.county import CST
from riskwatch.tools.simulator.incidents import INCIDENT_TYPES
from riskwatch.tools.simulator.streams import TOPICS, fake_id_number
from schemas.events import EVENT_MODELS

START = datetime(2026, 3, 2, 0, 0, tzinfo=CST)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=CST)
CATALOG = load_catalog()
CTX = {"catalog": CATALOG}
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wuyang" / "townships.csv"


def _cfg(**kw) -> SimConfig:
    return SimConfig(**{"seed": 7, "days": 1.5, "scale": 0.3, "bad_rate": 0.01, "start": START, "now": NOW, **kw})


@pytest.fixture(scope="module")
def run():
    sim = Simulator(_cfg(), catalog=CATALOG)
    msgs = list(sim.events())
    return sim, msgs


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _valid(sim, msgs):
    bad = {b["seq"] for b in sim.bad}
    return [m for k, m in enumerate(msgs) if k not in bad]


# --- contracts -----------------------------------------------------------------------------------
def test_every_kind_and_topic_present(run):
    sim, msgs = run
    topics = Counter(m[0] for m in msgs)
    assert set(topics) == set(TOPICS)
    assert set(sim.county.counts()) == set(CATALOG.entity_kinds)
    channels = {orjson.loads(v)["channel"] for t, _, v in _valid(sim, msgs) if t == "events.sensor"}
    assert channels == {
        "cold_chain_temp",
        "boiler_pressure",
        "boiler_temp",
        "vessel_pressure",
        "elevator_fault",
        "elevator_door_cycles",
        "pump_vibration",
        "storage_humidity",
        "storage_temp",
    }


def test_generated_events_validate(run):
    sim, msgs = run
    valid = _valid(sim, msgs)
    sensors = [m for m in valid if m[0] == "events.sensor"]
    others = [m for m in valid if m[0] != "events.sensor"]
    sample = sensors[:: max(1, len(sensors) // 20000)] + others
    assert len(sample) >= 20000
    seen_ids = set()
    for topic, key, value in sample:
        model = EVENT_MODELS[topic]
        ev = model.model_validate_json(value, context=CTX)
        assert model.topic == topic
        assert key == ev.entity_id.encode()
        assert ev.occurred_at.utcoffset().total_seconds() == 8 * 3600
        assert ev.event_id not in seen_ids
        seen_ids.add(ev.event_id)
        if topic == "events.inspection":
            items = {i.id for i in CATALOG.items_for_kind(sim.county.by_id()[ev.entity_id].kind)}
            assert ev.item_id in items and ev.departments[0] == CATALOG.items[ev.item_id].lead
            assert all(re.fullmatch(r"[a-z]+-\d\d", i) for i in ev.inspectors)


def test_registry_first_and_entities_realistic():
    cfg = _cfg(scale=1.0, days=0.05, bad_rate=0)
    sim = Simulator(cfg, catalog=CATALOG)
    counts = sim.county.counts()
    assert counts["retail_pharmacy"] == 250 and counts["catering"] == 400 and counts["special_equipment"] == 200
    first = []
    for topic, _key, value in sim.events():
        if topic != "events.registry":
            break
        first.append(orjson.loads(value))
    initial = [e for e in sim.entities if e.registered_at is None]
    assert [d["entity_id"] for d in first] == [e.entity_id for e in initial]
    assert all(d["action"] == "registered" and re.fullmatch(r"E\d{6}", d["entity_id"]) for d in first)
    names = [e.name for e in sim.entities]
    assert len(set(names)) == len(names)
    # the county seat holds the most entities; every township has some
    towns = Counter(e.township for e in sim.entities)
    assert towns.most_common(1)[0][0] == "舞泉镇" and len(towns) == 14
    assert all(33.2 < e.lat < 33.7 and 113.3 < e.lon < 113.9 for e in sim.entities)


def test_townships_match_shared_data():
    if not SHARED.exists():
        pytest.skip("shared data not present")
    rows = {r["name"]: int(r["population_2000"]) for r in csv.DictReader(SHARED.open(encoding="utf-8"))}
    sim_towns = {t["name"]: t["population"] for t in SimConfig().data["county"]["townships"]}
    assert sim_towns == rows


# --- reproducibility -------------------------------------------------------------------------------
def _digest(cfg: SimConfig) -> str:
    h = hashlib.sha256()
    for topic, key, value in generate(cfg):
        h.update(topic.encode() + b"\0" + key + b"\0" + value + b"\n")
    return h.hexdigest()


def test_same_seed_same_bytes_different_seed_different():
    a = _digest(_cfg(scale=0.1, days=0.4))
    b = _digest(_cfg(scale=0.1, days=0.4))
    c = _digest(_cfg(scale=0.1, days=0.4, seed=8))
    assert a == b
    assert a != c


# --- incidents -------------------------------------------------------------------------------------
def test_ground_truth_lists_every_incident_type(run):
    sim, _ = run
    gt = sim.ground_truth()
    assert gt[0]["record"] == "summary"
    incs = [r for r in gt if r["record"] == "incident"]
    assert {r["type"] for r in incs} == set(INCIDENT_TYPES)
    for r in incs:
        assert re.fullmatch(r"E\d{6}", r["entity_id"]) and _t(r["start"]) <= _t(r["end"])
        assert r["expected_signal"] and r["complete"] is True
    assert len({r["entity_id"] for r in incs}) == len(incs)


def test_incident_signals_are_in_the_data(run):
    sim, msgs = run
    valid = [(t, orjson.loads(v)) for t, _, v in _valid(sim, msgs)]
    sensors: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for t, d in valid:
        if t == "events.sensor":
            sensors.setdefault((d["device_id"], d["channel"]), []).append((_t(d["occurred_at"]), d["value"]))
    incs = [r for r in sim.ground_truth() if r["record"] == "incident"]
    for r in incs:
        s, e = _t(r["start"]), _t(r["end"])
        typ = r["type"]
        if typ in ("cold_chain_failure", "boiler_overpressure", "pharmacy_humidity_excursion"):
            series = sensors[(r["device_id"], r["channel"])]
            inside = [v for ts, v in series if s <= ts <= e]
            before = [v for ts, v in series if ts < s]
            assert max(inside) > r["limit"], r
            assert sum(v > r["limit"] for v in inside) >= 3, r
            assert max(before) < r["limit"], r  # normal before the incident
            if typ == "cold_chain_failure":  # a creep: the first hour stays below the limit
                assert all(v < r["limit"] for ts, v in series if s <= ts < s + 3600)
        elif typ == "elevator_fault_burst":
            series = sensors[(r["device_id"], "elevator_fault")]
            faults = [v for ts, v in series if s <= ts <= e and v != 0]
            assert len(faults) >= 3, r
        elif typ == "complaint_surge":
            n_in = sum(
                1
                for t, d in valid
                if t == "events.complaint" and d["entity_id"] == r["entity_id"] and s <= _t(d["occurred_at"]) <= e
            )
            assert n_in >= 8 and n_in >= r["count"]
        elif typ == "rodent_repeat":
            n_in = sum(
                1
                for t, d in valid
                if t == "events.video"
                and d["entity_id"] == r["entity_id"]
                and d["cls"] == "rodent"
                and s <= _t(d["occurred_at"]) <= e
            )
            assert n_in >= 5 and n_in >= r["count"]
    # background: no other shop gets a complaint surge
    per_entity_day = Counter(
        (d["entity_id"], d["occurred_at"][:10])
        for t, d in valid
        if t == "events.complaint" and d["entity_id"] != "unknown"
    )
    surge_ids = {r["entity_id"] for r in incs if r["type"] == "complaint_surge"}
    assert all(c <= 3 for (eid, _), c in per_entity_day.items() if eid not in surge_ids)


def test_complaints_contain_pii_to_mask(run):
    sim, msgs = run
    texts = [orjson.loads(v)["text"] for t, _, v in _valid(sim, msgs) if t == "events.complaint"]
    assert any(re.search(r"1[3-9]\d{9}", x) for x in texts)
    assert re.fullmatch(r"411121\d{11}[\dX]", fake_id_number(__import__("random").Random(1)))


# --- malformed messages ----------------------------------------------------------------------------
def test_bad_messages_fail_and_are_counted(run):
    sim, msgs = run
    summary = sim.summary()
    assert summary["bad_messages"] == len(sim.bad) > 0
    assert summary["messages"] == len(msgs)
    assert set(summary["bad_by_sort"]) == set(Simulator.BAD_SORTS)
    bad_seq = {b["seq"] for b in sim.bad}
    earlier_ids = set()
    for k, (_topic, _key, value) in enumerate(msgs):
        if k not in bad_seq:
            earlier_ids.add(orjson.loads(value)["event_id"])
    for b in sim.bad:
        topic, key, value = msgs[b["seq"]]
        assert topic == b["topic"] and len(value) == b["bytes"]
        if b["sort"] == "duplicate_event_id":
            assert orjson.loads(value)["event_id"] in earlier_ids  # valid alone, but a re-send
            continue
        if b["sort"] == "oversized":
            assert len(value) > sim.cfg.max_message_bytes
        with pytest.raises((ValidationError, ValueError)):
            EVENT_MODELS[topic].model_validate_json(value, context=CTX)


def test_no_bad_messages_when_rate_zero():
    sim = Simulator(_cfg(scale=0.05, days=0.3, bad_rate=0.0), catalog=CATALOG)
    msgs = list(sim.events())
    assert not sim.bad and sim.summary()["bad_messages"] == 0 and len(msgs) == sim.sent


# --- time -----------------------------------------------------------------------------------------
def test_timestamps_never_in_the_future(run):
    sim, msgs = run
    limit = min(NOW, datetime.now(UTC)).timestamp()
    prev = 0.0
    skewed = {r["source"] for r in sim.skew_truth()}  # their clocks are off for a while: see below
    for _topic, _key, value in _valid(sim, msgs):
        d = orjson.loads(value)
        if d.get("source") in skewed:
            continue
        ts = _t(d["occurred_at"])
        assert ts <= limit
        assert ts >= prev  # time-ordered stream
        prev = ts


def test_skewed_gateway_clocks_have_ground_truth():
    """A skewed gateway's readings are sent on time (``sim_time``: the record timestamp) but stamped off
    by its skew during its period, and on time outside it; the ground truth names each period."""
    sim = Simulator(_cfg(scale=0.1, bad_rate=0.0), catalog=CATALOG)
    off: dict[tuple[str, float], int] = {}
    for topic, _key, value in sim.events():
        if topic != "events.sensor":
            continue
        d = orjson.loads(value)
        dt = _t(d["occurred_at"]) - sim.sim_time
        inside = [(src, s) for src, s, a, b in sim.skews if src == d["source"] and a <= sim.sim_time < b]
        assert dt == (inside[0][1] if inside else 0.0)
        if inside:
            off[inside[0]] = off.get(inside[0], 0) + 1
    truth = [r for r in sim.ground_truth() if r["record"] == "clock_skew"]
    assert {(r["source"], r["skew_s"]) for r in truth} == set(off) and len(truth) >= 3
    assert {(src, s) for src, s, a, _ in sim.skews if a < sim.sim_time} == set(off)
    assert all(r["streams"] > 0 for r in truth)


def test_default_start_ends_before_the_wall_clock():
    cfg = SimConfig(scale=0.02, days=0.05, bad_rate=0)
    now = datetime.now(UTC).timestamp()
    assert cfg.end.timestamp() <= now
    last = None
    for _, _, v in generate(cfg):
        last = v
    assert _t(orjson.loads(last)["occurred_at"]) <= datetime.now(UTC).timestamp()


# --- speed and CLI --------------------------------------------------------------------------------
def test_generation_is_fast():
    sim = Simulator(_cfg(scale=1.0, days=0.25, bad_rate=0.002), catalog=CATALOG)
    t = time.perf_counter()
    n = sum(1 for _ in sim.events())
    rate = n / (time.perf_counter() - t)
    assert n > 50000
    assert rate > 20000, f"{rate:.0f} events/s"  # ~100k/s on an idle core; lenient for busy CI


def test_cli_out_file_roundtrip(tmp_path):
    from typer.testing import CliRunner

    from riskwatch.cli.simulate import app, read_out

    for name in ("out.tsv", "out.jsonl"):
        out, truth = tmp_path / name, tmp_path / f"{name}.truth.jsonl"
        res = CliRunner().invoke(
            app,
            [
                "--start",
                "2026-03-02T00:00:00",
                "--days",
                "0.3",
                "--scale",
                "0.05",
                "--bad-rate",
                "0.05",
                "--out",
                str(out),
                "--truth",
                str(truth),
                "--quiet",
            ],
        )
        assert res.exit_code == 0, res.output
        got = list(read_out(out))
        want = list(generate(SimConfig(seed=7, days=0.3, scale=0.05, bad_rate=0.05, start=START)))
        assert got == want
        gt = [orjson.loads(x) for x in truth.read_bytes().splitlines()]
        assert gt[0]["record"] == "summary" and gt[0]["messages"] == len(got)
        assert gt[0]["bad_messages"] == sum(1 for r in gt if r["record"] == "bad_message") > 0


def test_match_alerts_maps_alerts_to_incidents(run):
    from riskwatch.tools.simulator.incidents import match_alerts

    sim, _ = run
    incs = [r for r in sim.ground_truth() if r["record"] == "incident"]
    cold = next(r for r in incs if r["type"] == "cold_chain_failure")
    alerts = [
        {"entity_id": cold["entity_id"], "first_seen": cold["observed"]["first_breach"], "alert_id": "a1"},
        {"entity_id": "E000001", "first_seen": "2026-03-01T00:00:00+08:00", "alert_id": "a2"},
    ]
    res = match_alerts(incs, alerts)
    assert res["detected"][cold["incident_id"]]["delay_from_breach_s"] == 0
    assert [a["alert_id"] for a in res["false_alerts"]] == ["a2"]
    assert len(res["missed"]) == len(incs) - 1
