"""`riskwatch audit verify` against deletions and rewrites, with the real worker and broker.

One life cycle per alert, anchored only by the worker's clean shutdown (the hourly period never
comes in the test), then three attacks on ClickHouse, each by someone who can write all of it:
the newest rows of one chain deleted, a middle row of another deleted, and a row of a third edited
with its chain recomputed — its alert revisions' heads and ClickHouse's ``audit_anchors`` rewritten
to match. Each is named in one line; the last is found only because the anchors (and revisions)
on Kafka still say what the chain was: with ``--no-kafka`` it passes. Pure checks first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
import yaml

from riskwatch.tools.audit_verify import Anchor, Head, anchor_findings, head_findings, latest_heads
from riskwatch.tools.runner import settings_env, wait_for
from streams.runtime import topics as T
from tests import factories as F
from tests.test_audit import _boiler_lifecycle, _lifecycle

ROOT = Path(__file__).resolve().parents[1]


# --- pure -------------------------------------------------------------------------------------------
def test_each_revision_carries_the_head_of_its_chain():
    from schemas.events import Alert, DisposalFeedback  # noqa: F401 - the model the revisions are

    aid, _, rows, st = _lifecycle()
    oa = next(iter(st.alerts.values()), None)
    if oa is not None:  # still open: its head is the last row
        assert (oa.lc.revision, oa.chain) == (rows[-1]["seq"], rows[-1]["hash"])
    older = Alert.model_validate({k: v for k, v in _an_alert().items() if k not in ("chain_seq", "chain_hash")})
    assert (older.chain_seq, older.chain_hash) == (0, "")  # messages from before still validate


def _an_alert() -> dict:
    from datetime import UTC, datetime

    from riskwatch.domain.county import load_county
    from schemas.events import SensorReading
    from streams.engine.dispatch import Processor
    from streams.engine.state import EntityState

    p, st = Processor.from_county(load_county()), EntityState()
    out = p.process(
        SensorReading(
            event_id="s1",
            entity_id="B9",
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            source="iot",
            device_id="b1",
            channel="boiler_pressure",
            value=1.6,
            unit="MPa",
        ),
        st,
        ("s", 0, 1),
    )
    a = out.alerts[-1]
    last = out.transitions[-1]
    assert (a.chain_seq, a.chain_hash) == (last["seq"], last["hash"]) and a.chain_seq > 0
    return orjson.loads(a.model_dump_json())


def test_head_findings_name_deleted_rewritten_and_inserted_rows():
    rows = [{"seq": s, "hash": f"h{s}"} for s in range(1, 20)]
    heads = {"A": Head(7, 21, "h21", "ClickHouse alerts")}
    (f,) = head_findings(heads, {"A": rows})
    assert f.what.startswith("revision 7 (ClickHouse alerts) says the head is seq 21; the history ends at 19")
    (f,) = head_findings({"A": Head(7, 19, "x19", "alerts.all on Kafka")}, {"A": rows})
    assert "recomputed" in f.what
    (f,) = head_findings({"A": Head(7, 18, "h18", "ClickHouse alerts")}, {"A": rows})
    assert "inserted" in f.what and f.seq == 19
    assert head_findings({"A": Head(7, 19, "h19", "ClickHouse alerts")}, {"A": rows}) == []
    assert latest_heads(
        [
            {"alert_id": "A", "revision": 3, "chain_seq": 5, "chain_hash": "h5"},
            {"alert_id": "A", "revision": 4, "chain_seq": 0, "chain_hash": ""},
        ],
        "x",
    ) == {"A": Head(3, 5, "h5", "x")}


def test_anchor_copies_that_disagree_are_named():
    from schemas.audit import merkle_root

    leaves = (("A", 3, "h3"),)
    good = merkle_root(leaves)
    k = Anchor(0, 1000, good, leaves, "kafka")
    forged = Anchor(0, 1000, merkle_root((("A", 3, "f3"),)), (("A", 3, "f3"),), "clickhouse")
    heads = {("A", 3): {"f3"}}  # the history as the forger left it
    lines = [f.what for f in anchor_findings([k, forged], heads)]
    assert any("ClickHouse audit_anchors" in x and "disagrees" in x for x in lines), lines
    assert any("audit.anchors on Kafka" in x and "another hash" in x for x in lines), lines
    assert anchor_findings([forged], heads) == []  # ClickHouse alone agrees with itself
    lines = [f.what for f in anchor_findings([Anchor(0, 1000, good, leaves, "city")], {("A", 3): {"h3"}})]
    assert len(lines) == 1 and "the city's copy" in lines[0] and "missing from audit.anchors on Kafka" in lines[0]


def test_only_the_worker_may_write_the_anchors_topic():
    import importlib.util

    spec = importlib.util.spec_from_file_location("apply_acls", ROOT / "deploy/kafka/apply_acls.py")
    acls = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("apply_acls", acls)  # its dataclasses look their module up
    spec.loader.exec_module(acls)
    plan = acls.plan(ROOT / "deploy/kafka/acls.yaml")
    declared = yaml.safe_load((ROOT / "deploy/kafka/acls.yaml").read_text(encoding="utf-8"))["audit"]
    topic = declared["anchors_topic"]

    def grants(op: str) -> set[str]:
        return {
            b.user
            for b in plan.bindings
            if b.resource == "topic"
            and b.operation in (op, "all")
            and (b.name == topic if b.pattern == "literal" else topic.startswith(b.name))
        }

    assert grants("write") == set(declared["writers"]) == {"riskwatch"}
    assert grants("read") == set(declared["readers"])


# --- the real worker --------------------------------------------------------------------------------
FORGE = textwrap.dedent("""
    import sys
    from schemas.audit import canonical, chain_hash, merkle_root
    from sinks.clickhouse import make_client
    url, a, b, c = sys.argv[1:5]
    ch = make_client(url)
    sync = {"mutations_sync": 2}
    db = "riskwatch"
    # 1. the newest two rows of a's chain deleted
    top = ch.query(f"SELECT max(seq) FROM {db}.alert_history WHERE alert_id = '{a}'").result_rows[0][0]
    ch.command(f"ALTER TABLE {db}.alert_history DELETE WHERE alert_id = '{a}' AND seq > {top - 2}", settings=sync)
    # 2. a middle row of b's chain deleted
    ch.command(f"ALTER TABLE {db}.alert_history DELETE WHERE alert_id = '{b}' AND seq = 3", settings=sync)
    # 3. c's row seq 2 edited, and every hash after it recomputed: history, revisions, ClickHouse's anchors
    cols = ("alert_id, seq, entity_id, toUnixTimestamp64Milli(at) AS at_ms, kind, from_status, to_status, actor, "
            "comment, prev_hash, hash")
    res = ch.query(f"SELECT {cols} FROM {db}.alert_history WHERE alert_id = '{c}' ORDER BY seq")
    rows = [dict(zip(res.column_names, r)) for r in res.result_rows]
    new, prev = {}, rows[0]["hash"]
    for r in rows[1:]:
        if r["seq"] == 2:
            r["comment"] = "已按规定处置完毕(改写)"
        h = chain_hash(prev, r)
        new[r["hash"]] = h
        ch.command(f"ALTER TABLE {db}.alert_history UPDATE comment = '{r['comment']}', prev_hash = '{prev}', "
                   f"hash = '{h}' WHERE alert_id = '{c}' AND seq = {r['seq']}", settings=sync)
        prev = h
    for old, h in new.items():
        ch.command(f"ALTER TABLE {db}.alerts UPDATE chain_hash = '{h}' WHERE alert_id = '{c}' AND chain_hash = '{old}'",
                   settings=sync)
    res = ch.query(f"SELECT partition, toUnixTimestamp64Milli(anchored_at), leaf_alert_ids, leaf_seqs, leaf_hashes "
                   f"FROM {db}.audit_anchors FINAL")
    n = 0
    for p, at_ms, ids, seqs, hashes in res.result_rows:
        hashes = [new.get(h, h) for h in hashes]
        leaves = sorted(zip(ids, seqs, hashes))
        rec = {"format": "riskwatch.anchor/1", "partition": p, "anchored_at_ms": at_ms, "app_id": "",
               "size": len(leaves), "leaves": [list(x) for x in leaves], "root": merkle_root(leaves)}
        arr = "[" + ",".join(f"'{h}'" for _, _, h in leaves) + "]"
        ch.command(f"ALTER TABLE {db}.audit_anchors UPDATE root = '{rec['root']}', leaf_hashes = {arr}, "
                   f"record = '{canonical(rec).decode()}' WHERE partition = {p} AND "
                   f"toUnixTimestamp64Milli(anchored_at) = {at_ms}", settings=sync)
        n += 1
    print(n, len(new))
    ch.close()
