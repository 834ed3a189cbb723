"""`riskwatch bench`: per-worker throughput, single readings and gateway batches, beside a peer.

1. Simulate N events (the simulator's realistic mix) and produce them once per mode to fresh
   topics: ``single`` (one reading per message) and ``batch`` (the same readings as gateway
   batches of K readings of one entity, ``schemas.events.SensorBatch``; other events unchanged).
2. Ceiling: a plain aiokafka consumer reads the first mode's messages, no processing.
3. Faust floor: a do-nothing Faust agent on each mode's topics (CPU per message), so that
   riskwatch's own CPU per reading = worker CPU per reading − floor CPU per message × messages/readings.
4. The full pipeline (a real worker process: validation, detectors, rules, fusion, lifecycle,
   routing, department topics, ClickHouse rows, changelog) consumes each mode's topics →
   ``readings_eps``, ``messages_eps`` (first committed offset → lag zero), CPU, peak RSS;
   optionally py-spy samples it (``--profile``).
5. Latency at half the single-message rate (alert-raising complaints on fresh entities; latency =
   the alert's Kafka timestamp on its department topic − the complaint's) → p50/p95/p99.
6. ``--recovery``: kill -9 of the worker after the last mode, a new worker restores the state from
   the changelog; time until an alert of a probe complaint flows, split into process start,
   restore and first alert.
7. Two workers (a new consumer group) share the last mode's partitions → ``two_workers_eps``.
8. The peer: a Quix Streams app (``riskwatch.tools.bench.peer``) on the same sensor topic runs
   riskwatch's ``SensorAnomaly`` per sensor stream with its state in Quix's RocksDB store →
   ``peer_readings_eps``, ``ratio_to_peer``.

Writes JSON (today's keys plus ``mode``, ``readings_eps``, ``messages_eps``, ``peer_readings_eps``,
``ratio_to_peer``, ``two_workers_eps``, ``recovery_s``, ``rss_mb_100k``; per mode under ``modes``)
and prints a table.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from rich.progress import Progress

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.bench.threads import thread_cpu, thread_groups
from riskwatch.tools.runner import WorkerProcess, consumer_lag, wait_for
from riskwatch.tools.simulator import SimConfig, generate
from riskwatch.tools.simulator.streams import wire_topic
from streams.runtime import topics as T

PROBE_EVERY = 50  # one latency probe (an alert-raising complaint) in this many events
LATENCY_EVENTS_MAX = 60_000  # the latency phase lasts 20 s at half the pipeline rate (at most this many)
BASE_ENTITIES = 1017  # entities of the simulator at scale 1
ROOT = Path(__file__).resolve().parents[3]


MIN_CPU_SECONDS = 5.0  # a worker phase shorter than this reports no own CPU (use more --events)


def _events(n: int, entities: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    now = datetime.now(UTC)
    scale = max(entities / BASE_ENTITIES, 0.05)
    # enough simulated days to yield n events (~450k/day at scale 1)
    days = max(0.05, min(30.0, n / (450_000 * scale) * 1.3))
    cfg = SimConfig(seed=seed, days=days, scale=scale, bad_rate=0.0, start=now - timedelta(days=days + 0.5), now=now)
    # as produced: an inspection result on its department's own topic (events.inspection.<dept>)
    evs = [(wire_topic(t, v), k, v) for t, k, v in itertools.islice(generate(cfg), n)]
    if len(evs) < n:
        raise SystemExit(f"simulator produced only {len(evs)} events; raise --entities or lower --events")
    return evs


def _produce(settings: Settings, evs, progress: Progress, rate: float | None = None) -> dict[str, float]:
    from kafka import KafkaProducer

    p = KafkaProducer(**settings.kafka_kwargs(), linger_ms=20, batch_size=262144, compression_type="lz4", acks="all")
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

    c = AIOKafkaConsumer(
        *(settings.topic(t) for t in T.INPUT_TOPICS),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_bytes=52428800,
    )
    await c.start()
    got = 0
    t0: float | None = None
    try:
        while got < n:
            batch = await c.getmany(timeout_ms=1000, max_records=5000)
            for recs in batch.values():
                if t0 is None and recs:
                    t0 = time.perf_counter()
                got += len(recs)
        if t0 is None:  # nothing to read (n <= 0)
            return 0.0
        return got / (time.perf_counter() - t0)
    finally:
        await c.stop()


def _faust_floor(settings: Settings, n: int, stock: bool) -> dict:
    """A do-nothing Faust agent on the benchmark topics (``riskwatch.tools.bench.floor``):
    ``{"faust_floor_eps": messages/s, "cpu_us_per_event": CPU µs per message}``."""
    import subprocess

    cmd = [
        sys.executable,
        "-m",
        "riskwatch.tools.bench.floor",
        "--events",
        str(n),
        "--bootstrap",
        settings.kafka_bootstrap,
    ]
    for t in T.INPUT_TOPICS:
        cmd += ["--topic", settings.topic(t)]
    if stock:
        cmd.append("--stock")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    for line in reversed((out.stdout + "\n" + out.stderr).splitlines()):
        if '"faust_floor_eps"' in line:
            return json.loads(line[line.index("{") :])
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
    import msgpack

    from riskwatch.domain.county import load_county
    from schemas.events import DeadLetter
    from streams.engine.dispatch import Processor
    from streams.engine.ingest import Batch, Decoder
    from streams.engine.state import EntityState

    county = load_county()
    dec, proc = Decoder(county.catalog), Processor.from_county(county)
    states: dict[bytes, EntityState] = {}
    for i, (topic, key, value) in enumerate(evs[:200_000]):
        ev = dec.decode(topic, 0, i, key, value)
        if not isinstance(ev, DeadLetter | Batch):  # single readings only (no gateway batches here)
            proc.process(ev, states.setdefault(key, EntityState()), (topic, 0, i))
    sensors = [len(msgpack.packb(d.to_data())) for st in states.values() for d in st.sensors.values()]
    per_entity = [len(st.dumps()) for st in states.values()]
    return statistics.median(sensors) if sensors else 0.0, statistics.median(per_entity)


def with_probes(evs: list, run_id: str) -> list:
    """The events with every PROBE_EVERY-th replaced by an alert-raising complaint on a fresh entity
    (keys ``P<run_id>…``): the latency probes of ``run`` and of ``riskwatch bench-paced --probes``."""
    out = []
    for i, (topic, key, value) in enumerate(evs):
        if i % PROBE_EVERY == 0:
            eid = f"P{run_id}{i:07d}"
            out.append(
                (
                    "events.complaint",
                    eid.encode(),
                    orjson.dumps(
                        {
                            "event_id": f"probe-{run_id}-{i}",
                            "entity_id": eid,
                            "occurred_at": datetime.now(UTC).isoformat(),
                            "source": "bench",
                            "channel": "12315",
                            "category": "food_poisoning",
                            "text": "bench",
                        }
                    ),
                )
            )
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
        elif x.name in (
            "riskwatch_batch_seconds_count",
            "riskwatch_batch_seconds_sum",
            "riskwatch_commit_seconds_count",
            "riskwatch_commit_seconds_sum",
            "riskwatch_committed_events_total",
        ):
            m[x.name] = x.value
    n = m.get("riskwatch_batch_seconds_count", 0.0)
    c = m.get("riskwatch_commit_seconds_count", 0.0)
    if not n or not c:
        return {}
    return {
        "batches": int(n),
        "batch_events_mean": round(m.get("events", 0.0) / n),
        "batch_ms_mean": round(1000 * m["riskwatch_batch_seconds_sum"] / n, 1),
        "commits": int(c),
        "commit_events_mean": round(m.get("riskwatch_committed_events_total", 0.0) / c),
        "commit_ms_mean": round(1000 * m["riskwatch_commit_seconds_sum"] / c, 1),
        "gc_full_collections": int(m.get("riskwatch_gc_pause_seconds_count2", 0)),
        "gc_full_ms_mean": round(
            1000
            * m.get("riskwatch_gc_pause_seconds_sum2", 0.0)
            / max(1.0, m.get("riskwatch_gc_pause_seconds_count2", 0.0)),
            1,
        ),
    }


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
    return {
        "latency_phase_loop_lag_ms_p99": None if p99 == float("inf") else round(p99 * 1000),
        "latency_phase_loop_lag_over_100ms": int(n - d.get(0.1, 0.0)),
        "latency_phase_loop_lag_probes": int(n),
    }


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def gateway_batches(evs: list, k: int) -> list:
    """The same events with the sensor readings grouped into gateway batches of ``k`` readings of one
    entity (the simulator's :class:`~riskwatch.tools.simulator.streams.GatewayBatcher`, no time limit)."""
    from riskwatch.tools.simulator.streams import GatewayBatcher

    g = GatewayBatcher(k, float("inf"))
    out: list = []
    for topic, key, value in evs:
        if topic == "events.sensor":
            out.extend(g.add(0.0, key, value))
        else:
            out.append((topic, key, value))
    out.extend(g.flush())
    return out


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (other engineers' workers share the machine)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _settings_for(base: Settings, tmp: Path, run_id: str, tag: str, partitions: int) -> Settings:
    return base.model_copy(
        update=dict(
            topic_prefix=f"bench{run_id}{tag}.",
            app_id=f"riskwatch-bench-{run_id}{tag}",
            clickhouse_url=f"chdb://{tmp / tag / 'clickhouse'}",
            state_dir=tmp / tag / "state",
            partitions=partitions,
            web_port=_free_port(),
        )
    )


def _worker_phase(
    s: Settings,
    n_readings: int,
    n_messages: int,
    tmp: Path,
    log: str,
    workers: int = 1,
    profile: float = 0.0,
    profile_out: Path | None = None,
) -> tuple[dict, list]:
    """Start ``workers`` worker processes on topics already full, wait until they consumed everything:
    readings/s and messages/s (first committed offset → lag zero), CPU per reading, peak RSS.
    ``profile`` > 0: py-spy samples the (first) worker that many seconds (``profile_out``)."""
    procs = []
    for i in range(workers):
        si = (
            s
            if i == 0
            else s.model_copy(
                update=dict(
                    web_port=_free_port(),
                    state_dir=Path(f"{s.state_dir}-{i}"),
                    clickhouse_url=f"{s.clickhouse_url}-{i}",
                )
            )
        )
        w = WorkerProcess(si, log_path=tmp / f"{log}-{i}.log", supervise=False)
        w._spawn()  # all at once: they share the partitions from the start
        procs.append(w)
    for w in procs:
        wait_for(w._ready, 180, f"the worker on port {w.settings.web_port} to answer /query; see {w.log_path}")
    topics = [s.topic(t) for t in T.INPUT_TOPICS]
    first: list[float] = []
    cpu0: list[float] = []
    host0: list[float] = []
    threads0: list[dict] = []
    last_print = [0.0]

    def done() -> bool:
        lag = consumer_lag(s, topics)
        now = time.perf_counter()
        if lag is not None and 0 < lag < n_messages and not first:  # (all consumed at once: from start-up on)
            first.append(now)
            cpu0.append(sum(_cpu_seconds(w.pid) for w in procs))
            host0.append(_host_busy())
            threads0.append(thread_cpu(procs[0].pid))
        if now - last_print[0] > 5:
            print(f"  {log}: {lag:,} messages left", file=sys.stderr)
            last_print[0] = now
        return lag == 0

    spy = _py_spy(procs[0].pid, profile, profile_out) if profile and profile_out else None
    t_ready = time.perf_counter()
    wait_for(done, timeout=3600, what=f"the worker(s) to consume the benchmark messages ({log})", interval=0.25)
    if spy is not None:
        spy.wait(profile + 30)
    t_end = time.perf_counter()
    cpu_end = sum(_cpu_seconds(w.pid) for w in procs)
    t_begin = first[0] if first else t_ready
    secs = max(t_end - t_begin, 1e-6)
    r = {
        "readings_eps": round(n_readings / secs),
        "messages_eps": round(n_messages / secs),
        "readings_eps_incl_startup": round(n_readings / (t_end - t_ready)),
        "seconds": round(secs, 1),
    }
    if cpu0:
        r["worker_cpu_us_per_reading"] = round((cpu_end - cpu0[0]) / n_readings * 1e6, 1)
        r["worker_cpu_share"] = round((cpu_end - cpu0[0]) / secs, 2)
        r["host_busy_cores"] = round((_host_busy() - host0[0]) / secs, 2)
        # where the (first) worker's CPU went: its event loop, its other Python threads (aiokafka's
        # consumer, the ClickHouse writer's serialization) and the embedded ClickHouse engine's own
        # threads (inserts and merges; a ClickHouse server does this work on its own machine)
        groups = thread_groups(threads0[0], thread_cpu(procs[0].pid), procs[0].pid, 1.0)
        share = n_readings / len(procs)  # the first worker's share of the readings, roughly
        for g, cpu in groups.items():
            r[f"worker_cpu_us_per_reading_{g}"] = round(cpu / share * 1e6, 1)
    r["rss_mb"] = round(max(_rss_mb(w.pid) for w in procs), 1)
    return r, procs


def _py_spy(pid: int, seconds: float, out: Path):
    """Sample a worker with py-spy (``pip install py-spy``) into collapsed stacks (``--format raw``)."""
    import shutil as sh
    import subprocess

    exe = sh.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_top(path: Path, n: int = 20) -> list[tuple[str, float, float]]:
    """(function, own share, inclusive share) of the ``n`` functions with most own samples in a
    py-spy ``--format raw`` file (collapsed stacks: ``frame;frame;... count``)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 2)[-1] + ")" if " (" in f else f
            for f in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            incl[f] = incl.get(f, 0) + c
    top = sorted(own, key=lambda f: own[f], reverse=True)[:n]
    return [(f, own[f] / max(total, 1), incl[f] / max(total, 1)) for f in top]


def _count(msgs: list) -> tuple[int, int]:
    """(readings, sensor readings) in a list of messages (a gateway batch counts its readings)."""
    readings = sensor = 0
    for topic, _, value in msgs:
        n = value.count(b'"event_id"') if topic == "events.sensor" and b'"sensor_batch"' in value else 1
        readings += n
        sensor += n if topic == "events.sensor" else 0
    return readings, sensor


def _ensure_peer_python(log=print) -> str:
    """The peer's interpreter: this one if it has quixstreams, else var/bench/peer-venv (made on first use)."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("quixstreams") is not None:
        return sys.executable
    venv = ROOT / "var" / "bench" / "peer-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"making the peer's virtual environment {venv} (quixstreams pins an older pydantic than riskwatch) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-r", str(Path(__file__).with_name("peer-requirements.txt"))],
            check=True,
        )
    return str(py)


def _peer(s: Settings, n_sensor: int, tag: str) -> dict:
    """The Quix Streams peer (``riskwatch.tools.bench.peer``) on the sensor topic: readings/s."""
    import os
    import subprocess

    py = _ensure_peer_python(lambda m: print(m, file=sys.stderr))
    cmd = [
        py,
        "-m",
        "riskwatch.tools.bench.peer",
        "--topic",
        s.topic("events.sensor"),
        "--alerts",
        s.topic(f"peer.alerts.{tag}"),
        "--readings",
        str(n_sensor),
        "--bootstrap",
        s.kafka_bootstrap,
        "--state-dir",
        str(s.state_dir) + "-peer",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
    for line in reversed((out.stdout + "\n" + out.stderr).splitlines()):
        if '"peer_readings_eps"' in line:
            return json.loads(line[line.index("{") :])
    raise SystemExit(f"the Quix Streams peer failed (exit {out.returncode}): {out.stderr[-2000:]}")


def _recovery(s: Settings, worker: WorkerProcess, tmp: Path, run_id: str) -> dict:
    """kill -9 the worker (its state is all in the changelog), start a new one; time until an
    alert flows again, split into process start (HTTP up), rebalance + changelog restore (the
    worker's "state recovered" line) and the first alert of a probe complaint sent meanwhile."""
    from kafka.structs import TopicPartition

    from kafka import KafkaConsumer, KafkaProducer

    log = tmp / "recovery.log"
    consumer = KafkaConsumer(**s.kafka_kwargs(), enable_auto_commit=False)
    tps = [
        TopicPartition(s.topic("alerts.taskforce"), p)
        for p in (consumer.partitions_for_topic(s.topic("alerts.taskforce")) or ())
    ]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)
    prod = KafkaProducer(**s.kafka_kwargs(), acks="all", linger_ms=0)
    worker.kill9()
    t_kill = time.time()
    new = WorkerProcess(s, log_path=log)
    new._spawn()
    t_http = t_ready = t_alert = None
    sent = 0
    deadline = time.time() + 300
    while time.time() < deadline and t_alert is None:
        now = time.time()
        if t_http is None and new.query("SELECT 1") is not None:
            t_http = now
        if t_ready is None and log.exists() and b"state recovered" in log.read_bytes():
            t_ready = now
        if now - t_kill > sent * 0.5:  # a probe every 0.5 s: an alert-raising complaint on a fresh entity
            eid = f"R{run_id}{sent:05d}"
            prod.send(
                s.topic("events.complaint"),
                key=eid.encode(),
                value=orjson.dumps(
                    {
                        "event_id": f"rprobe-{run_id}-{sent}",
                        "entity_id": eid,
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "source": "bench",
                        "channel": "12315",
                        "category": "food_poisoning",
                        "text": "bench",
                    }
                ),
            )
            prod.flush()
            sent += 1
        for recs in consumer.poll(timeout_ms=200).values():
            for r in recs:
                if r.key and r.key.startswith(f"R{run_id}".encode()) and t_alert is None:
                    t_alert = r.timestamp / 1000
    prod.close()
    consumer.close()
    if t_alert is None:
        raise SystemExit(f"no alert within 300 s of the restart; see {log}")
    worker.proc = new.proc
    return {
        "recovery_s": round(t_alert - t_kill, 1),
        "recovery_process_start_s": round((t_http or t_alert) - t_kill, 1),
        "recovery_restore_s": round((t_ready or t_alert) - (t_http or t_kill), 1),
        "recovery_first_alert_s": round(t_alert - (t_ready or t_http or t_kill), 1),
    }


def run(
    base: Settings,
    events: int,
    entities: int,
    out: Path,
    seed: int = 7,
    partitions: int = 4,
    mode: str = "both",
    batch: int = 20,
    peer: bool = True,
    two_workers: bool = True,
    recovery: bool = False,
    floor: bool = True,
    latency: bool = True,
    state_sizes: bool = True,
    profile: float = 0.0,
) -> dict:
    """Produce ``events`` simulated events once per mode (single readings; gateway batches of
    ``batch`` readings), then measure on the same topics: raw consume, the Faust floor, the pipeline
    (one worker; optionally two sharing the partitions), the Quix Streams peer, the latency at half
    the single-message rate, and the recovery after kill -9."""
    run_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix="riskwatch-bench-"))
    modes = ["single", "batch"] if mode == "both" else [mode]
    S = {m: _settings_for(base, tmp, run_id, m[0], partitions) for m in modes}
    for s in S.values():
        T.ensure_topics(s, load_catalog(s.catalog_path))
    print(f"generating {events:,} simulated events for ~{entities:,} entities ...", file=sys.stderr)
    # the latency phase continues the same simulated stream (later readings of the same entities)
    # rather than replaying phase 1's: detectors see events in order, as in production
    evs = _events(events + (LATENCY_EVENTS_MAX if latency else 0), entities, seed)
    evs, later = evs[:events], evs[events:]
    msgs = {"single": evs, "batch": gateway_batches(evs, batch) if "batch" in modes else []}
    n_entities = len({k for _, k, _ in evs})
    n_readings, n_sensor = _count(evs)
    result: dict = {
        "events": len(evs),
        "entities": n_entities,
        "partitions": partitions,
        "gateway_batch": batch,
        "sensor_readings": n_sensor,
        "mode": modes[-1],
        "modes": {},
    }
    for m in modes:
        with Progress(transient=False) as progress:
            print(f"producing {len(msgs[m]):,} messages ({m}) ...", file=sys.stderr)
            _produce(S[m], msgs[m], progress)
    s0 = S[modes[0]]
    print("raw consume (aiokafka, no processing) ...", file=sys.stderr)
    result["raw_consume_eps"] = round(asyncio.run(_raw_consume(s0, len(msgs[modes[0]]))))
    print(f"  {result['raw_consume_eps']:,} messages/s", file=sys.stderr)
    floors: dict[str, dict] = {}
    if floor:
        for m in modes:
            for stock in (False, True) if m == "single" else (False,):
                what = "Faust's own delivery loop" if stock else "with streams/runtime/faust_fastpath.py"
                print(f"Faust floor ({m}, {what}): a do-nothing Faust agent ...", file=sys.stderr)
                f = _faust_floor(S[m], len(msgs[m]), stock)
                if m == modes[0]:
                    result["faust_floor_stock_eps" if stock else "faust_floor_eps"] = f["faust_floor_eps"]
                if not stock:
                    floors[m] = f
                print(
                    f"  {f['faust_floor_eps']:,} messages/s, {f['cpu_us_per_event']} µs CPU per message",
                    file=sys.stderr,
                )

    keep: WorkerProcess | None = None
    try:
        for m in modes:
            s = S[m]
            print(f"pipeline ({m}): one worker ...", file=sys.stderr)
            prof = out.parent / f"profile-{m}-{n_entities}.txt"
            r, (worker,) = _worker_phase(
                s, n_readings, len(msgs[m]), tmp, f"worker-{m}", profile=profile, profile_out=prof
            )
            if profile and prof.exists():
                r["profile"] = str(prof)
                print(f"  where the worker's time went ({m}, py-spy, {prof}): own% / inclusive%", file=sys.stderr)
                for frame, o, i in profile_top(prof, 15):
                    print(f"    {100 * o:5.1f} {100 * i:5.1f}  {frame}", file=sys.stderr)
            r.update(_batch_metrics(s))
            if m in floors:
                fl = floors[m]
                r["faust_floor_messages_eps"] = fl["faust_floor_eps"]
                r["faust_floor_cpu_us_per_reading"] = round(fl["cpu_us_per_event"] * len(msgs[m]) / n_readings, 1)
                if "worker_cpu_us_per_reading" in r and r["seconds"] >= MIN_CPU_SECONDS:
                    # (a phase of a second or two is mostly start-up: its CPU window misses the first batches)
                    r["own_cpu_us_per_reading"] = round(
                        r["worker_cpu_us_per_reading"] - r["faust_floor_cpu_us_per_reading"], 1
                    )
            print(f"  {r['readings_eps']:,} readings/s, {r['messages_eps']:,} messages/s", file=sys.stderr)
            if m == "single" and latency:
                r.update(_latency_phase(s, worker, later, r["readings_eps"], run_id))
            result["modes"][m] = r
            if recovery and m == modes[-1]:
                keep = worker
            else:
                worker.stop()
        if recovery and keep is not None:
            print(
                "recovery: kill -9 of the worker, then a new one restores the state from the changelog ...",
                file=sys.stderr,
            )
            result.update(_recovery(S[modes[-1]], keep, tmp, run_id))
            print(f"  alerts flow again {result['recovery_s']} s after the kill", file=sys.stderr)
            keep.stop()
            keep = None
        if two_workers:
            m = modes[-1]
            s2 = S[m].model_copy(
                update=dict(
                    app_id=S[m].app_id + "-two",
                    state_dir=tmp / "two" / "state",
                    clickhouse_url=f"chdb://{tmp / 'two' / 'clickhouse'}",
                    web_port=_free_port(),
                )
            )
            print(f"pipeline ({m}): two workers sharing the partitions ...", file=sys.stderr)
            from riskwatch.tools.broker import Broker

            bpid = Broker(base).pid()
            b0 = _cpu_seconds(bpid) if bpid else None
            r2, procs = _worker_phase(s2, n_readings, len(msgs[m]), tmp, "two-workers", workers=2)
            if bpid and b0 is not None and r2["seconds"] > 0.01:
                r2["broker_cores"] = round((_cpu_seconds(bpid) - b0) / r2["seconds"], 2)
            for w in procs:
                w.stop()
            result["two_workers"] = r2
            result["two_workers_eps"] = r2["readings_eps"]
            result["two_workers_ratio"] = round(r2["readings_eps"] / result["modes"][m]["readings_eps"], 2)
            print(f"  {r2['readings_eps']:,} readings/s ({result['two_workers_ratio']}x one worker)", file=sys.stderr)
        if peer:
            for m in modes:
                print(f"peer ({m}): Quix Streams with riskwatch's SensorAnomaly ...", file=sys.stderr)
                pr = _peer(S[m], n_sensor, m)
                result["modes"][m].update(pr)
                result["modes"][m]["ratio_to_peer"] = round(
                    result["modes"][m]["readings_eps"] / pr["peer_readings_eps"], 2
                )
                print(f"  {pr['peer_readings_eps']:,} readings/s", file=sys.stderr)
    finally:
        if keep is not None:
            keep.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        for s in S.values():
            T.delete_topics(s, [s.topic_prefix, s.app_id + "-", "riskwatch-floor-", "riskwatch-peer-"])
    main = result["modes"][modes[-1]]
    result.update(
        readings_eps=main["readings_eps"],
        messages_eps=main["messages_eps"],
        peer_readings_eps=main.get("peer_readings_eps"),
        ratio_to_peer=main.get("ratio_to_peer"),
        rss_mb=main["rss_mb"],
        rss_mb_100k=max(r["rss_mb"] for r in result["modes"].values()) if entities >= 100_000 else None,
    )
    if "single" in result["modes"]:  # today's keys, from the single-message run
        sm = result["modes"]["single"]
        result["pipeline_eps"] = sm["readings_eps"]
        result["ratio"] = round(sm["messages_eps"] / result["raw_consume_eps"], 3)
        if result.get("faust_floor_eps"):
            result["ratio_to_faust_floor"] = round(sm["messages_eps"] / result["faust_floor_eps"], 3)
        for k in (
            "worker_cpu_us_per_reading",
            "latency_ms_p50",
            "latency_ms_p95",
            "latency_ms_p99",
            "latency_rate_eps",
        ):
            if k in sm:
                result[k.replace("_reading", "_event")] = sm[k]
    if state_sizes:
        per_sensor, per_entity = _state_sizes(evs)
        result["state_bytes_per_sensor"] = round(per_sensor)
        result["state_bytes_per_entity"] = round(per_entity)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print_table(result)
    return result


