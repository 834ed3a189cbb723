"""Faults on loopback with real processes: broker restart, a worker leaving a group of two."""

from __future__ import annotations

import orjson

from riskwatch.tools.broker import Broker
from riskwatch.tools.runner import group_assignment, wait_for
from tests import factories as F
from tests.conftest import free_port


def _alerts_by_entity(p) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for _, v in p.read_topic("alerts.all"):
        a = orjson.loads(v)
        out.setdefault(a["entity_id"], set()).add(a["alert_id"])
    return out


def test_broker_stopped_and_restarted_mid_stream_worker_recovers_by_itself(pipeline):
    p = pipeline
    p.start_worker()
    # fully started = it holds its partitions (a worker that loses the broker *during* start-up
    # exits and is restarted by its supervisor: compose `restart: unless-stopped`)
    wait_for(lambda: (g := group_assignment(p.settings)) and all(g.values()), 120, "the worker to hold its partitions")
    ents = [f"E-b{i}" for i in range(10)]
    for e in ents:
        p.send("events.registry", F.registered(e))
    sent = []
    for _k in range(10):
        for e in ents:
            ev = F.sensor(e, 3.0)
            sent.append(ev["event_id"])
            p.send("events.sensor", ev)
    p.flush()
    broker = Broker(p.settings)
    broker.stop()
    assert broker.pid() is None
    broker.start()
    from kafka import KafkaProducer

    p.producer.close()
    p.producer = KafkaProducer(bootstrap_servers=p.settings.kafka_bootstrap, acks="all", linger_ms=5)
    for _k in range(10):
        for e in ents:
            ev = F.sensor(e, 3.0)
            sent.append(ev["event_id"])
            p.send("events.sensor", ev)
    p.flush()
    p.wait_consumed(timeout=240)
    assert p.worker.proc.poll() is None, "the worker died instead of reconnecting"
    r = wait_for(
        lambda: (
            (x := p.worker.query("SELECT uniqExact(event_id) AS u, count() AS n FROM riskwatch.events_sensor FINAL"))
            and x[0]["u"] == len(sent)
            and x
        ),
        60,
        "every event in ClickHouse",
    )
    assert r[0]["n"] == len(sent)


def test_two_workers_share_partitions_and_one_takes_over_when_the_other_leaves(pipeline, tmp_path):
    p = pipeline
    a = p.start_worker()
    b = p.start_worker(
        web_port=free_port(), clickhouse_url=f"chdb://{tmp_path / 'clickhouse-b'}", state_dir=tmp_path / "state-b"
    )
    seen: list = []

    def settled() -> bool:  # both hold input partitions, and the assignment held for 3 polls
        g = group_assignment(p.settings)
        seen.append(tuple(sorted(g.items())) if len(g) == 2 and all(g.values()) else None)
        return len(seen) >= 3 and seen[-1] is not None and seen[-1] == seen[-2] == seen[-3]

    wait_for(settled, 120, "both workers to hold input partitions, stably", interval=1.0)
    ents = [f"E-w{i}" for i in range(24)]
    for e in ents:
        p.send("events.registry", F.registered(e))
    p.flush()
    p.wait_consumed(timeout=240)
    for e in ents:  # every entity opens one cold-chain alert
        p.send("events.sensor", F.sensor(e, 35.0, channel="storage_temp"))
    p.flush()
    p.wait_consumed()
    n_a = wait_for(
        lambda: (r := a.query("SELECT count() AS n FROM riskwatch.events_registry FINAL")) and r[0]["n"],
        30,
        "worker A rows",
    )
    n_b = wait_for(
        lambda: (r := b.query("SELECT count() AS n FROM riskwatch.events_registry FINAL")) and r[0]["n"],
        30,
        "worker B rows",
    )
    assert n_a + n_b == len(ents) and n_a > 0 and n_b > 0, (n_a, n_b)  # the load was shared
    before = _alerts_by_entity(p)
    assert all(len(before[e]) == 1 for e in ents)

    assert b.stop() is not None  # B leaves the group cleanly; A takes its partitions and their state
    for e in ents:  # the breach goes on: with B's state restored on A, no entity gets a second alert
        p.send("events.sensor", F.sensor(e, 36.0, channel="storage_temp"))
    p.flush()
    p.wait_consumed(timeout=180)
    after = _alerts_by_entity(p)
    assert all(after[e] == before[e] for e in ents), {e: (before[e], after[e]) for e in ents if after[e] != before[e]}
    n = wait_for(
        lambda: (
            (r := a.query("SELECT uniqExact(entity_id) AS n FROM riskwatch.events_sensor FINAL WHERE value = 36"))
            and r[0]["n"] == len(ents)
            and r
        ),
        60,
        "worker A to store every entity's second reading",
    )
    assert n[0]["n"] == len(ents)


