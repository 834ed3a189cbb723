"""Notification latency and completeness: ``riskwatch notify bench --rate 1000 --seconds 60``.

A fresh pipeline (own topic prefix, worker, embedded ClickHouse) with the demo's notification
stack (local Alertmanager, robot adapter, bridge, receiver sink; riskwatch/tools/notify_demo.py)
takes the county simulator at ``rate`` events/s for ``seconds`` — the demo's alert rate, deadlines
in simulated time (``lifecycle_clock=event``). Then it waits until every notification decided
(messages on ``alerts.<dept>``) has reached the sink, and prints one JSON object:

* ``event_to_receiver_s``: from the causing input event's Kafka timestamp to the receiver's HTTP
  request (webhook), p50/p90/p99/max, over notifications caused by an event (timer-caused ones —
  urging, escalation, pending periods ending — have no event);
* ``alert_to_receiver_s``: from the alert revision's Kafka timestamp to the receiver (the bridge,
  Alertmanager and the webhook: the delivery part alone), over every notification;
* ``event_to_alert_s``: the worker's part (event's Kafka timestamp to the alert revision's);
* ``decided`` and ``delivered`` notifications (deliveries to the departments' webhooks; robots and
  email are counted per channel in the table).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from rich.console import Console

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.notify_demo import DemoNotify
from riskwatch.tools.runner import WorkerProcess, consumer_lag, read_all, settings_env, wait_for
from streams.runtime import topics as T

console = Console(stderr=True)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(xs: list[float]) -> dict:
    """p50/p90/p99/max (seconds, 3 decimals) of a sample.

    >>> percentiles([0.1, 0.2, 0.3, 0.4])
    {'n': 4, 'p50': 0.2, 'p90': 0.4, 'p99': 0.4, 'max': 0.4}
    """
    if not xs:
        return {"n": 0}
    s = sorted(xs)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))], 3)  # nearest rank

    return {"n": len(s), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(s[-1], 3)}


def run(
    settings: Settings,
    rate: float = 1000.0,
    seconds: float = 60.0,
    scale: float = 0.5,
    seed: int = 7,
    out: Path = Path("var/bench/notify.json"),
) -> dict:
    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="riskwatch-bench-notify-"))
    am = _port()
    s = settings.model_copy(
        update=dict(
            topic_prefix=f"bn{run_id}.",
            app_id=f"riskwatch-bn-{run_id}",
            web_port=_port(),
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            lifecycle_clock="event",
            lifecycle_tick_seconds=2.0,
            alertmanager_port=am,
            alertmanager_url=f"http://127.0.0.1:{am}",
            alertmanager_data_dir=tmp / "am",
            robot_port=_port(),
            notify_port=_port(),
        )
    )
    catalog = load_catalog(s.catalog_path)
    T.ensure_topics(s, catalog)
    worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
    notify = None
    try:
        notify = DemoNotify(s, catalog, console, out_dir=tmp, show_per_department=0).start()
        console.print(f"simulating {seconds:.0f}s at {rate:.0f} events/s (seed {seed}, scale {scale}); logs in {tmp}")
        env = {**os.environ, **settings_env(s)}
        t0 = time.monotonic()
        sim = subprocess.run(
            [
                sys.executable,
                "-m",
                "riskwatch.cli.main",
                "simulate",
                "--duration",
                str(seconds),
                "--seed",
                str(seed),
                "--scale",
                str(scale),
                "--rate",
                str(rate),
                "--sample-minutes",
                "15",
                "--days",
                "3",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if sim.returncode != 0:
            raise SystemExit(f"riskwatch notify bench: the simulator failed ({sim.returncode}): {sim.stderr[-500:]}")
        sim_s = time.monotonic() - t0
        topics = [s.topic(t) for t in T.INPUT_TOPICS]
        wait_for(
            lambda: consumer_lag(s, topics) == 0, max(300.0, seconds * 5), "the worker to consume every event", 2.0
        )
        delivered, decided = notify.summary()
        events: dict[str, int] = {}
        n_events = 0
        for t in topics:
            for r in read_all(s, t):
                n_events += 1
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    events[orjson.loads(r.value)["event_id"]] = r.timestamp
        ev_lat, al_lat, worker_lat = [], [], []
        for req in notify.sink.ok("/hook/"):
            if req.path == "/hook/_ops":
                continue
            for a in req.body.get("alerts", []):
                ann = a.get("annotations", {})
                if "published_at_ms" in ann:
                    al_lat.append(req.at - int(ann["published_at_ms"]) / 1000)
                ts = events.get(ann.get("source_event_id", ""))
                if ts is not None:
                    ev_lat.append(req.at - ts / 1000)
                    if "published_at_ms" in ann:
                        worker_lat.append((int(ann["published_at_ms"]) - ts) / 1000)
        result = {
            "rate_target": rate,
            "events": n_events,
            "events_per_s": round(n_events / sim_s, 1),
            "seconds": round(sim_s, 1),
            "decided": decided,
            "delivered": delivered,
            "event_to_receiver_s": percentiles(ev_lat),
            "alert_to_receiver_s": percentiles(al_lat),
            "event_to_alert_s": percentiles(worker_lat),
            "note": "2-core machine shared with other work: absolute timings are noisy",
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return result
    finally:
        if notify is not None:
            notify.stop()
        worker.stop()
        from streams.runtime.topics import delete_topics

        delete_topics(s, [s.topic_prefix, s.app_id + "-"])
        shutil.rmtree(tmp, ignore_errors=True)
