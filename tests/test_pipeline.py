"""The event path end to end on a real broker and the real ClickHouse engine (chDB)."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from riskwatch.tools.runner import wait_for
from tests import factories as F


def _alerts(p, topic: str) -> list[dict]:
    return [orjson.loads(v) for _, v in p.read_topic(topic)]


def test_each_event_kind_reaches_department_topics_and_clickhouse(pipeline):
    p = pipeline
    p.start_worker()
    cases = [  # entity, kind, event, expected receiving departments
        (
            "E-food",
            "food_producer",
            lambda e: [("events.sensor", F.sensor(e, v)) for v in (11.0, 11.5, 11.8)],
            {"amr", "emergency", "eco"},
        ),
        (
            "E-mkt",
            "produce_market",
            lambda e: [("events.video", F.video(e, "rodent")), ("events.video", F.video(e, "rodent", 0.88))],
            {"amr", "commerce", "police", "agri"},
        ),
        (
            "E-beauty",
            "medical_beauty",
            lambda e: ("events.complaint", F.complaint(e, "medical_beauty_injury")),
            {"health", "police", "commerce", "amr"},
        ),
        (
            "E-boiler",
            "special_equipment",
            lambda e: ("events.sensor", F.sensor(e, 1.6, channel="boiler_pressure")),
            {"amr", "emergency", "police", "fire", "urban", "taskforce"},
        ),  # red: + task force (routing.yaml)
        (
            "E-pharm",
            "retail_pharmacy",
            lambda e: ("events.inspection.amr", F.inspection(e, item_id=2)),
            {"amr", "medinsure"},
        ),
    ]
    for ent, kind, _make, _ in cases:
        p.send("events.registry", F.registered(ent, kind=kind))
    p.flush()
    p.wait_consumed()  # registration first: an event of an unregistered entity goes to the task force
    for ent, _kind, make, _ in cases:
        made = make(ent)
        for topic, ev in made if isinstance(made, list) else [made]:  # the cold-chain rule needs a confirming reading
            p.send(topic, ev)
    p.flush()
    p.wait_consumed()

    all_alerts = {a["entity_id"]: a for a in _alerts(p, "alerts.all")}
    for ent, kind, _, depts in cases:
        a = all_alerts[ent]
        assert set(a["departments"]) == depts, (ent, a["departments"])
        assert a["lead_department"] == ("health" if kind == "medical_beauty" else "amr")
        for d in depts:
            assert any(x["entity_id"] == ent for x in _alerts(p, f"alerts.{d}")), (ent, d)
    # a department that is not a receiver sees nothing of it
    assert not any(x["entity_id"] == "E-food" for x in _alerts(p, "alerts.medinsure"))

    rows = wait_for(
        lambda: (
            (r := p.worker.query("SELECT entity_id, level, title FROM riskwatch.alerts FINAL ORDER BY entity_id"))
            and len(r) == len(cases)
            and r
        ),
        60,
        "alerts in ClickHouse",
    )
    assert {r["entity_id"] for r in rows} == {c[0] for c in cases}
    boiler = next(r for r in rows if r["entity_id"] == "E-boiler")
    assert boiler["level"] == "red" and "锅炉压力" in boiler["title"]
    stored = p.worker.query("SELECT count() AS n FROM riskwatch.events_registry FINAL")[0]["n"]
    assert stored == len(cases)
    registry = p.worker.query("SELECT entity_id, kind, township FROM riskwatch.registry FINAL ORDER BY entity_id")
    assert {r["entity_id"]: r["kind"] for r in registry} == {c[0]: c[1] for c in cases}
    # 双告知: every new entity produced a notice to its competent department
    notices = [orjson.loads(v) for _, v in p.read_topic("notices")]
    assert {n["entity_id"] for n in notices if n["kind"] == "dual_notification"} == {c[0] for c in cases}


def _malformed(n: int) -> tuple[list[tuple[str, bytes | None, bytes, str]], dict[str, Any]]:
    """(topic, key, value, sort) — many sorts of bad input."""
    good = F.sensor("E-bad", 3.0)
    sorts: list[tuple[str, bytes | None, bytes, str]] = []
    for i in range(n):
        s = i % 12
        ev = dict(F.sensor("E-bad", 3.0))
        if s == 0:
            v, sort = b"not json at all \xff\xfe", "not-json"
        elif s == 1:
            ev["value"] = "hot"
            v, sort = orjson.dumps(ev), "wrong-type"
        elif s == 2:
            del ev["device_id"]
            v, sort = orjson.dumps(ev), "missing-field"
        elif s == 3:
            r = F.registered("E-bad", kind="spaceship_yard")
            r["event_id"] += f"-{i}"
            v, sort = orjson.dumps(r), "unknown-kind"
            sorts.append(("events.registry", b"E-bad", v, sort))
            continue
        elif s == 4:
            fb = F.feedback("E-bad", "a1", "ministry_of_magic")
            v, sort = orjson.dumps(fb), "unknown-dept"
            sorts.append(("events.feedback.amr", b"E-bad", v, sort))
            continue
        elif s == 5:
            ev["occurred_at"] = "1970-01-01T00:00:00"
            v, sort = orjson.dumps(ev), "absurd-past"
        elif s == 6:
            ev["occurred_at"] = "2199-01-01T00:00:00+08:00"
            v, sort = orjson.dumps(ev), "absurd-future"
        elif s == 7:
            ev["unit"] = "x" * 100_000
            v, sort = orjson.dumps(ev), "oversized"
        elif s == 8:
            v, sort = b"[" * 5000 + b"]" * 5000, "deeply-nested"
        elif s == 9:
            ev["value"] = float("nan")
            v, sort = orjson.dumps(ev).replace(b"null", b"NaN"), "nan"
        elif s == 10:
            ev["event_id"] = good["event_id"]
            v, sort = orjson.dumps(ev), "duplicated-event_id"
        else:
            ev["occurred_at"] = "yesterday"
            v, sort = orjson.dumps(ev), "unparseable-time"
        sorts.append(("events.sensor", b"E-bad", v, sort))
    return sorts, good


def test_malformed_messages_go_to_dead_letters_and_good_ones_pass(pipeline):
    p = pipeline
    p.start_worker()
    p.send("events.registry", F.registered("E-bad"))
    p.send("events.registry", F.registered("E-good"))
    p.flush()
    p.wait_consumed()
    bad, good = _malformed(1200)
    p.send("events.sensor", good)
    p.flush()
    goods = []
    for i, (topic, key, value, _) in enumerate(bad):
        p.send(topic, value, key=key)
        if i % 10 == 0:
            g = F.sensor("E-good", 3.0 + (i % 3) * 0.1)
            goods.append(g["event_id"])
            p.send("events.sensor", g)
    p.flush()
    p.wait_consumed(timeout=180)

    dead = [orjson.loads(v) for _, v in p.read_topic("deadletter")]
    assert len(dead) == len(bad)
    originals = sorted(base64.b64decode(d["payload_b64"]) for d in dead)
    assert originals == sorted(v for _, _, v, _ in bad)
    assert all(
        d["error"]
        and d["offset"] >= 0
        and d["topic"].endswith(("events.sensor", "events.registry", "events.feedback.amr"))
        for d in dead
    )
    reasons = " ".join(d["error"] for d in dead)
    for needle in (
        "Invalid JSON",
        "value",
        "device_id",
        "unknown entity kind",
        "unknown department",
        "before 2000",
        "in the future",
        "exceeds the limit",
        "nested deeper",
        "duplicate event_id",
    ):
        assert needle in reasons, needle
    n = wait_for(
        lambda: (
            (r := p.worker.query("SELECT count() AS n FROM riskwatch.events_sensor FINAL WHERE entity_id = 'E-good'"))
            and r[0]["n"] == len(goods)
            and r
        ),
        60,
        "good events in ClickHouse",
    )
    assert n[0]["n"] == len(goods)
    stored_dead = wait_for(
        lambda: (
            (r := p.worker.query("SELECT count() AS n FROM riskwatch.dead_letters FINAL"))
            and r[0]["n"] == len(bad)
            and r
        ),
        60,
        "dead letters in ClickHouse",
    )
    assert stored_dead[0]["n"] == len(bad)


def test_restart_mid_stream_loses_nothing_and_duplicates_no_alert(pipeline):
    p = pipeline
    w = p.start_worker()
    ents = [f"E-r{i}" for i in range(20)]
    for e in ents:
        p.send("events.registry", F.registered(e))
    p.flush()
    p.wait_consumed()
    sent = []
    for k in range(30):
        for e in ents:
            ev = F.sensor(e, 35.0 if k % 10 == 5 else 20.0, channel="storage_temp")  # a limit breach now and then
            sent.append(ev["event_id"])
            p.send("events.sensor", ev)
        if k == 10:
            p.flush()
            w.kill9()  # mid-stream, no clean shutdown
            w = p.start_worker()
    p.flush()
    p.wait_consumed(timeout=180)
    r = p.worker.query("SELECT count() AS n, uniqExact(event_id) AS u FROM riskwatch.events_sensor FINAL")[0]
    assert r["n"] == r["u"] == len(sent)
    # three breach episodes per entity (k = 5, 15, 25), each resolved by the readings after it:
    # exactly three alerts per entity, each at its final revision — the restart neither lost the
    # detector state (no fourth alert) nor wrote a second row for an alert
    per_entity = p.worker.query(
        "SELECT entity_id, uniqExact(alert_id) AS n, groupUniqArray(status) AS st, count() AS rows "
        "FROM riskwatch.alerts FINAL GROUP BY entity_id"
    )
    assert {x["entity_id"] for x in per_entity} == set(ents)
    assert all(x["n"] == 3 and x["rows"] == 3 for x in per_entity), per_entity
    # over: a one-reading breach waits out its pending period and closes unnotified when the readings
    # recover; a notified one is resolved, then closed after the grace period
    assert all(set(x["st"]) <= {"resolved", "closed"} for x in per_entity), per_entity
