"""`riskwatch simulate` — send the simulated county's events to Kafka (or to a file).

Mounted by the main CLI as ``app.add_typer(simulator.cli.app, name="simulate")``; the options are
on the callback, so ``riskwatch simulate --days 1 --duration 120`` runs it. Topics are NOT created
here: the worker creates them at start-up (or ``riskwatch topics create``).

``riskwatch simulate departments`` plays the other side: it reads ``alerts.all`` and answers as the
receiving departments on ``events.feedback.<dept>`` (:mod:`riskwatch.tools.simulator.departments`), in
simulated time, until no alert has come for ``--idle-seconds``.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import typer

from riskwatch.tools.simulator.county import CST, SimConfig
from riskwatch.tools.simulator.streams import T_INSPECTION, TOPICS, Simulator, wire_topic

app = typer.Typer(
    help="Simulate the county's event streams (registry, IoT, video, complaints, inspections) with injected incidents."
)

KIB = 1024


# --- file output ----------------------------------------------------------------------------------
def _tsv_escape(b: bytes) -> bytes:
    return b.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def _tsv_unescape(b: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(b):
        c = b[i : i + 1]
        if c == b"\\" and i + 1 < len(b):
            out += {b"t": b"\t", b"n": b"\n", b"r": b"\r", b"\\": b"\\"}.get(b[i + 1 : i + 2], b[i + 1 : i + 2])
            i += 2
        else:
            out += c
            i += 1
    return bytes(out)


class FileSink:
    """``*.jsonl``: {"topic","key","value"} per line (``value_b64`` when the bytes are not UTF-8);
    anything else: ``topic<TAB>key<TAB>value`` with \\t \\n \\r \\\\ escaped (raw bytes otherwise)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.jsonl = path.suffix == ".jsonl"
        self.f = path.open("wb", buffering=1 << 20)

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self.jsonl:
            rec: dict[str, Any] = {"topic": topic, "key": key.decode("utf-8", "replace")}
            try:
                rec["value"] = value.decode("utf-8")
            except UnicodeDecodeError:
                rec["value_b64"] = base64.b64encode(value).decode()
            self.f.write(orjson.dumps(rec) + b"\n")
        else:
            self.f.write(topic.encode() + b"\t" + _tsv_escape(key) + b"\t" + _tsv_escape(value) + b"\n")

    def close(self) -> None:
        self.f.close()


def read_out(path: Path | str) -> Iterator[tuple[str, bytes, bytes]]:
    """Read back a file written with ``--out`` (either format)."""
    path = Path(path)
    with path.open("rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if path.suffix == ".jsonl":
                rec = orjson.loads(line)
                value = rec["value"].encode() if "value" in rec else base64.b64decode(rec["value_b64"])
                yield rec["topic"], rec["key"].encode(), value
            else:
                topic, key, value = line.split(b"\t", 2)
                yield topic.decode(), _tsv_unescape(key), _tsv_unescape(value)


# --- Kafka output ---------------------------------------------------------------------------------
class KafkaSink:
    def __init__(self, bootstrap: str, topics: list[str], auth: dict | None = None):
        auth = {k: v for k, v in (auth or {}).items() if k != "bootstrap_servers"}
        try:
            from kafka.admin import KafkaAdminClient
            from kafka.errors import KafkaError

            from kafka import KafkaProducer
        except ImportError as e:  # pragma: no cover
            raise SystemExit(
                f"riskwatch simulate: kafka-python is not installed ({e}); use --out FILE or --no-kafka"
            ) from None
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, client_id="riskwatch-simulator", request_timeout_ms=10000, **auth
            )
            existing = set(admin.list_topics())
            admin.close()
        except (KafkaError, OSError, ValueError) as e:
            raise SystemExit(
                f"riskwatch simulate: cannot reach Kafka at {bootstrap} ({type(e).__name__}: {e}).\n"
                "Start a broker (riskwatch kafka start), set --bootstrap / RISKWATCH_KAFKA_BOOTSTRAP, "
                "or use --out FILE / --no-kafka."
            ) from None
        missing = [t for t in topics if t not in existing]
        if missing:
            raise SystemExit(
                f"riskwatch simulate: topic(s) missing on {bootstrap}: {', '.join(missing)}.\n"
                "The simulator does not create topics: start the worker (it creates them at start-up) "
                "or run `riskwatch topics create`, then try again."
            )
        try:
            import lz4  # noqa: F401

            compression = "lz4"
        except ImportError:
            compression = None
        self.errors: Counter[str] = Counter()
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="riskwatch-simulator",
            linger_ms=20,
            batch_size=256 * KIB,
            compression_type=compression,
            acks="all",
            allow_auto_create_topics=False,
            max_request_size=4 * 1024 * KIB,
            **auth,
        )
        self.compression = compression

    def _err(self, exc: BaseException) -> None:
        self.errors[type(exc).__name__] += 1

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.producer.send(topic, key=key, value=value).add_errback(self._err)

    def close(self) -> None:
        self.producer.flush(timeout=60)
        self.producer.close(timeout=10)


