"""Group state behind a repartition (township surges) and eviction of silent entities, on the real broker."""

from __future__ import annotations

import re
import urllib.request

import orjson

from riskwatch.tools.runner import wait_for
from tests import factories as F


def _metric(worker, name: str) -> float:
    with urllib.request.urlopen(
        f"http://{worker.settings.web_host}:{worker.settings.web_port}/metrics", timeout=10
    ) as r:
        m = re.search(rf"^{name} ([0-9.e+]+)$", r.read().decode(), flags=re.M)
    return float(m.group(1)) if m else 0.0


def test_township_surge_is_detected_through_a_group_by_repartition(pipeline):
    p = pipeline
    p.start_worker(township_surges=True)
    ents = [f"E-t{i}" for i in range(12)]
    for e in ents:
        p.send("events.registry", F.registered(e, kind="catering", township="文峰乡"))
    p.send("events.registry", F.registered("E-quiet", kind="catering", township="马村乡"))
    p.flush()
    p.wait_consumed()
    for _k in range(4):  # four hygiene complaints against each of twelve places in one township, at once
        for e in ents:
            p.send("events.complaint", F.complaint(e, "hygiene"))
    p.send("events.complaint", F.complaint("E-quiet", "hygiene"))
    p.flush()
    p.wait_consumed(topics=["events.complaint", "peer.signals"])
    notices = wait_for(
        lambda: [n for _, v in p.read_topic("notices") if (n := orjson.loads(v))["kind"] == "township_surge"],
        60,
        "a township_surge notice",
    )
    assert {n["township"] for n in notices} == {"文峰乡"}  # the quiet township raised nothing
    assert (
        notices[0]["departments"] == ["amr", "taskforce"] and notices[0]["score"] >= p.settings.township_surge_threshold
    )
    # the repartition topic exists: group state is keyed by township, not by entity
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**p.settings.kafka_kwargs())
    assert f"peers-{p.settings.topic('peer.signals')}-group-repartition" in admin.list_topics()
    admin.close()


def test_silent_entities_are_evicted(pipeline):
    p = pipeline
    # events are two days old (factories.BASE); a one-day TTL makes them silent at once
    w = p.start_worker(entity_ttl_days=1.0, eviction_interval_seconds=1.0)
    first = F.sensor("E-old", 3.0)
    for e in ("E-old", "E-old2"):
        p.send("events.registry", F.registered(e))
    p.flush()
    p.wait_consumed()
    wait_for(lambda: _metric(w, "riskwatch_evicted_entities_total") >= 2, 60, "two entities to be evicted")
    # the reading only now: sent with the registrations (another topic), it could be processed after a scan
    # that already evicted E-old's first state, and the count of two be reached with `first` still known
    p.send("events.sensor", first)
    p.flush()
    p.wait_consumed()
    wait_for(lambda: _metric(w, "riskwatch_evicted_entities_total") >= 3, 60, "E-old to be evicted again")
    # the worker says when it is ready (Faust's spinner no longer does)
    assert "started, state recovered, consuming" in w.log_path.read_text(errors="replace")
    # the event-loop lag probe runs (it would show an eviction scan holding the loop)
    assert wait_for(lambda: _metric(w, "riskwatch_event_loop_lag_seconds_count"), 10, "a loop-lag observation") >= 1
    # the state is gone: the same event_id is no longer known, so it is not a duplicate any more
    p.send("events.sensor", first)
    p.flush()
    p.wait_consumed()
    dead = [orjson.loads(v) for _, v in p.read_topic("deadletter")]
    assert not any("duplicate event_id" in d["error"] for d in dead)
