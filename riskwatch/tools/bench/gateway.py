"""``riskwatch gateway bench``: the HTTP ingest gateway with a worker running, on this machine.

Starts an isolated pipeline (own topic prefix, ClickHouse directory and state), a worker and a
gateway process, registers a source, and measures:

1. readings/s accepted in requests of 100 readings (4 client threads), with the gateway's CPU per
   reading (``/proc/<pid>/stat``) next to the worker's CPU per reading for the same readings;
2. single-event requests/s (4 client threads);
3. p50/p99 from a breaching boiler reading's POST to its alert on ``alerts.<dept>`` (fresh entities);
4. kill -9 of the gateway mid-run while a client re-posts every refused or unanswered request: readings
   in (answered 202) = readings stored (ClickHouse, counted without FINAL: no duplicates either).

Prints one JSON object and writes it to ``var/bench/gateway.json``. Not a timed test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from edge.gateway.keys import SourceStore
from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.bench.pipeline import _cpu_seconds
from riskwatch.tools.gateway_server import GatewayServer
from riskwatch.tools.runner import WaitTimeout, WorkerProcess, consumer_lag, read_all, wait_for
from streams.runtime import topics as T

THREADS = 4


def _reading(entity: str, i: int, run: str, value: float = 0.85, channel: str = "boiler_pressure") -> dict:
    at = datetime.now(UTC) - timedelta(seconds=30)
    return {
        "event_id": f"b{run}-{entity}-{i}",
        "entity_id": entity,
        "occurred_at": at.isoformat(),
        "source": "bench",
        "device_id": f"{entity}-BLR",
        "channel": channel,
        "value": value,
        "unit": "MPa",
    }


class Client:
    def __init__(self, url: str, key: str):
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.local = threading.local()

    def _c(self) -> httpx.Client:
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = httpx.Client(timeout=30)
        return c

    def post(self, kind: str, body: bytes) -> int:
        return self._c().post(f"{self.url}/v1/{kind}", content=body, headers=self.headers).status_code

    def post_until_accepted(self, kind: str, body: bytes, deadline: float) -> int:
        """Re-post on a refused connection, a timeout or a 503, as a vendor's retrying client does."""
        tries = 0
        while time.monotonic() < deadline:
            tries += 1
            try:
                code = self.post(kind, body)
                if code == 202:
                    return tries
            except httpx.HTTPError:
                self.local.c = None
            time.sleep(0.2)
        raise RuntimeError("the gateway did not accept a request within the deadline")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else float("nan")


