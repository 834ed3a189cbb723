"""Faults on loopback with real processes: broker restart, a worker leaving a group of two."""

from __future__ import annotations

import orjson

from riskwatch.broker import Broker
from riskwatch.runner import group_assignment, wait_for
from tests import factories as F


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
    for k in range(10):
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
    for k in range(10):
        for e in ents:
            ev = F.sensor(e, 3.0)
            sent.append(ev["event_id"])
            p.send("events.sensor", ev)
    p.flush()
    p.wait_consumed(timeout=240)
    assert p.worker.proc.poll() is None, "the worker died instead of reconnecting"
    r = wait_for(lambda: (x := p.worker.query("SELECT uniqExact(event_id) AS u, count() AS n FROM riskwatch.events_sensor FINAL"))
                 and x[0]["u"] == len(sent) and x, 60, "every event in ClickHouse")
    assert r[0]["n"] == len(sent)


def test_two_workers_share_partitions_and_one_takes_over_when_the_other_leaves(pipeline, tmp_path):
    p = pipeline
    a = p.start_worker()
    b = p.start_worker(web_port=p.settings.web_port + 1, clickhouse_url=f"chdb://{tmp_path / 'clickhouse-b'}",
                       state_dir=tmp_path / "state-b")
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
    n_a = wait_for(lambda: (r := a.query("SELECT count() AS n FROM riskwatch.events_registry FINAL")) and r[0]["n"], 30, "worker A rows")
    n_b = wait_for(lambda: (r := b.query("SELECT count() AS n FROM riskwatch.events_registry FINAL")) and r[0]["n"], 30, "worker B rows")
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
    n = wait_for(lambda: (r := a.query("SELECT uniqExact(entity_id) AS n FROM riskwatch.events_sensor FINAL WHERE value = 36"))
                 and r[0]["n"] == len(ents) and r, 60, "worker A to store every entity's second reading")
    assert n[0]["n"] == len(ents)