def _metric(w, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample on the worker's /metrics (0 if absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{w.settings.web_host}:{w.settings.web_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if line.startswith("#") or sample.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            total += float(value)
    return total


def test_clickhouse_outage_applies_back_pressure_and_loses_nothing(pipeline, tmp_path):
    from riskwatch.tools.runner import consumer_lag
    from streams.runtime import topics as T

    p = pipeline
    down = tmp_path / "ch-down"  # fault injection: while it exists every insert fails as if ClickHouse were down
    w = p.start_worker(fault_clickhouse_down_file=down, sink_retry_max_seconds=1.0)
    count_sql = "SELECT count() AS n, uniqExact(event_id) AS u FROM riskwatch.events_sensor"
    ents = [f"E-o{i}" for i in range(6)]
    for e in ents:
        p.send("events.registry", F.registered(e))
    sent = [F.sensor(e, 3.0) for e in ents]
    for ev in sent:
        p.send("events.sensor", ev)
    p.flush()
    p.wait_consumed()
    wait_for(lambda: w.query(count_sql)[0]["n"] == len(sent), 60, "the first readings in ClickHouse")
    members = wait_for(lambda: group_assignment(p.settings), 60, "a stable consumer group")

    down.touch()  # ClickHouse "goes away"
    during = [F.sensor(e, 3.0) for _ in range(4) for e in ents]
    during += [F.sensor("E-o0", v) for v in (11.0, 11.5, 11.8)]  # cold chain breached and confirmed: an alert
    late = F.registered("E-o-late")
    for ev in during:
        p.send("events.sensor", ev)
    p.send("events.registry", late)
    p.flush()
    # held past the group session timeout (10 s) at ~1 retry/s (sink_retry_max_seconds=1)
    wait_for(
        lambda: _metric(w, "riskwatch_clickhouse_retries_total", operation="insert") >= 12,
        90,
        "the worker to keep retrying its inserts",
    )
    assert w.proc.poll() is None, "the worker died during the outage"
    log_text = (tmp_path / "worker-0.log").read_text(errors="replace")
    assert "ClickHouse unreachable" in log_text and "simulated outage" in log_text, log_text[-3000:]
    # back-pressure: nothing acknowledged that is not stored — every event of the outage still uncommitted
    inputs = [p.settings.topic(t) for t in T.INPUT_TOPICS]
    assert consumer_lag(p.settings, inputs) == len(during) + 1
    # reads keep working, and show nothing new: no insert got through
    assert w.query(count_sql)[0]["n"] == len(sent)
    assert w.query("SELECT count() AS n FROM riskwatch.alerts")[0]["n"] == 0
    assert group_assignment(p.settings) == members, "the consumer group rebalanced during the outage"

    down.unlink()  # ClickHouse is back
    p.wait_consumed()
    assert w.proc.poll() is None
    assert "is back: insert into" in (tmp_path / "worker-0.log").read_text(errors="replace")
    stored = wait_for(
        lambda: (r := w.query(count_sql)[0])["n"] >= len(sent) + len(during) and r, 60, "every event in ClickHouse"
    )
    assert stored == {
        "n": len(sent) + len(during),
        "u": len(sent) + len(during),
    }  # each exactly once, even without FINAL
    ids = {r["event_id"] for r in w.query("SELECT event_id FROM riskwatch.events_sensor")}
    assert ids == {ev["event_id"] for ev in sent + during}
    assert w.query("SELECT count() AS n FROM riskwatch.events_registry WHERE entity_id = 'E-o-late'")[0]["n"] == 1
    published = _alerts_by_entity(p)
    assert published.get("E-o0"), "the cold-chain breach raised no alert"
    stored_alerts = w.query("SELECT entity_id, alert_id FROM riskwatch.alerts FINAL")
    assert {(r["entity_id"], r["alert_id"]) for r in stored_alerts} == {
        (e, a) for e, ids_ in published.items() for a in ids_
    }
    assert group_assignment(p.settings) == members
