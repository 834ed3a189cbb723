"""`riskwatch bench`: end-to-end throughput against the machine's raw-consume ceiling.

1. Produce N simulated events (the simulator's realistic mix) to fresh topics.
2. Ceiling: a plain aiokafka consumer reads them all, no processing → ``raw_consume_eps``.
3. The full pipeline (a real worker process: validation, detectors, alerts, department topics,
   ClickHouse writes) consumes the same events → ``pipeline_eps`` (first offset committed →
   lag zero), worker peak RSS.
4. Latency at half the measured pipeline rate: events are produced at that rate with a share of
   alert-raising complaints on fresh entities; latency = the alert's Kafka timestamp on its
   department topic − the input event's Kafka timestamp → p50/p95/p99.
5. Model state: pickled bytes per sensor stream and per entity, from the same event stream.
Writes JSON with at least raw_consume_eps, pipeline_eps, ratio, latency_ms_p50, latency_ms_p99,
rss_mb, state_bytes_per_sensor, events, entities.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from rich.progress import Progress

from riskwatch.domain.catalog import load_catalog
from riskwatch.tools.runner import WorkerProcess, consumer_lag, wait_for
from riskwatch.settings import Settings
from riskwatch.tools.simulator import SimConfig, generate
from streams import topics as T

PROBE_EVERY = 50  # one latency probe (an alert-raising complaint) in this many events
LATENCY_EVENTS_MAX = 60_000  # the latency phase lasts 20 s at half the pipeline rate (at most this many)
BASE_ENTITIES = 1017  # entities of the simulator at scale 1


def _events(n: int, entities: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    now = datetime.now(timezone.utc)
    scale = max(entities / BASE_ENTITIES, 0.05)
    # enough simulated days to yield n events (~450k/day at scale 1)
    days = max(0.05, min(30.0, n / (450_000 * scale) * 1.3))
    cfg = SimConfig(seed=seed, days=days, scale=scale, bad_rate=0.0, start=now - timedelta(days=days + 0.5), now=now)
    evs = list(itertools.islice(generate(cfg), n))
    if len(evs) < n:
        raise SystemExit(f"simulator produced only {len(evs)} events; raise --entities or lower --events")
    return evs


def _produce(settings: Settings, evs, progress: Progress, rate: float | None = None) -> dict[str, float]:
    from kafka import KafkaProducer

    p = KafkaProducer(**settings.kafka_kwargs(), linger_ms=20, batch_size=262144,
                      compression_type="lz4", acks="all")
    task = progress.add_task("producing" if rate is None else f"producing at {rate:,.0f}/s", total=len(evs))
    sent_at: dict[str, float] = {}
    t0 = time.perf_counter()
    for i, (topic, key, value) in enumerate(evs):
        if rate:
            ahead = (i / rate) - (time.perf_counter() - t0)
            if ahead > 0:
                time.sleep(ahead)  # pacing the load generator, not synchronisation
        p.send(settings.topic(topic), key=key, value=value)
        if i % 2000 == 0:
            progress.update(task, completed=i)
    p.flush(60)
    p.close()
    progress.update(task, completed=len(evs))
    return sent_at


async def _raw_consume(settings: Settings, n: int) -> float:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(*(settings.topic(t) for t in T.INPUT_TOPICS), bootstrap_servers=settings.kafka_bootstrap,
                         group_id=f"{settings.app_id}-raw", auto_offset_reset="earliest", enable_auto_commit=False,
                         max_poll_records=5000, fetch_max_bytes=52428800)
    await c.start()
    got = 0
    t0 = None
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            for recs in batch.values():
                if t0 is None and recs:
                    t0 = time.perf_counter()
                got += len(recs)
        return got / (time.perf_counter() - t0)
    finally:
        await c.stop()


def _faust_floor(settings: Settings, n: int, stock: bool) -> int:
    """events/s of a do-nothing Faust agent on the benchmark topics (``riskwatch.tools.bench.floor``)."""
    import subprocess

    cmd = [sys.executable, "-m", "riskwatch.tools.bench.floor", "--events", str(n), "--bootstrap", settings.kafka_bootstrap]
    for t in T.INPUT_TOPICS:
        cmd += ["--topic", settings.topic(t)]
    if stock:
        cmd.append("--stock")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in reversed((out.stdout + "\n" + out.stderr).splitlines()):
        if '"faust_floor_eps"' in line:
            return json.loads(line[line.index("{"):])["faust_floor_eps"]
    raise SystemExit(f"the Faust floor run failed (exit {out.returncode}): {out.stderr[-2000:]}")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all threads)."""
    import os

    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _host_busy() -> float:
    """CPU seconds all cores of this machine have been busy (from /proc/stat)."""
    import os

    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in f]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _state_sizes(evs) -> tuple[float, float]:
    from riskwatch.domain.county import load_county
    from schemas.events import DeadLetter
    from streams.ingest import Decoder
    from streams.processor import Processor
    from streams.state import EntityState
    import pickle

    county = load_county()
    dec, proc = Decoder(county.catalog), Processor.from_county(county)
    states: dict[bytes, EntityState] = {}
    for i, (topic, key, value) in enumerate(evs[:200_000]):
        ev = dec.decode(topic, 0, i, key, value)
        if not isinstance(ev, DeadLetter):
            proc.process(ev, states.setdefault(key, EntityState()), (topic, 0, i))
    sensors = [len(pickle.dumps(d, protocol=5)) for st in states.values() for d in st.sensors.values()]
    per_entity = [len(st.dumps()) for st in states.values()]
    return statistics.median(sensors) if sensors else 0.0, statistics.median(per_entity)


