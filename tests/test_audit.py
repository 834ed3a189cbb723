"""The tamper-evident audit trail: each alert's alert_history rows form a hash chain from its
evidence bundle; anchors fix the chain heads per partition and period. Pure checks of the chain
and its verification, then the real worker: a life cycle verifies, direct changes to ClickHouse
(a comment updated, a row deleted, a row inserted) are each reported with alert id and seq, and a
replay after kill -9 leaves every chain valid."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import orjson
import pytest

from riskwatch.domain.county import load_county
from riskwatch.tools.runner import settings_env, wait_for
from schemas.audit import chain_hash, chain_row, merkle_root, verify_anchor, verify_chain
from schemas.events import DisposalFeedback, EntityEvent, SensorReading
from streams.engine.dispatch import Processor
from streams.engine.state import EntityState
from streams.runtime import topics as T
from streams.runtime.anchors import build_anchor
from tests import factories as F

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)


def _rows(transitions: list[dict]) -> list[dict]:
    """Transitions as audit verify reads them back from alert_history."""
    return [
        {
            **{
                k: t[k]
                for k in (
                    "alert_id",
                    "seq",
                    "entity_id",
                    "kind",
                    "from_status",
                    "to_status",
                    "actor",
                    "comment",
                    "prev_hash",
                    "hash",
                )
            },
            "at_ms": int(t["at"].timestamp() * 1000),
        }
        for t in transitions
    ]


def _lifecycle():
    county = load_county()
    p, st = Processor.from_county(county), EntityState()
    p.process(
        EntityEvent(
            event_id="r",
            entity_id="B1",
            occurred_at=T0,
            source="t",
            action="registered",
            name="舞阳县热力公司",
            kind="special_equipment",
            township="舞泉镇",
            licence="TS1",
        ),
        st,
        ("r", 0, 0),
    )
    out = p.process(
        SensorReading(
            event_id="s1",
            entity_id="B1",
            occurred_at=T0 + timedelta(minutes=1),
            source="iot",
            device_id="b1",
            channel="boiler_pressure",
            value=1.6,
            unit="MPa",
        ),
        st,
        ("s", 0, 1),
    )
    trs, bundle = list(out.transitions), out.evidence[0]["bundle_hash"]
    aid = out.alerts[0].alert_id
    for n, (status, minutes) in enumerate((("acknowledged", 20), ("in_progress", 30), ("disposed", 90)), 2):
        fb = DisposalFeedback(
            event_id=f"f{n}",
            entity_id="B1",
            occurred_at=T0 + timedelta(minutes=minutes),
            source="t",
            alert_id=aid,
            department="amr",
            status=status,
            comment="已处置,联系电话13812345678",
        )
        trs += p.process(fb, st, ("f", 0, n)).transitions
    trs += p.tick("B1", st, (T0 + timedelta(hours=5)).timestamp()).transitions
    return aid, bundle, _rows(trs), st


def test_chain_links_every_row_to_the_last_and_the_first_to_the_evidence():
    aid, bundle, rows, st = _lifecycle()
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) > 8
    assert rows[0]["prev_hash"] == bundle
    assert all(b["prev_hash"] == a["hash"] for a, b in pairwise(rows))
    assert all("13812345678" not in r["comment"] for r in rows)  # hashed as stored: masked
    assert verify_chain(aid, rows, bundle) is None
    assert st.unanchored[aid] == (rows[-1]["seq"], rows[-1]["hash"])  # the head waits for an anchor


def test_verify_names_the_first_modified_deleted_or_inserted_row():
    aid, bundle, rows, _ = _lifecycle()
    changed = [dict(r) for r in rows]
    changed[4]["comment"] = "已处置"  # a comment rewritten
    f = verify_chain(aid, changed, bundle)
    assert (f.alert_id, f.seq) == (aid, 5) and "modified" in f.what

    f = verify_chain(aid, rows[:3] + rows[4:], bundle)  # a row deleted
    assert (f.seq, "missing") == (4, "missing") and "deleted" in f.what

    # a forged row that even links correctly to its predecessor
    forged = chain_row(aid, 3, "B1", rows[2]["at_ms"], "feedback", "firing", "firing", "amr", "已签收(伪造)")
    forged.update(prev_hash=rows[1]["hash"], hash=chain_hash(rows[1]["hash"], forged))
    f = verify_chain(aid, rows + [forged], bundle)
    assert f.seq == 3 and "inserted" in f.what and "伪造" in f.what

    f = verify_chain(aid, rows, "0" * 64)  # the evidence bundle swapped
    assert f.seq == 1 and "evidence" in f.what
    assert verify_chain(aid, rows, None).seq == 1


def test_anchor_root_and_its_heads():
    aid, bundle, rows, st = _lifecycle()
    a = build_anchor(0, 1000, [(x, s, h) for x, (s, h) in st.unanchored.items()])
    assert a["root"] == merkle_root([(aid, rows[-1]["seq"], rows[-1]["hash"])])
    heads = {(r["alert_id"], r["seq"]): {r["hash"]} for r in rows}
    assert verify_anchor(a, heads) == []
    del heads[(aid, rows[-1]["seq"])]  # the chain cut short after it was anchored
    assert "missing" in verify_anchor(a, heads)[0].what
    a["leaves"][0][2] = "f" * 64
    assert "Merkle root" in verify_anchor(a, {})[0].what


def _cli(p, *args, timeout=180):
    env = {**os.environ, **settings_env(p.settings)}
    return subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _boiler_lifecycle(p, entities, t0):
    for e in entities:
        p.send("events.registry", F.registered(e, kind="special_equipment", name=f"舞阳县热力公司{e}"))
    p.flush()
    p.wait_consumed()
    for e in entities:
        p.send("events.sensor", F.sensor(e, 1.6, channel="boiler_pressure", at=t0))
    p.flush()
    fired = wait_for(
        lambda: (
            (
                x := {
                    a["entity_id"]: a["alert_id"]
                    for a in (orjson.loads(v) for _, v in p.read_topic("alerts.amr"))
                    if a["notification"] == "firing"
                }
            )
            and len(x) == len(entities)
            and x
        ),
        60,
        "the firing alerts",
    )
    for _n, (status, minutes) in enumerate((("acknowledged", 20), ("in_progress", 30), ("disposed", 40))):
        for e in entities:
            fb = F.feedback(e, fired[e], "amr", status)
            fb["occurred_at"] = (t0 + timedelta(minutes=minutes)).isoformat()
            p.send(f"events.feedback.{fb['department']}", fb)
    p.flush()
    p.wait_consumed()
    return fired


TAMPER = textwrap.dedent("""
    import sys
    from schemas.audit import chain_hash, chain_row
    from sinks.clickhouse import make_client
    url, a, b, c = sys.argv[1:5]
    ch = make_client(url)
    ch.command(f"ALTER TABLE riskwatch.alert_history UPDATE comment = '已处置完毕' WHERE alert_id = '{a}' AND seq = 4",
               settings={"mutations_sync": 2})
    ch.command(f"ALTER TABLE riskwatch.alert_history DELETE WHERE alert_id = '{b}' AND seq = 3",
               settings={"mutations_sync": 2})
    r = ch.query(f"SELECT hash, entity_id, toUnixTimestamp64Milli(at) FROM riskwatch.alert_history FINAL "
                 f"WHERE alert_id = '{c}' AND seq = 4").result_rows[0]
    row = chain_row(c, 5, r[1], r[2], "feedback", "acknowledged", "acknowledged", "amr", "已处置(补记)")
    h = chain_hash(r[0], row)
    ch.command(f"INSERT INTO riskwatch.alert_history (alert_id, at, from_status, to_status, actor, comment, seq, kind, "
               f"entity_id, prev_hash, hash) VALUES ('{c}', fromUnixTimestamp64Milli({r[2]}), 'acknowledged', "
               f"'acknowledged', "
               f"'amr', '已处置(补记)', 5, 'feedback', '{r[1]}', '{r[0]}', '{h}')")
    ch.close()