class NullSink:
    def send(self, topic: str, key: bytes, value: bytes) -> None:
        pass

    def close(self) -> None:
        pass


# --- the run --------------------------------------------------------------------------------------
def run_simulation(
    sim: Simulator,
    send: Callable[[str, bytes, bytes], None],
    topic_prefix: str = "",
    duration: float | None = None,
    rate: float | None = None,
    speedup: float | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[int, float]:
    """Send every message; stop after ``duration`` real seconds. Returns (messages, seconds)."""
    prefixed = {t: f"{topic_prefix}{t}" for t in TOPICS if t != T_INSPECTION}
    t_real0 = time.perf_counter()
    t_sim0 = sim.t0
    n = 0
    next_tick = 0.0
    for topic, key, value in sim.events():
        # an inspection result goes to its department's own topic (events.inspection.<dept>)
        send(prefixed.get(topic) or f"{topic_prefix}{wire_topic(topic, value, sim.catalog)}", key, value)
        n += 1
        if n & 255 == 0:
            now = time.perf_counter()
            elapsed = now - t_real0
            if duration is not None and elapsed >= duration:
                break
            wait = 0.0
            if rate:
                wait = max(wait, n / rate - elapsed)
            if speedup:
                wait = max(wait, (sim.sim_time - t_sim0) / speedup - elapsed)
            if duration is not None:
                wait = min(wait, duration - elapsed)
            if wait > 0:
                time.sleep(wait)
            if progress and now >= next_tick:
                progress(n, time.perf_counter() - t_real0, sim.sim_time)
                next_tick = now + 0.2
    seconds = time.perf_counter() - t_real0
    if progress:
        progress(n, seconds, sim.sim_time)
    return n, seconds


@app.callback(invoke_without_command=True)
def run(
    ctx: typer.Context,
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka bootstrap servers (default: settings kafka_bootstrap)"
    ),
    topic_prefix: str | None = typer.Option(
        None, "--topic-prefix", help="Topic name prefix (default: settings topic_prefix)"
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: settings sim_seed, 7)"),
    days: float = typer.Option(3.0, "--days", min=0.001, help="Simulated days, starting at now − days"),
    duration: float | None = typer.Option(
        None, "--duration", min=0.1, help="Stop after this many real seconds (whichever ends first)"
    ),
    rate: float | None = typer.Option(
        None, "--rate", min=1, help="Cap on messages per real second (default: as fast as possible)"
    ),
    speedup: float | None = typer.Option(
        None, "--speedup", min=1, help="Simulated seconds per real second (default: as fast as possible)"
    ),
    scale: float = typer.Option(
        1.0, "--scale", min=0.001, help="Multiply every entity count (1.0 ≈ a 600k-people county)"
    ),
    bad_rate: float = typer.Option(
        0.002, "--bad-rate", min=0.0, max=0.5, help="Share of malformed messages (for the dead-letter topic)"
    ),
    sample_minutes: float = typer.Option(
        5.0, "--sample-minutes", min=0.1, help="Sensor sampling interval, simulated minutes"
    ),
    start: datetime | None = typer.Option(
        None,
        "--start",
        formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        help="Simulated start (local +08:00); pins the sequence for reproducible runs (default: now − days)",
    ),
    truth: Path = typer.Option(
        Path("var/sim/ground_truth.jsonl"), "--truth", help="Ground-truth JSONL: summary, incidents, bad messages"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write to this file instead of Kafka (*.jsonl: JSON lines; else topic<TAB>key<TAB>value)"
    ),
    no_kafka: bool = typer.Option(
        False, "--no-kafka", help="Generate without sending anywhere (measures generation speed)"
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar"),
    gateway_batch: int = typer.Option(
        0,
        "--gateway-batch",
        min=0,
        max=500,
        help="Send sensor readings as gateway batches of K readings of one entity (kind sensor_batch); "
        "0 = one reading per message",
    ),
    gateway_hold: float = typer.Option(
        30.0,
        "--gateway-hold-minutes",
        min=0.1,
        help="With --gateway-batch: a gateway uploads a shorter batch once its oldest reading waited this long "
        "(simulated minutes)",
    ),
) -> None:
    """Generate the county's events (as fast as possible by default) and send them to Kafka."""
    if ctx.invoked_subcommand is not None:
        return  # e.g. `riskwatch simulate departments`: the options above belong to the event simulation
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from riskwatch.settings import load_settings

    settings = load_settings()
    bootstrap = bootstrap or settings.kafka_bootstrap
    prefix = settings.topic_prefix if topic_prefix is None else topic_prefix
    seed = settings.sim_seed if seed is None else seed
    console = Console(stderr=True)
    try:
        cfg = SimConfig(
            seed=seed,
            days=days,
            scale=scale,
            bad_rate=bad_rate,
            sample_minutes=sample_minutes,
            start=start.replace(tzinfo=CST) if start else None,
            gateway_batch=gateway_batch,
            gateway_hold_minutes=gateway_hold,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if cfg.start >= cfg.end:
        raise typer.BadParameter(
            f"--start {cfg.start.isoformat()} is not in the past: simulated time must end before now"
        )

    sim = Simulator(cfg)
    if out is not None:
        sink: Any = FileSink(out)
        where = str(out)
    elif no_kafka:
        sink, where = NullSink(), "nowhere (--no-kafka)"
    else:
        from streams.engine.identity import sender_topic

        wire = [t for t in TOPICS if t != T_INSPECTION] + [
            sender_topic(T_INSPECTION, d) for d in sim.catalog.departments
        ]
        sink = KafkaSink(bootstrap, [f"{prefix}{t}" for t in wire], auth=settings.kafka_kwargs())
        where = f"Kafka {bootstrap} (compression={sink.compression})"
    counts = sim.county.counts()
    console.print(
        f"[bold]riskwatch simulate[/] seed={seed} {cfg.start:%Y-%m-%d %H:%M} → {cfg.end:%Y-%m-%d %H:%M} (+08:00), "
        f"{sum(counts.values())} entities, {sim.n_streams} sensor streams, {len(sim.cams)} cameras, "
        f"{len(sim.incidents)} incidents scheduled → {where}"
    )
    total_sim = max(1.0, sim.t_end - sim.t0)
    progress = Progress(
        TextColumn("[bold blue]simulating"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[sent]:>10,} msgs"),
        TextColumn("{task.fields[rate]:>8,.0f} msg/s"),
        TextColumn("sim {task.fields[simt]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task("sim", total=total_sim, sent=0, rate=0.0, simt="")

    def tick(n: int, secs: float, sim_t: float) -> None:
        progress.update(
            task,
            completed=sim_t - sim.t0,
            sent=n,
            rate=n / secs if secs > 0 else 0.0,
            simt=datetime.fromtimestamp(sim_t, CST).strftime("%m-%d %H:%M"),
        )

    interrupted = False
    try:
        with progress:
            n, secs = run_simulation(sim, sink.send, prefix, duration, rate, speedup, tick)
    except KeyboardInterrupt:
        interrupted, n, secs = True, sim.sent, 0.0
    finally:
        sink.close()
    truth_path = sim.write_ground_truth(truth)

    s = sim.summary()
    table = Table(title="riskwatch simulate: summary" + (" (interrupted)" if interrupted else ""))
    table.add_column("what")
    table.add_column("count", justify="right")
    for t, c in s["per_topic"].items():
        table.add_row(f"{prefix}{t}", f"{c:,}")
    table.add_row("[red]malformed messages[/]", f"{s['bad_messages']:,}")
    by_type = Counter(i.type for i in sim.incidents_started())
    for typ, c in sorted(by_type.items()):
        table.add_row(f"incident {typ}", str(c))
    table.add_row("[bold]messages sent[/]", f"{s['messages']:,}")
    if gateway_batch > 1:
        table.add_row(f"(sensor readings in gateway batches of ≤ {gateway_batch})", "")
    if secs:
        table.add_row("messages/s (real)", f"{n / secs:,.0f}")
    table.add_row("simulated until", s["sim_reached"])
    if isinstance(sink, KafkaSink) and sink.errors:
        table.add_row("[red]send errors[/]", ", ".join(f"{k}={v}" for k, v in sink.errors.items()))
    console.print(table)
    console.print(f"ground truth: {truth_path} ({s['incidents']} incidents, {s['bad_messages']} malformed messages)")
    if isinstance(sink, KafkaSink) and sink.errors:
        raise typer.Exit(1)


# --- the departments ------------------------------------------------------------------------------
def play_departments(
    player: Any,
    settings: Any,
    idle_seconds: float = 20.0,
    progress: Callable[[dict], None] | None = None,
    progress_every: float = 2.0,
) -> dict:
    """Consume ``alerts.all`` from the beginning, answer as the departments, stop when idle.

    Simulated "now" is the latest ``last_seen`` among the alerts read; feedback due by then is
    produced to ``events.feedback.<dept>`` keyed by ``entity_id``. After ``idle_seconds`` real seconds
    without an alert message, what is still scheduled up to the wall clock is produced as well
    (feedback dated later would be in the future); the rest stays pending. Returns the player's
    summary plus ``bad_alerts`` / ``send_errors`` / ``sim_now``.
    """
    from kafka.structs import TopicPartition
    from pydantic import ValidationError

    from kafka import KafkaConsumer, KafkaProducer
    from schemas.events import Alert

    kw = settings.kafka_kwargs()
    from schemas.events import DisposalFeedback
    from streams.engine.identity import sender_topic

    # each department answers on its own topic (events.feedback.<dept>): the worker takes the department from it
    def topic_of(dept: str) -> str:
        return settings.topic(sender_topic(DisposalFeedback.topic, dept))

    topic_in, topic_out = settings.topic("alerts.all"), topic_of("taskforce")
    consumer = KafkaConsumer(
        **kw,
        client_id="riskwatch-departments",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
    )
    producer = KafkaProducer(
        **kw, client_id="riskwatch-departments", acks="all", linger_ms=20, allow_auto_create_topics=False
    )
    errors: Counter[str] = Counter()
    bad = 0
    now: datetime | None = None
    last_new = time.monotonic()

    def send(fb: dict) -> None:
        producer.send(topic_of(fb["department"]), key=fb["entity_id"].encode(), value=orjson.dumps(fb)).add_errback(
            lambda e: errors.update([type(e).__name__])
        )

    def report(final: bool = False) -> None:
        if progress:
            progress(
                {**player.summary(), "sim_now": now.isoformat() if now else None, "bad_alerts": bad, "final": final}
            )

    try:
        parts: set[int] = set()
        while not parts:  # the worker creates the topics at start-up; wait for it as long as for alerts
            parts = consumer.partitions_for_topic(topic_in)
            if not parts:
                if time.monotonic() - last_new >= idle_seconds:
                    raise SystemExit(
                        f"riskwatch simulate departments: topic {topic_in} does not exist on "
                        f"{settings.kafka_bootstrap} (start the worker or `riskwatch topics create`)"
                    )
                time.sleep(0.5)
        if not consumer.partitions_for_topic(topic_out):
            raise SystemExit(
                f"riskwatch simulate departments: topic {topic_out} does not exist on {settings.kafka_bootstrap}"
            )
        tps = [TopicPartition(topic_in, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last_new = next_report = time.monotonic()
        while True:
            got = False
            for recs in consumer.poll(timeout_ms=250, max_records=5000).values():
                for r in recs:
                    got = True
                    try:
                        a = Alert.model_validate_json(r.value)
                    except (ValidationError, ValueError):
                        bad += 1
                        continue
                    player.on_alert(a)
                    if now is None or a.last_seen > now:
                        now = a.last_seen
            t = time.monotonic()
            if got:
                last_new = t
            if now is not None:
                for fb in player.due(now):
                    send(fb)
            if t >= next_report:
                report()
                next_report = t + progress_every
            if not got and (t - last_new >= idle_seconds or _STOP.is_set()):
                break
        for fb in player.drain(until=datetime.now(CST)):
            send(fb)
        producer.flush(timeout=60)
    finally:
        consumer.close()
        producer.close(timeout=10)
    report(final=True)
    return {
        **player.summary(),
        "sim_now": now.isoformat() if now else None,
        "bad_alerts": bad,
        "send_errors": dict(errors),
    }


_STOP = __import__("threading").Event()  # SIGTERM/SIGINT: finish (drain what is due) and report


@app.command("departments")
def departments(
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: settings sim_seed, 7)"),
    idle_seconds: float = typer.Option(
        20.0, "--idle-seconds", min=0.1, help="Stop after this many real seconds without a new alert"
    ),
    late_rate: float = typer.Option(
        0.15,
        "--late-rate",
        min=0.0,
        max=1.0,
        help="Share of receiving departments that answer after the acknowledgement deadline",
    ),
    silent_rate: float = typer.Option(
        0.05, "--silent-rate", min=0.0, max=1.0, help="Share of receiving departments that never answer"
    ),
    unauthorised_rate: float = typer.Option(
        0.02,
        "--unauthorised-rate",
        min=0.0,
        max=1.0,
        help="Share of alerts that also get feedback from a department that is not a receiver (→ dead letters)",
    ),
    not_ours_rate: float = typer.Option(
        0.05,
        "--not-ours-rate",
        min=0.0,
        max=1.0,
        help="Share of alerts where one cooperating department answers not_ours",
    ),
    bootstrap: str | None = typer.Option(
        None, "--bootstrap", help="Kafka bootstrap servers (default: settings kafka_bootstrap)"
    ),
    topic_prefix: str | None = typer.Option(
        None, "--topic-prefix", help="Topic name prefix (default: settings topic_prefix)"
    ),
    truth: Path | None = typer.Option(
        None, "--truth", help="Also write the departments' ground truth here (JSONL, one planned response per line)"
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output"),
) -> None:
    """Play the departments: read alerts.all, answer on events.feedback.<dept> (签收, 处置, 非本部门职责, late
    or never).

    Feedback is dated in simulated time (the alerts' first_seen plus delays drawn against the deadlines of
    lifecycle.yaml).
    Prints the counts as one JSON object on stdout at the end.
    """
    import signal as _signal

    from rich.console import Console
    from rich.table import Table

    from riskwatch.settings import load_settings
    from riskwatch.tools.simulator.departments import DepartmentPlayer

    for _sig in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(_sig, lambda *_: _STOP.set())
    settings = load_settings()
    overrides: dict[str, Any] = {}
    if bootstrap:
        overrides["kafka_bootstrap"] = bootstrap
    if topic_prefix is not None:
        overrides["topic_prefix"] = topic_prefix
    if overrides:
        settings = settings.model_copy(update=overrides)
    seed = settings.sim_seed if seed is None else seed
    console = Console(stderr=True)
    try:
        player = DepartmentPlayer(
            seed=seed,
            late_rate=late_rate,
            silent_rate=silent_rate,
            unauthorised_rate=unauthorised_rate,
            not_ours_rate=not_ours_rate,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if not quiet:
        console.print(
            f"[bold]riskwatch simulate departments[/] seed={seed} {settings.topic('alerts.all')} → "
            f"{settings.topic('events.feedback')}.<dept> on {settings.kafka_bootstrap} "
            f"(late {late_rate:.0%}, silent {silent_rate:.0%}, unauthorised {unauthorised_rate:.0%}); "
            f"stops after {idle_seconds:g}s without alerts"
        )

    def tick(s: dict) -> None:
        if quiet or s["final"]:
            return
        fb = ", ".join(f"{k}={v}" for k, v in s["feedback"].items()) or "none yet"
        console.print(
            f"departments: {s['alerts']:,} alert revisions read, sim now {s['sim_now'] or '-'}; "
            f"feedback sent {s['sent']:,} ({fb}), {s['pending']:,} scheduled"
        )

    try:
        res = play_departments(player, settings, idle_seconds=idle_seconds, progress=tick)
    except KeyboardInterrupt:
        res = {**player.summary(), "interrupted": True}
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        truth.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in player.truth()))
    if not quiet:
        table = Table(title="riskwatch simulate departments: summary")
        table.add_column("what")
        table.add_column("count", justify="right")
        table.add_row("alert revisions read", f"{res['alerts']:,}")
        for k, v in res["feedback"].items():
            table.add_row(f"feedback {k}", f"{v:,}")
        table.add_row("late (after the acknowledgement deadline)", f"{res['late']:,}")
        table.add_row("never answering", f"{res['never']:,}")
        table.add_row("[red]unauthorised (not a receiver)[/]", f"{res['unauthorised']:,}")
        table.add_row("cancelled (alert resolved first)", f"{res['cancelled']:,}")
        table.add_row("still scheduled (after now)", f"{res['pending']:,}")
        if res.get("bad_alerts"):
            table.add_row("[red]unreadable alert messages[/]", f"{res['bad_alerts']:,}")
        if res.get("send_errors"):
            table.add_row("[red]send errors[/]", ", ".join(f"{k}={v}" for k, v in res["send_errors"].items()))
        console.print(table)
        if truth is not None:
            console.print(f"ground truth: {truth}")
    typer.echo(orjson.dumps(res).decode())
    if res.get("send_errors"):
        raise typer.Exit(1)