def with_probes(evs: list, run_id: str) -> list:
    """The events with every PROBE_EVERY-th replaced by an alert-raising complaint on a fresh entity
    (keys ``P<run_id>…``): the latency probes of ``run`` and of ``riskwatch bench-paced --probes``."""
    out = []
    for i, (topic, key, value) in enumerate(evs):
        if i % PROBE_EVERY == 0:
            eid = f"P{run_id}{i:07d}"
            out.append(("events.complaint", eid.encode(), orjson.dumps({
                "event_id": f"probe-{run_id}-{i}", "entity_id": eid, "occurred_at": datetime.now(timezone.utc).isoformat(),
                "source": "bench", "channel": "12315", "category": "food_poisoning", "text": "bench"})))
        else:
            out.append((topic, key, value))
    return out


def _metric_samples(s: Settings) -> list:
    """The worker's /metrics as prometheus_client samples (name, labels, value); [] if unreachable."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(f"http://{s.web_host}:{s.web_port}/metrics", timeout=10).read().decode()
    except OSError:
        return []
    return [x for family in text_string_to_metric_families(text) for x in family.samples]


def _batch_metrics(s: Settings) -> dict:
    """Where the time went, from the worker's /metrics after the throughput phase: batches and mean
    events and ms per batch (processing and publishing alerts), commits and mean events and ms per
    commit (ClickHouse rows, changelog, acknowledgements; in the background)."""
    m: dict[str, float] = {}
    for x in _metric_samples(s):
        if x.name == "riskwatch_events_total":
            m["events"] = m.get("events", 0.0) + x.value
        elif x.name in ("riskwatch_gc_pause_seconds_sum", "riskwatch_gc_pause_seconds_count"):
            m[x.name + x.labels["generation"]] = x.value
        elif x.name in ("riskwatch_batch_seconds_count", "riskwatch_batch_seconds_sum", "riskwatch_commit_seconds_count",
                        "riskwatch_commit_seconds_sum", "riskwatch_committed_events_total"):
            m[x.name] = x.value
    n = m.get("riskwatch_batch_seconds_count", 0.0)
    c = m.get("riskwatch_commit_seconds_count", 0.0)
    if not n or not c:
        return {}
    return {"batches": int(n), "batch_events_mean": round(m.get("events", 0.0) / n),
            "batch_ms_mean": round(1000 * m["riskwatch_batch_seconds_sum"] / n, 1),
            "commits": int(c), "commit_events_mean": round(m.get("riskwatch_committed_events_total", 0.0) / c),
            "commit_ms_mean": round(1000 * m["riskwatch_commit_seconds_sum"] / c, 1),
            "gc_full_collections": int(m.get("riskwatch_gc_pause_seconds_count2", 0)),
            "gc_full_ms_mean": round(1000 * m.get("riskwatch_gc_pause_seconds_sum2", 0.0) / max(1.0, m.get("riskwatch_gc_pause_seconds_count2", 0.0)), 1)}


def _histogram(s: Settings, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts from the worker's /metrics: {upper bound: count}."""
    return {float(x.labels["le"]): x.value for x in _metric_samples(s) if x.name == name + "_bucket"}