""")


def _cli(p, *args, timeout=240, env=None):
    env = {**os.environ, **settings_env(p.settings), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "riskwatch.cli.main", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(420)
def test_deletions_and_a_recomputed_chain_are_found(pipeline):
    p = pipeline
    # the hourly anchor never comes during the test: the anchors are the shutdown's
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5, audit_anchor_seconds=3600.0)
    ents = ["E-av1", "E-av2", "E-av3"]
    fired = _boiler_lifecycle(p, ents, F.BASE)
    ids = set(fired.values())
    p.wait_consumed(timeout=120, topics=[T.ALERT_EVENTS, T.ALERTS_ALL])
    heads = wait_for(
        lambda: (
            (
                r := w.query(
                    "SELECT a.alert_id AS alert_id, a.s AS s, h.top AS top FROM "
                    "(SELECT alert_id, max(chain_seq) AS s FROM riskwatch.alerts GROUP BY alert_id) AS a "
                    "JOIN (SELECT alert_id, max(seq) AS top FROM riskwatch.alert_history GROUP BY alert_id) AS h "
                    "USING alert_id"
                )
            )
            and {x["alert_id"] for x in r if x["s"] == x["top"] and x["s"] >= 4} >= ids
            and r
        ),
        60,
        "every revision's chain head stored with its history",
    )
    assert heads
    msgs = [orjson.loads(v) for _, v in p.read_topic("alerts.all")]
    assert all(m["chain_seq"] > 0 and len(m["chain_hash"]) == 64 for m in msgs if m["alert_id"] in ids)
    assert p.read_topic("audit.anchors") == []  # nothing anchored yet: the period is an hour

    w.stop()
    anchors = [orjson.loads(v) for _, v in p.read_topic("audit.anchors")]
    assert ids <= {x[0] for a in anchors for x in a["leaves"]}, anchors  # anchored on shutdown

    r = _cli(p, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout and "3 alert chains" in r.stdout and "from audit.anchors on Kafka" in r.stdout

    # the city's copy (here a topic of the same broker under the name MirrorMaker 2 gives it on the city)
    from kafka.admin import KafkaAdminClient, NewTopic

    from riskwatch.tools.citylink.topics import city_remote_topic

    city_topic = city_remote_topic(p.settings, "audit.anchors")
    admin = KafkaAdminClient(**p.settings.kafka_kwargs())
    admin.create_topics([NewTopic(city_topic, 1, 1)])
    admin.close()
    for k, v in p.read_topic("audit.anchors"):
        p.producer.send(city_topic, key=k, value=v)
    p.flush()
    city = {"RISKWATCH_CITYLINK_CITY_BOOTSTRAP": p.settings.kafka_bootstrap}
    r = _cli(p, "audit", "verify", "--city", env=city)
    assert r.returncode == 0 and f"{len(anchors)} from the city's copy of audit.anchors" in r.stdout, (
        r.stdout + r.stderr
    )

    a, b, c = (fired[e] for e in ents)
    t = subprocess.run(
        [sys.executable, "-c", FORGE, p.settings.clickhouse_url, a, b, c],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ},
    )
    assert t.returncode == 0, t.stderr
    assert int(t.stdout.split()[0]) >= 1  # ClickHouse's anchors were rewritten too

    r = _cli(p, "audit", "verify")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("BROKEN")]
    assert "Traceback" not in r.stderr
    assert any(f"alert {a} " in x and "says the head is seq" in x and "the history ends at" in x for x in lines), lines
    assert any(f"alert {b} seq 3:" in x and "missing" in x and "deleted" in x for x in lines), lines
    forged = [x for x in lines if f"alert {c} " in x or "disagrees" in x]
    assert any("audit.anchors on Kafka" in x and "another hash" in x for x in forged), lines
    assert any("ClickHouse audit_anchors" in x and "disagrees" in x for x in forged), lines

    # ClickHouse alone: the deletions are still found, the recomputed chain is not
    r = _cli(p, "audit", "verify", "--no-kafka")
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("BROKEN")]
    assert any(f"alert {a} " in x for x in lines) and any(f"alert {b} " in x for x in lines), lines
    assert not any(c in x or "disagrees" in x for x in lines), lines

    # the city's copy alone (Kafka off) also shows the recomputed chain
    r = _cli(p, "audit", "verify", "--no-kafka", "--city", env=city)
    lines = [x for x in r.stderr.splitlines() if x.startswith("BROKEN")]
    assert any(f"alert {c} " in x and "the city's copy" in x and "another hash" in x for x in lines), lines
