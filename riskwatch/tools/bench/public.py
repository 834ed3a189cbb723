"""Anonymous load on the public pages vs the worker: ``python -m riskwatch.tools.bench.public``.

Options: ``[--clients 30 --seconds 60 --rate 300 --uncached]``.

Starts a fresh worker (embedded ClickHouse) and ``riskwatch web run`` on it, warms the worker with
simulated events, then runs two phases of ``seconds`` each while producing simulated events at
``rate`` per second:

1. quiet: nothing but the paced input;
2. loaded: ``clients`` anonymous clients request ``/public/spot-checks`` as fast as they are
   answered, each from its own address (``X-Forwarded-For`` through the trusted-proxy setting, so
   the per-address rate limit applies per visitor as in production);
3. with ``--uncached``: the same load on a second workbench with the cache and the rate limit off
   (what every anonymous request cost before): what the protection is worth.

Per phase it reports the worker's consumer lag (sampled each second: max and mean), the mean
ClickHouse commit (insert) time and the event-loop lag p99 from the worker's ``/metrics``, and the
clients' answers (200, of them "read" when that request read the store; 429); then the ratios of
loaded to quiet within the run. One JSON object on stdout. The visitors run in a niced child
process (their CPU would be on their own machines), the workbench at ``workbench_nice``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from riskwatch.settings import Settings, load_settings
from riskwatch.tools.bench import pipeline as B

WARM_EVENTS = 20_000


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(s: Settings) -> dict[str, float]:
    m: dict[str, float] = {}
    for x in B._metric_samples(s):
        if x.name in (
            "riskwatch_commit_seconds_sum",
            "riskwatch_commit_seconds_count",
            "riskwatch_sink_write_seconds_sum",
            "riskwatch_sink_write_seconds_count",
        ):
            m[x.name] = x.value
    return m


def _mean_ms(before: dict, after: dict, name: str) -> float | None:
    n = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    return round(1000 * (after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)) / n, 1) if n else None


def visitors(url: str, clients: int, seconds: float, nice: int = 10) -> None:
    """Child process: ``clients`` anonymous visitors, each from its own address, requesting the
    spot-check page as fast as it is answered for ``seconds``; prints the answers and how many
    were read from the store (``Cache-Status: …; fwd=miss``) as JSON. Runs niced: real visitors'
    CPU is on their own machines, not on the worker's host."""
    import os

    import httpx

    os.nice(nice)
    stop = time.monotonic() + seconds
    answers: dict[str, int] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30, headers={"x-forwarded-for": f"198.51.100.{i + 1}"}) as c:
            while time.monotonic() < stop:
                try:
                    r = c.get("/public/spot-checks")
                    key = f"{r.status_code}" + (" read" if "fwd=miss" in r.headers.get("cache-status", "") else "")
                except httpx.HTTPError:
                    key = "error"
                with lock:
                    answers[key] = answers.get(key, 0) + 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(answers))


def _phase(s: Settings, worker, name: str, evs, seconds: float, rate: float, url: str | None, clients: int) -> dict:
    from rich.progress import Progress

    from riskwatch.tools.runner import consumer_lag
    from streams.runtime import topics as T

    topics = [s.topic(t) for t in T.INPUT_TOPICS]
    stop = threading.Event()
    lags: list[int] = []

    def sample() -> None:
        while not stop.is_set():
            lag = consumer_lag(s, topics)
            if lag is not None:
                lags.append(lag)
            stop.wait(1.0)

    sampler = threading.Thread(target=sample)
    m0, loop0 = _metrics(s), B._histogram(s, "riskwatch_event_loop_lag_seconds")
    sampler.start()
    load = None
    if url:
        load = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from riskwatch.tools.bench.public import visitors; visitors({url!r}, {clients}, {seconds})",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
    t0 = time.perf_counter()
    with Progress(transient=True) as progress:
        B._produce(s, evs[: int(rate * seconds)], progress, rate=rate)
    time.sleep(max(0.0, seconds - (time.perf_counter() - t0)))
    answers = json.loads(load.communicate(timeout=120)[0]) if load else {}
    stop.set()
    sampler.join()
    m1, loop1 = _metrics(s), B._histogram(s, "riskwatch_event_loop_lag_seconds")
    out = {
        "phase": name,
        "lag_max": max(lags, default=None),
        "lag_mean": round(sum(lags) / len(lags), 1) if lags else None,
        "commit_ms_mean": _mean_ms(m0, m1, "riskwatch_commit_seconds"),
        "sink_write_ms_mean": _mean_ms(m0, m1, "riskwatch_sink_write_seconds"),
        "loop_lag_ms_p99": B._loop_lag(loop0, loop1).get("latency_phase_loop_lag_ms_p99"),
        "answers": dict(sorted(answers.items())),
    }
    print(
        f"  {name:<9} lag max {out['lag_max']} mean {out['lag_mean']}  commit {out['commit_ms_mean']} ms  "
        f"loop p99 {out['loop_lag_ms_p99']} ms  answers {out['answers']}",
        file=sys.stderr,
    )
    return out


