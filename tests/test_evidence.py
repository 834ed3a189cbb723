"""Evidence bundles (远程取证固证): what an alert's bundle holds, its hashes, the export and its
verification. Pure processor tests (no broker); the export from a running worker is exercised in
tests/test_judicial.py."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from riskwatch.cli.audit import verify_export, write_export
from riskwatch.domain.county import load_county
from schemas.audit import bundle_hash, item_hash, verify_bundle
from schemas.events import Complaint, EntityEvent, SensorReading, VideoDetection
from streams.engine.dispatch import Processor
from streams.engine.state import EntityState

T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def county():
    return load_county()


def _reg(p, st, eid="E1", kind="food_producer", licence="SC1"):
    p.process(
        EntityEvent(
            event_id=f"r-{eid}",
            entity_id=eid,
            occurred_at=T0 - timedelta(days=1),
            source="t",
            action="registered",
            name="舞泉镇鑫源食品有限公司",
            kind=kind,
            township="舞泉镇",
            licence=licence,
        ),
        st,
        ("r", 0, 0),
    )


def _reading(n, minutes, v, eid="E1"):
    return SensorReading(
        event_id=f"s{n}",
        entity_id=eid,
        occurred_at=T0 + timedelta(minutes=minutes),
        source="iot",
        device_id="d1",
        channel="cold_chain_temp",
        value=v,
        unit="C",
    )


def _cold_chain_alert(county):
    """Readings every 2 minutes; three above 8 ℃ confirm the breach at minute 40."""
    p, st = Processor.from_county(county), EntityState()
    _reg(p, st)
    outs = []
    n = 0
    for m in range(0, 36, 2):
        outs.append(p.process(_reading(n := n + 1, m, 4.0 + m / 100), st, ("s", 0, n)))
    for m in (36, 38, 40):
        outs.append(p.process(_reading(n := n + 1, m, 9.0 + m / 100), st, ("s", 0, n)))
    return p, st, outs, n


def test_sensor_alert_bundle_holds_the_readings_before_and_after_the_trigger(county):
    p, st, outs, n = _cold_chain_alert(county)
    opened = outs[-1]
    alert = opened.alerts[0]
    v1 = opened.evidence[0]
    assert v1["version"] == 1 and not v1["final"] and alert.evidence_hash == v1["bundle_hash"]
    items = [json.loads(x) for x in v1["items"]]
    readings = next(i for i in items if i["kind"] == "readings")
    times = [t for t, _ in readings["data"]["points"]]
    trigger_ms = int((T0 + timedelta(minutes=40)).timestamp() * 1000)
    assert times[-1] == trigger_ms and times[0] >= trigger_ms - 30 * 60_000  # the 30 minutes before (rules.yaml)
    assert len(times) == 16  # minutes 10..40 every 2 minutes
    assert {i["kind"] for i in items} == {"readings", "explanation"}
    assert verify_bundle(v1["header"], items, v1["bundle_hash"]) == []
    # the chain starts from the bundle
    first = opened.transitions[0]
    assert first["seq"] == 1 and first["prev_hash"] == v1["bundle_hash"]

    # readings during the 10 minutes after the trigger are collected; the window's end seals version 2
    for m in (42, 44, 46, 48):
        o = p.process(_reading(n := n + 1, m, 9.5), st, ("s", 0, n))
        assert not o.evidence
    o = p.process(_reading(n := n + 1, 51, 9.6), st, ("s", 0, n))
    v2 = o.evidence[0]
    assert v2["version"] == 2 and v2["final"] and v2["supersedes"] == v1["bundle_hash"]
    pts = next(json.loads(x) for x in v2["items"] if '"readings"' in x)["data"]["points"]
    assert [t for t, _ in pts][-4:] == [
        trigger_ms + k * 60_000 for k in (2, 4, 6, 8)
    ]  # the reading at +11 min is not in it
    assert v2["sealed_at_ms"] == trigger_ms + 10 * 60_000  # sealed at the window's end, whenever it was noticed
    ev_rows = [t for t in o.transitions if t["kind"] == "evidence"]
    assert len(ev_rows) == 1 and v2["bundle_hash"] in ev_rows[0]["comment"]
    assert o.alerts[-1].evidence_hash == v2["bundle_hash"]


def test_a_deadline_tick_seals_the_bundle_when_no_reading_comes(county):
    p, st, outs, n = _cold_chain_alert(county)
    end = (T0 + timedelta(minutes=50)).timestamp()
    assert not p.tick("E1", st, end - 1).evidence
    out = p.tick("E1", st, end + 3600)
    assert out.evidence[0]["version"] == 2 and out.evidence[0]["sealed_at_ms"] == int(end * 1000)


def test_video_and_complaint_bundles_hold_refs_and_masked_text(county):
    p, st = Processor.from_county(county), EntityState()
    _reg(p, st, kind="catering")
    for i in (1, 2):
        out = p.process(
            VideoDetection(
                event_id=f"v{i}",
                entity_id="E1",
                occurred_at=T0 + timedelta(minutes=i),
                source="ai",
                camera_id="cam1",
                cls="rodent",
                confidence=0.9,
                evidence_ref=f"oss://clips/{i}.mp4",
            ),
            st,
            ("v", 0, i),
        )
    items = [json.loads(x) for x in out.evidence[0]["items"]]
    assert [i["data"]["evidence_ref"] for i in items if i["kind"] == "video"] == [
        "oss://clips/1.mp4",
        "oss://clips/2.mp4",
    ]
    out = p.process(
        Complaint(
            event_id="c1",
            entity_id="E1",
            occurred_at=T0 + timedelta(hours=1),
            source="12315",
            channel="12315",
            category="food_poisoning",
            text="吃了腹泻,电话13812345678",
        ),
        st,
        ("c", 0, 3),
    )
    c = next(json.loads(x) for x in out.evidence[0]["items"] if '"complaint"' in x)
    assert (
        c["data"]["event_id"] == "c1"
        and "13812345678" not in c["data"]["text_masked"]
        and "138" in c["data"]["text_masked"]
    )


def test_export_verifies_and_one_changed_reading_fails_naming_the_item(county, tmp_path):
    _, _, outs, _ = _cold_chain_alert(county)
    v1 = outs[-1].evidence[0]
    items = [json.loads(x) for x in v1["items"]]
    d = write_export(tmp_path / "bundle", v1["header"], items, v1["bundle_hash"])
    assert verify_export(d, v1["bundle_hash"]) == []
    # the CLI says so too
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "evidence", "verify", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "verified" in r.stdout

    f = next(d.glob("items/*readings*.json"))
    doc = json.loads(f.read_text(encoding="utf-8"))
    doc["data"]["points"][3][1] = 3.9  # one reading changed
    f.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    problems = verify_export(d)
    assert problems and "readings:d1:cold_chain_temp" in problems[0] and "modified" in problems[0]
    r = subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", "evidence", "verify", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "readings:d1:cold_chain_temp" in r.stderr and "Traceback" not in r.stderr

    # rewriting the manifest and header to match is caught by the expected bundle hash (the alert's / chain's)
    manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    for m in manifest["items"]:
        if m["name"].startswith("readings"):
            m["sha256"] = item_hash(doc)
    header = json.loads((d / "bundle.json").read_text(encoding="utf-8"))
    for m in header["items"]:
        if m["name"].startswith("readings"):
            m["sha256"] = item_hash(doc)
    manifest["bundle_sha256"] = bundle_hash(header)
    (d / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (d / "bundle.json").write_text(json.dumps(header), encoding="utf-8")
    assert verify_export(d) == []
    assert "not the expected" in verify_export(d, v1["bundle_hash"])[0]


def test_without_the_audit_chain_nothing_is_built(county):
    p, st = Processor.from_county(county, evidence=False), EntityState()
    _reg(p, st)
    out = None
    for n, m in enumerate((36, 38, 40), 1):
        out = p.process(_reading(n, m, 9.5), st, ("s", 0, n))
    assert out.alerts and not out.evidence and out.transitions[0].get("hash") is None and not st.readings


def test_a_refused_event_does_not_seal_the_bundle(county):
    """A refused event goes to the dead letters with nothing else: its side effects would be lost."""
    from schemas.events import DisposalFeedback

    p, st, outs, n = _cold_chain_alert(county)
    aid = outs[-1].alerts[0].alert_id
    bad = DisposalFeedback(
        event_id="fb",
        entity_id="E1",
        occurred_at=T0 + timedelta(minutes=55),
        source="t",
        alert_id=aid,
        department="police",
        status="acknowledged",
    )
    out = p.process(bad, st, ("f", 0, 1))
    assert out.rejected and not out.evidence and not out.transitions
    assert p.tick("E1", st, (T0 + timedelta(minutes=56)).timestamp()).evidence  # the next tick seals it