def print_table(result: dict) -> None:
    """The run as a table on stderr: one row per mode, then the peer, two workers and recovery."""
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"riskwatch bench: {result['events']:,} events, {result['entities']:,} entities, "
        f"{result['partitions']} partitions (gateway batches of {result['gateway_batch']})"
    )
    for c in (
        "mode",
        "readings/s",
        "messages/s",
        "CPU µs/reading",
        "own µs/reading",
        "peer readings/s",
        "ratio to peer",
        "RSS MB",
    ):
        t.add_column(c, justify="right" if c != "mode" else "left")
    fmt = lambda v, f="{:,}": "" if v is None else f.format(v)  # noqa: E731
    for m, r in result["modes"].items():
        t.add_row(
            m,
            fmt(r.get("readings_eps")),
            fmt(r.get("messages_eps")),
            fmt(r.get("worker_cpu_us_per_reading")),
            fmt(r.get("own_cpu_us_per_reading")),
            fmt(r.get("peer_readings_eps")),
            fmt(r.get("ratio_to_peer")),
            fmt(r.get("rss_mb")),
        )
    if "two_workers" in result:
        r = result["two_workers"]
        t.add_row(
            f"two workers ({result['mode']})",
            fmt(r["readings_eps"]),
            fmt(r["messages_eps"]),
            fmt(r.get("worker_cpu_us_per_reading")),
            "",
            "",
            f"{result['two_workers_ratio']}x one",
            fmt(r["rss_mb"]),
        )
    Console(stderr=True).print(t)
    extra = [
        f"{k} {result[k]}"
        for k in (
            "raw_consume_eps",
            "faust_floor_eps",
            "faust_floor_stock_eps",
            "latency_ms_p99",
            "latency_rate_eps",
            "recovery_s",
            "recovery_restore_s",
            "rss_mb_100k",
        )
        if result.get(k) is not None
    ]
    Console(stderr=True).print(", ".join(extra))