def _web(s: Settings, env: dict, log: Path) -> subprocess.Popen:
    from riskwatch.tools.bench.web import _up
    from riskwatch.tools.runner import settings_env, wait_for

    with open(log, "ab") as out:  # the child writes to its own copy of the file descriptor
        p = subprocess.Popen(
            [sys.executable, "-m", "riskwatch.cli.main", "web", "run"],
            env={**env, **settings_env(s)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for(lambda: _up(f"http://127.0.0.1:{s.workbench_port}"), 60, "the workbench")
    return p


def _ratio(a, b):
    return round(a / b, 2) if a is not None and b else None


def run(base: Settings, clients: int, seconds: float, rate: float, uncached: bool, entities: int = 10_000) -> dict:
    from rich.progress import Progress

    from riskwatch.domain.catalog import load_catalog
    from riskwatch.tools.runner import (
        WorkerProcess,
        consumer_lag,
        settings_env,
        wait_for,
    )
    from streams.runtime import topics as T

    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="rw-publicbench-"))
    s = base.model_copy(
        update=dict(
            clickhouse_url=f"chdb://{tmp / 'ch'}",
            topic_prefix=f"pubbench{run_id}.",
            app_id=f"riskwatch-pubbench-{run_id}",
            web_port=_port(),
            workbench_port=_port(),
            workbench_dir=tmp / "web",
            state_dir=tmp / "state",
            workbench_trusted_proxy="127.0.0.1",
        )
    )
    env = {**os.environ, **settings_env(s)}
    procs: list[subprocess.Popen] = []
    worker = None
    phases = int(2 + uncached)
    try:
        T.ensure_topics(s, load_catalog(s.catalog_path))
        n = WARM_EVENTS + int(rate * seconds) * phases
        print(f"generating {n:,} simulated events ...", file=sys.stderr)
        evs = B._events(n, entities, 7)
        worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
        with Progress(transient=True) as progress:
            B._produce(s, evs[:WARM_EVENTS], progress)
        topics = [s.topic(t) for t in T.INPUT_TOPICS]
        wait_for(lambda: consumer_lag(s, topics) == 0, 600, "the worker to consume the warm-up events", interval=0.5)
        procs.append(_web(s, env, tmp / "web.log"))
        url = f"http://127.0.0.1:{s.workbench_port}"
        per = int(rate * seconds)
        rest = evs[WARM_EVENTS:]
        result: dict = {
            "clients": clients,
            "seconds": seconds,
            "rate_eps": rate,
            "note": "shared 2-core machine; quiet and loaded phases in one run, same worker",
        }
        quiet = _phase(s, worker, "quiet", rest[:per], seconds, rate, None, 0)
        loaded = _phase(s, worker, "loaded", rest[per : 2 * per], seconds, rate, url, clients)
        result["phases"] = [quiet, loaded]
        if uncached:
            raw = s.model_copy(
                update=dict(
                    workbench_port=_port(),
                    workbench_dir=tmp / "web-raw",
                    workbench_public_cache_seconds=0.0,
                    workbench_public_rate_per_minute=10**9,
                )
            )
            procs.append(_web(raw, env, tmp / "web-raw.log"))
            result["phases"].append(
                _phase(
                    s,
                    worker,
                    "uncached",
                    rest[2 * per : 3 * per],
                    seconds,
                    rate,
                    f"http://127.0.0.1:{raw.workbench_port}",
                    clients,
                )
            )
        for p in result["phases"][1:]:
            result[f"{p['phase']}_vs_quiet"] = {
                "lag_max": _ratio(p["lag_max"], quiet["lag_max"]),
                "lag_mean": _ratio(p["lag_mean"], quiet["lag_mean"]),
                "commit_ms_mean": _ratio(p["commit_ms_mean"], quiet["commit_ms_mean"]),
            }
        print(json.dumps(result))
        return result
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
        if worker is not None:
            worker.stop()
        T.delete_topics(s, [s.topic_prefix, s.app_id + "-"])
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=30, help="anonymous clients in the loaded phase")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    ap.add_argument("--rate", type=float, default=300.0, help="simulated input events per second during the phases")
    ap.add_argument("--uncached", action="store_true", help="add a phase on a workbench without cache and rate limit")
    a = ap.parse_args(argv)
    run(load_settings(), a.clients, a.seconds, a.rate, a.uncached)


if __name__ == "__main__":
    main()
