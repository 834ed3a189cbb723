"""Worker cost at a fixed input rate: ``riskwatch bench-paced --rate 2000 --seconds 15 [--probes]``.

``riskwatch bench`` measures the most one worker does; this measures what a steady, paced load
costs it, split by thread — where "half the rate" spends its CPU. It warms a fresh worker with
simulated events for ~10k entities, then produces the next ``rate × seconds`` events at ``rate``
(``--probes``: one alert-raising complaint on a fresh entity in 50, as the bench's latency phase)
and prints one JSON object: worker cores and CPU per event, cores per thread group (the event
loop, aiokafka's consumer thread, ClickHouse's threads), and batches and commits from /metrics.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.progress import Progress

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.bench import pipeline as B
from riskwatch.tools.bench.threads import thread_cpu, thread_groups
from riskwatch.tools.runner import WorkerProcess, consumer_lag, wait_for
from streams.runtime import topics as T

WARM_EVENTS = 20_000


def run(
    base: Settings, rate: float, seconds: float, entities: int = 10_000, probes: bool = False, seed: int = 7
) -> dict:
    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="riskwatch-paced-"))
    s = base.model_copy(
        update=dict(
            topic_prefix=f"paced{run_id}.",
            app_id=f"riskwatch-paced-{run_id}",
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            web_port=base.web_port + 9,
        )
    )
    T.ensure_topics(s, load_catalog(s.catalog_path))
    n = int(rate * seconds)
    print(f"generating {WARM_EVENTS + n:,} simulated events for ~{entities:,} entities ...", file=sys.stderr)
    evs = B._events(WARM_EVENTS + n, entities, seed)
    warm, paced = evs[:WARM_EVENTS], evs[WARM_EVENTS:]
    if probes:
        paced = B.with_probes(paced, run_id)
    topics = [s.topic(t) for t in T.INPUT_TOPICS]
    worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
    try:
        with Progress(transient=False) as progress:
            B._produce(s, warm, progress)
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the warm-up events", interval=0.25)
        pid = worker.pid
        cpu0, threads0, m0, t0 = B._cpu_seconds(pid), thread_cpu(pid), B._batch_metrics(s), time.perf_counter()
        with Progress(transient=False) as progress:
            B._produce(s, paced, progress, rate=rate)
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the paced events", interval=0.25)
        wall = time.perf_counter() - t0
        cpu, threads1, m1 = B._cpu_seconds(pid) - cpu0, thread_cpu(pid), B._batch_metrics(s)
        result = {
            "rate_eps": rate,
            "events": len(paced),
            "probes": probes,
            "seconds": round(wall, 1),
            "worker_cores": round(cpu / wall, 3),
            "worker_cpu_us_per_event": round(cpu / len(paced) * 1e6, 1),
            **{f"cores_{k}": v for k, v in thread_groups(threads0, threads1, pid, wall).items()},
        }
        dn = m1.get("batches", 0) - m0.get("batches", 0)
        if dn:
            result["batches"] = dn
            result["batch_events_mean"] = round(len(paced) / dn)
        result["commits"] = m1.get("commits", 0) - m0.get("commits", 0)
    finally:
        worker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        T.delete_topics(s, [s.topic_prefix, s.app_id + "-"])
    print(json.dumps(result, indent=2))
    return result