def _loop_lag(before: dict[float, float], after: dict[float, float]) -> dict:
    """Event-loop lag in a phase, from the histogram's buckets: p99 (as its bucket's upper bound, in
    ms) and how many 0.25 s probes woke more than 100 ms late."""
    d = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    n = d.get(float("inf"), 0.0)
    if not n:
        return {}
    p99 = next(le for le in sorted(d) if d[le] >= 0.99 * n)
    return {"latency_phase_loop_lag_ms_p99": None if p99 == float("inf") else round(p99 * 1000),
            "latency_phase_loop_lag_over_100ms": int(n - d.get(0.1, 0.0)),
            "latency_phase_loop_lag_probes": int(n)}


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run(base: Settings, events: int, entities: int, out: Path, seed: int = 7, partitions: int = 4) -> dict:
    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="riskwatch-bench-"))
    s = base.model_copy(update=dict(topic_prefix=f"bench{run_id}.", app_id=f"riskwatch-bench-{run_id}",
                                    clickhouse_url=f"chdb://{tmp / 'clickhouse'}", state_dir=tmp / "state",
                                    partitions=partitions, web_port=base.web_port + 7))
    T.ensure_topics(s, load_catalog(s.catalog_path))
    print(f"generating {events:,} simulated events for ~{entities:,} entities ...", file=sys.stderr)
    # the latency phase continues the same simulated stream (later readings of the same entities)
    # rather than replaying phase 1's: detectors see events in order, as in production
    evs = _events(events + LATENCY_EVENTS_MAX, entities, seed)
    evs, later = evs[:events], evs[events:]
    n_entities = len({k for _, k, _ in evs})
    result: dict = {"events": len(evs), "entities": n_entities, "partitions": partitions}
    with Progress(transient=False) as progress:
        _produce(s, evs, progress)
    print("raw consume (aiokafka, no processing) ...", file=sys.stderr)
    result["raw_consume_eps"] = round(asyncio.run(_raw_consume(s, len(evs))))
    print(f"  {result['raw_consume_eps']:,} events/s", file=sys.stderr)
    for stock in (False, True):
        what = "Faust's own delivery loop" if stock else "with streams/faust_fastpath.py"
        print(f"Faust floor ({what}): a do-nothing Faust agent ...", file=sys.stderr)
        key = "faust_floor_stock_eps" if stock else "faust_floor_eps"
        result[key] = _faust_floor(s, len(evs), stock)
        print(f"  {result[key]:,} events/s", file=sys.stderr)

    worker = WorkerProcess(s, log_path=tmp / "worker.log").start()
    try:
        topics = [s.topic(t) for t in T.INPUT_TOPICS]
        first: list[float] = []
        cpu0: list[float] = []
        last_print = [0.0]

        def done() -> bool:
            lag = consumer_lag(s, topics)
            now = time.perf_counter()
            if lag is not None and lag < len(evs) and not first:
                first.append(now)
                cpu0.append(_cpu_seconds(worker.proc.pid))
            if now - last_print[0] > 5:
                print(f"  pipeline: {lag:,} events left", file=sys.stderr)
                last_print[0] = now
            return lag == 0

        t_ready = time.perf_counter()
        wait_for(done, timeout=3600, what="the worker to consume the benchmark events", interval=0.25)
        t_end = time.perf_counter()
        cpu_end = _cpu_seconds(worker.proc.pid)
        t_begin = first[0] if first else t_ready
        result["pipeline_eps"] = round(len(evs) / max(t_end - t_begin, 1e-6))
        result["pipeline_eps_incl_startup"] = round(len(evs) / (t_end - t_ready))
        result["ratio"] = round(result["pipeline_eps"] / result["raw_consume_eps"], 3)
        if result.get("faust_floor_eps"):
            result["ratio_to_faust_floor"] = round(result["pipeline_eps"] / result["faust_floor_eps"], 3)
        # worker CPU (all threads, user + system) per event: less sensitive than the rate to other
        # load on the machine (the rate is wall-clock and the worker shares the cores)
        if cpu0:
            result["worker_cpu_us_per_event"] = round((cpu_end - cpu0[0]) / len(evs) * 1e6, 1)
            result["worker_cpu_share"] = round((cpu_end - cpu0[0]) / max(t_end - t_begin, 1e-6), 2)
        result.update(_batch_metrics(s))
        print(f"  pipeline {result['pipeline_eps']:,} events/s (ratio {result['ratio']})", file=sys.stderr)

        # latency at half the pipeline rate: realistic events + alert-raising complaints on fresh entities
        rate = max(100.0, result["pipeline_eps"] / 2)
        n_lat = int(min(len(later), rate * 20))
        mix = with_probes(later[:n_lat], run_id)
        cpu_l0, t_l0, host_l0 = _cpu_seconds(worker.proc.pid), time.perf_counter(), _host_busy()
        lag0 = _histogram(s, "riskwatch_event_loop_lag_seconds")
        with Progress(transient=False) as progress:
            _produce(s, mix, progress, rate=rate)
        t_sent = time.perf_counter()
        wait_for(lambda: consumer_lag(s, topics) == 0, timeout=600, what="the latency phase to be consumed")
        # how long the worker needed after the last event was sent: ~0 when it kept up with the rate
        result["latency_phase_drain_s"] = round(time.perf_counter() - t_sent, 2)
        # the load generator and the broker share the machine's cores with the worker in this phase
        wall_l = time.perf_counter() - t_l0
        result["latency_phase_worker_cpu_us_per_event"] = round((_cpu_seconds(worker.proc.pid) - cpu_l0) / len(mix) * 1e6, 1)
        result["latency_phase_host_busy_cores"] = round((_host_busy() - host_l0) / wall_l, 2)
        result.update(_loop_lag(lag0, _histogram(s, "riskwatch_event_loop_lag_seconds")))
        lat = _probe_latencies(s, run_id)
        result.update(latency_rate_eps=round(rate), latency_samples=len(lat),
                      latency_ms_p50=round(_percentile(lat, 0.50), 1), latency_ms_p95=round(_percentile(lat, 0.95), 1),
                      latency_ms_p99=round(_percentile(lat, 0.99), 1))
        result["rss_mb"] = round(_rss_mb(worker.proc.pid), 1)
    finally:
        worker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        T.delete_topics(s, [s.topic_prefix, s.app_id + "-", "riskwatch-floor-"])
    per_sensor, per_entity = _state_sizes(evs)
    result["state_bytes_per_sensor"] = round(per_sensor)
    result["state_bytes_per_entity"] = round(per_entity)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


def _probe_latencies(s: Settings, run_id: str) -> list[float]:
    """ms from each probe complaint's Kafka timestamp to its alert's timestamp on alerts.taskforce."""
    from riskwatch.tools.runner import read_all as read

    sent = {orjson.loads(r.value)["event_id"]: r.timestamp for r in read(s, s.topic("events.complaint"))
            if r.key and r.key.startswith(f"P{run_id}".encode())}
    lat = []
    for r in read(s, s.topic("alerts.taskforce")):
        a = orjson.loads(r.value)
        t0 = sent.get(a.get("source_event_id"))
        if t0 is not None and a.get("revision") == 1:
            lat.append(float(r.timestamp - t0))
    return lat