def run(base: Settings, readings: int = 20_000, singles: int = 1_000, probes: int = 50, kill: bool = True) -> dict:
    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="riskwatch-gwbench-"))
    s = base.model_copy(
        update=dict(
            topic_prefix=f"gwb{run_id}.",
            app_id=f"riskwatch-gwb-{run_id}",
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            web_port=base.web_port + 11,
            gateway_dir=tmp / "gateway",
            gateway_port=base.gateway_port + 11,
            workbench_dir=tmp / "web",
        )
    )
    cat = load_catalog(s.catalog_path)
    T.ensure_topics(s, cat)
    topics = [s.topic(t) for t in T.INPUT_TOPICS]
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
    gw = GatewayServer(s)
    result: dict = {"host_cores": os.cpu_count()}
    try:
        log(gw.start(timeout=90))
        _, key = SourceStore.at(s.gateway_dir).add("bench", ("sensor", "registry"), rate=1e6)
        client = Client(gw.url, key)
        ents = [f"G{run_id}-{i}" for i in range(200)]

        # 1. readings in requests of 100
        bodies = [
            orjson.dumps([_reading(ents[(j * 100 + k) % len(ents)], j * 100 + k, run_id) for k in range(100)])
            for j in range(readings // 100)
        ]
        client.post("sensor", bodies[0])  # warm the producer's connection
        gpid = gw.pid()
        assert gpid is not None
        g0, w0, t0 = _cpu_seconds(gpid), _cpu_seconds(worker.pid), time.perf_counter()
        with ThreadPoolExecutor(THREADS) as ex:
            codes = list(ex.map(lambda b: client.post("sensor", b), bodies[1:]))
        wall = time.perf_counter() - t0
        g1 = _cpu_seconds(gpid)
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the readings", interval=0.25)
        w1 = _cpu_seconds(worker.pid)
        n = 100 * len(bodies[1:])
        result.update(
            batch_requests=len(codes),
            batch_refused=sum(c != 202 for c in codes),
            readings_per_s_batches_of_100=round(n / wall),
            gateway_cpu_us_per_reading=round((g1 - g0) / n * 1e6, 1),
            worker_cpu_us_per_reading=round((w1 - w0) / n * 1e6, 1),
        )
        log(f"batches: {result}")

        # 2. single-event requests
        ones = [orjson.dumps(_reading(ents[i % len(ents)], 10_000_000 + i, run_id)) for i in range(singles)]
        g0, t0 = _cpu_seconds(gpid), time.perf_counter()
        with ThreadPoolExecutor(THREADS) as ex:
            codes = list(ex.map(lambda b: client.post("sensor", b), ones))
        wall = time.perf_counter() - t0
        result.update(
            single_requests_per_s=round(singles / wall),
            single_refused=sum(c != 202 for c in codes),
            gateway_cpu_us_per_single_request=round((_cpu_seconds(gpid) - g0) / singles * 1e6, 1),
        )
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the singles", interval=0.25)

        # 3. POST → alert on alerts.<dept>: a breaching boiler reading on a fresh entity each
        reg = [
            {
                "event_id": f"reg{run_id}-{i}",
                "entity_id": f"P{run_id}-{i}",
                "occurred_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                "source": "bench",
                "action": "registered",
                "name": f"舞泉镇测试锅炉房{i}号",
                "kind": "special_equipment",
                "township": "舞泉镇",
            }
            for i in range(probes)
        ]
        assert client.post("registry", orjson.dumps(reg)) == 202
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the registry", interval=0.25)
        posted: dict[str, float] = {}
        for i in range(probes):
            ev = _reading(f"P{run_id}-{i}", i, run_id, value=1.6)
            posted[ev["event_id"]] = time.time() * 1000
            assert client.post("sensor", orjson.dumps([ev])) == 202
            time.sleep(0.2)
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the probes", interval=0.25)
        time.sleep(2)
        depts: set[str] = set()
        for r in read_all(s, s.topic("alerts.all")):
            a = orjson.loads(r.value)
            if a.get("source_event_id") in posted:
                depts.update(a.get("departments") or ())
        dept = next((d for d in sorted(depts) if d != "taskforce"), "taskforce")
        lat = []
        for r in read_all(s, s.topic(f"alerts.{dept}")):
            a = orjson.loads(r.value)
            t_post = posted.pop(a.get("source_event_id"), None)
            if t_post is not None:
                lat.append(r.timestamp - t_post)
        result.update(
            alert_departments=sorted(depts),
            alert_topic=f"alerts.{dept}",
            probes=probes,
            probe_alerts=len(lat),
            post_to_alert_ms_p50=_pct(lat, 0.5),
            post_to_alert_ms_p99=_pct(lat, 0.99),
        )
        log(f"latency: p50 {result['post_to_alert_ms_p50']} ms, p99 {result['post_to_alert_ms_p99']} ms")

        # 4. kill -9 of the gateway mid-run, a retrying client
        if kill:
            kbodies = [
                orjson.dumps(
                    [_reading(ents[k % len(ents)], 20_000_000 + j * 100 + k, f"k{run_id}") for k in range(100)]
                )
                for j in range(100)
            ]
            deadline = time.monotonic() + 300
            tries: list[int] = []

            def send_all() -> None:
                for b in kbodies:
                    tries.append(client.post_until_accepted("sensor", b, deadline))

            th = threading.Thread(target=send_all)
            th.start()
            while len(tries) < 30:
                time.sleep(0.05)
            pid = gw.pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            log(f"killed the gateway (pid {pid}) after {len(tries)} accepted requests; restarting it")
            time.sleep(1)
            log(gw.start(timeout=90))
            th.join()
            wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume", interval=0.25)
            q = (
                "SELECT count() AS n, uniqExact(event_id) AS u FROM riskwatch.events_sensor "
                f"WHERE event_id LIKE 'bk{run_id}-%'"
            )
            want = 100 * len(kbodies)
            with contextlib.suppress(WaitTimeout):  # report what was stored
                wait_for(lambda: (r := worker.query(q)) and r[0]["n"] >= want, 120, "stored readings", interval=1)
            time.sleep(2)
            r = worker.query(q) or [{"n": -1, "u": -1}]
            result.update(
                kill9_readings_in=want,
                kill9_rows_stored=r[0]["n"],
                kill9_distinct_stored=r[0]["u"],
                kill9_retried_requests=sum(t > 1 for t in tries),
            )
    finally:
        print(gw.stop(), file=sys.stderr)
        worker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path("var/bench/gateway.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


__all__ = ["run"]
