"""MirrorMaker 2 replication lag at a paced rate: ``riskwatch city-link bench --rate 1000 --seconds 30``.

Starts a local "city" broker on spare loopback ports (its own data directory under
``var/citylink-bench``), the bridge and MirrorMaker 2 with a fresh topic prefix, then produces
``rate`` alert-like records per second (with phone numbers to mask) to the county's
``alerts.all`` and records, for each, when it appears

* in the county's masked copy (the bridge's share), and
* on the city's remote topic (bridge + MirrorMaker 2: what the city platform sees),

measured from the producer's send time on the same clock. Prints one JSON object with
p50/p90/p99/max per stage, then tears everything down.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
from rich.progress import Progress

from riskwatch.settings import Settings
from riskwatch.tools.broker import Broker
from riskwatch.tools.citylink import (
    CityLink,
    city_remote_topic,
    city_settings,
    delete_run_topics,
    masked_topic,
    run_settings,
)
from riskwatch.tools.runner import wait_for


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _watch(bootstrap: str, topic: str, seen: dict[int, float], stop: threading.Event, ready: threading.Event) -> None:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        isolation_level="read_committed",
    )
    try:
        while not stop.is_set():
            parts = c.partitions_for_topic(topic)
            if parts:
                break
            time.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in parts or ()]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ready.set()
        while not stop.is_set():
            for recs in c.poll(timeout_ms=200).values():
                now = time.time()
                for r in recs:
                    with contextlib.suppress(Exception):  # not one of the bench's records
                        seen.setdefault(orjson.loads(r.value)["seq"], now)
    finally:
        c.close()


def _pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=100, method="inclusive")
    return {
        "p50_ms": round(q[49] * 1000, 1),
        "p90_ms": round(q[89] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(xs[-1] * 1000, 1),
    }


def run(settings: Settings, rate: int = 1000, seconds: int = 30, topic: str = "alerts.all") -> dict:
    from kafka.admin import NewTopic

    from kafka import KafkaAdminClient, KafkaProducer

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    run_id = uuid.uuid4().hex[:8]
    root = Path("var/citylink-bench").resolve() / run_id  # its own: another run may still be tearing down
    city = city_settings(settings, _free_port(), _free_port(), root / "city")
    s = run_settings(
        settings, city, run_id, prefix=f"bench{run_id}.", app_id=f"riskwatch-bench-{run_id}", link_dir=root / "link"
    )
    say(f"starting a city broker on {city.kafka_bootstrap} ...")
    Broker(city).start(log=say)
    link = CityLink(s)
    stop = threading.Event()
    try:
        admin = KafkaAdminClient(**s.kafka_kwargs())
        admin.create_topics([NewTopic(s.topic(t), s.partitions, s.replication) for t in (topic, "events.task.city")])
        admin.close()
        say(link.start(log=say))
        remote = city_remote_topic(s, topic)
        seen_copy: dict[int, float] = {}
        seen_city: dict[int, float] = {}
        ready = [threading.Event(), threading.Event()]
        threads = [
            threading.Thread(
                target=_watch, daemon=True, args=(s.kafka_bootstrap, masked_topic(s, topic), seen_copy, stop, ready[0])
            ),
            threading.Thread(
                target=_watch, daemon=True, args=(city.kafka_bootstrap, remote, seen_city, stop, ready[1])
            ),
        ]
        for t in threads:
            t.start()
        say("waiting for MirrorMaker 2 to create the city's remote topic ...")
        wait_for(
            lambda: all(r.is_set() for r in ready), 180, f"{remote} on the city; see {link.log_file('mirrormaker')}"
        )
        p = KafkaProducer(**s.kafka_kwargs(), acks="all", linger_ms=5)
        sent: dict[int, float] = {}
        warm = 200
        for i in range(-warm, 0):  # warm-up: connections and fetch sessions, not counted
            p.send(
                s.topic(topic), key=f"a{i % 97}".encode(), value=orjson.dumps({"seq": i, "message": "电话13812345678"})
            )
        p.flush()
        wait_for(lambda: len([k for k in seen_city if k < 0]) >= warm, 120, "the warm-up records on the city")
        n = rate * seconds
        with Progress(transient=False) as progress:
            task = progress.add_task(f"producing at {rate:,}/s", total=n)
            t0 = time.monotonic()
            for i in range(n):
                target = t0 + i / rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                now = time.time()
                sent[i] = now
                value = {"seq": i, "alert_id": f"a{i % 97}", "message": f"已联系投诉人13812345678 #{i}"}
                p.send(s.topic(topic), key=f"a{i % 97}".encode(), value=orjson.dumps(value))
                if i % rate == 0:
                    progress.update(task, completed=i)
            p.flush()
            progress.update(task, completed=n)
            achieved = n / (time.monotonic() - t0)
        p.close()
        say("waiting for every record on the city ...")
        wait_for(lambda: sum(1 for k in seen_city if k >= 0) >= n, 300, f"all {n} records on the city")
        lag_copy = [seen_copy[i] - sent[i] for i in range(n) if i in seen_copy]
        lag_city = [seen_city[i] - sent[i] for i in range(n)]
        out = {
            "rate_target": rate,
            "rate_achieved": round(achieved, 1),
            "events": n,
            "topic": topic,
            "county_to_masked_copy": _pct(lag_copy),
            "county_to_city": _pct(lag_city),
            "note": "lag = arrival seen by a consumer - producer send time, same host clock; shared 2-core machine",
        }
        print(json.dumps(out, ensure_ascii=False))
        return out
    finally:
        stop.set()
        say(link.stop())
        Broker(city).stop(timeout=10)
        delete_run_topics(s)
        shutil.rmtree(root, ignore_errors=True)