""")


@pytest.mark.timeout(300)
def test_lifecycle_verifies_and_direct_changes_to_clickhouse_are_reported(pipeline):
    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5, audit_anchor_seconds=2.0)
    ents = ["E-au1", "E-au2", "E-au3"]
    fired = _boiler_lifecycle(p, ents, F.BASE)
    wait_for(
        lambda: w.query("SELECT sum(size) AS n FROM riskwatch.audit_anchors FINAL")[0]["n"] >= 3,
        60,
        "anchors covering the chains",
    )
    anchors = [orjson.loads(v) for _, v in p.read_topic("audit.anchors")]
    assert anchors and {a["format"] for a in anchors} == {"riskwatch.anchor/1"}
    ids = {x[0] for a in anchors for x in a["leaves"]}
    assert set(fired.values()) <= ids

    r = _cli(p, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout and "3 alert chains" in r.stdout

    w.stop()
    a, b, c = (fired[e] for e in ents)
    t = subprocess.run(
        [sys.executable, "-c", TAMPER, p.settings.clickhouse_url, a, b, c],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert t.returncode == 0, t.stderr
    r = _cli(p, "audit", "verify")  # the worker is stopped: audit verify opens the directory itself
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("BROKEN")]
    assert any(f"alert {a} seq 4:" in x and "modified" in x for x in lines), lines
    assert any(f"alert {b} seq 3:" in x and "deleted" in x for x in lines), lines
    assert any(f"alert {c} seq 5:" in x and "inserted" in x for x in lines), lines
    assert "Traceback" not in r.stderr


@pytest.mark.timeout(480)
def test_replay_after_kill9_leaves_the_chains_valid(pipeline):
    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5, audit_anchor_seconds=1.0)
    ents = [f"E-k{i}" for i in range(12)]
    for e in ents:
        p.send("events.registry", F.registered(e, kind="special_equipment"))
    p.flush()
    p.wait_consumed()
    # per entity: over pressure (alert), readings after it (evidence v2), back to normal (resolved), again ...
    for i in range(60):
        for e in ents:
            v = 1.6 if (i // 10) % 2 == 0 else 0.8
            p.send(
                "events.sensor",
                F.sensor(e, v, channel="boiler_pressure", at=F.BASE + timedelta(minutes=3 * i), device="b1"),
            )
        if i == 30:
            p.flush()
            w.kill9()  # mid-stream, no clean shutdown: processed-but-uncommitted batches are replayed
            w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5, audit_anchor_seconds=1.0)
    p.flush()
    p.wait_consumed(timeout=180)
    # and the alert sink has stored every transition (its offsets on alerts.events are committed after the write)
    p.wait_consumed(timeout=120, topics=[T.ALERT_EVENTS])
    n = wait_for(
        lambda: (
            (r := w.query("SELECT uniqExact(alert_id) AS n FROM riskwatch.alert_history WHERE hash != ''"))
            and r[0]["n"] >= len(ents)
            and r[0]["n"]
        ),
        60,
        "the chains in ClickHouse",
    )
    forks = w.query(
        "SELECT alert_id, seq, uniqExact(hash) AS n FROM riskwatch.alert_history GROUP BY alert_id, seq HAVING n > 1"
    )
    assert forks == [], forks
    r = _cli(p, "audit", "verify", "--since", (F.BASE - timedelta(days=1)).date().isoformat())
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n} alert chains" in r.stdout


def test_notarisation_request_covers_the_anchor_bytes():
    """RFC 3161 request for an anchor (no TSA is contacted: that needs the network)."""
    import hashlib

    from rfc3161_client import TimeStampRequest  # noqa: F401 - the library the command uses
    from rfc3161_client._rust import parse_timestamp_request

    from riskwatch.cli.audit import timestamp_request
    from schemas.audit import canonical

    record = canonical(build_anchor(0, 1000, [("a1", 3, "ab" * 32)]))
    req = parse_timestamp_request(timestamp_request(record))
    assert req.message_imprint.message == hashlib.sha512(record).digest() and req.cert_req and req.nonce


def test_the_sink_recognises_a_transition_whose_hash_does_not_match():
    from schemas.events import AlertTransition
    from streams.runtime.sink_agent import chain_ok

    _, _, rows, _ = _lifecycle()
    r = rows[3]
    tr = AlertTransition(
        alert_id=r["alert_id"],
        seq=r["seq"],
        entity_id=r["entity_id"],
        at=datetime.fromtimestamp(r["at_ms"] / 1000, UTC),
        kind=r["kind"],
        from_status=r["from_status"],
        to_status=r["to_status"],
        actor=r["actor"],
        comment=r["comment"],
        prev_hash=r["prev_hash"],
        hash=r["hash"],
    )
    assert chain_ok(tr)
    assert not chain_ok(tr.model_copy(update={"comment": "改过"}))