def _latency_phase(s: Settings, worker: WorkerProcess, later: list, readings_eps: float, run_id: str) -> dict:
    """Latency at half the measured rate: realistic events + alert-raising complaints on fresh entities."""
    topics = [s.topic(t) for t in T.INPUT_TOPICS]
    result: dict = {}
    rate = max(100.0, readings_eps / 2)
    n_lat = int(min(len(later), rate * 20))
    mix = with_probes(later[:n_lat], run_id)
    cpu_l0, t_l0, host_l0 = _cpu_seconds(worker.pid), time.perf_counter(), _host_busy()
    lag0 = _histogram(s, "riskwatch_event_loop_lag_seconds")
    with Progress(transient=False) as progress:
        _produce(s, mix, progress, rate=rate)
    t_sent = time.perf_counter()
    wait_for(lambda: consumer_lag(s, topics) == 0, timeout=600, what="the latency phase to be consumed")
    # how long the worker needed after the last event was sent: ~0 when it kept up with the rate
    result["latency_phase_drain_s"] = round(time.perf_counter() - t_sent, 2)
    # the load generator and the broker share the machine's cores with the worker in this phase
    wall_l = time.perf_counter() - t_l0
    result["latency_phase_worker_cpu_us_per_event"] = round((_cpu_seconds(worker.pid) - cpu_l0) / len(mix) * 1e6, 1)
    result["latency_phase_host_busy_cores"] = round((_host_busy() - host_l0) / wall_l, 2)
    result.update(_loop_lag(lag0, _histogram(s, "riskwatch_event_loop_lag_seconds")))
    lat = _probe_latencies(s, run_id)
    result.update(
        latency_rate_eps=round(rate),
        latency_samples=len(lat),
        latency_ms_p50=round(_percentile(lat, 0.50), 1),
        latency_ms_p95=round(_percentile(lat, 0.95), 1),
        latency_ms_p99=round(_percentile(lat, 0.99), 1),
    )
    return result


def _probe_latencies(s: Settings, run_id: str) -> list[float]:
    """ms from each probe complaint's Kafka timestamp to its alert's timestamp on alerts.taskforce."""
    from riskwatch.tools.runner import read_all as read

    sent = {
        orjson.loads(r.value)["event_id"]: r.timestamp
        for r in read(s, s.topic("events.complaint"))
        if r.key and r.key.startswith(f"P{run_id}".encode())
    }
    lat = []
    for r in read(s, s.topic("alerts.taskforce")):
        a = orjson.loads(r.value)
        t0 = sent.get(a.get("source_event_id"))
        if t0 is not None and a.get("revision") == 1:
            lat.append(float(r.timestamp - t0))
    return lat
