"""``riskwatch soak``: the simulated county for an hour against one worker, under faults, then checks.

What runs (all real processes, all on loopback, all in a directory of their own, ``var/soak/run`` by
default, deleted at the start): a Kafka broker of its own (a broker restart is one of the faults, so
the soak never touches the broker other runs use), one worker, the notify bridge, the robot adapter,
Debian's ``prometheus-alertmanager`` started by :mod:`riskwatch.tools.services`, the workbench, the
simulated departments answering (``riskwatch simulate departments``) and the county simulator
(:mod:`riskwatch.tools.simulator`) sending ``--rate`` events/s in this process.

Faults, one every 5 minutes (``interval = min(300 s, run / 7)``: a 3-minute run has one every ~25 s,
so all six happen), in this order and round again:

1. ``worker_kill9``: ``kill -9`` of the worker; restarted as its supervisor would;
2. ``broker_restart``: the broker is stopped and started again;
3. ``bridge_kill9``: ``kill -9`` of the notify bridge; restarted (compose ``restart: unless-stopped``);
4. ``alertmanager_down``: Alertmanager stopped for 2 minutes (scaled like the interval), then started;
5. ``workbench_restart``: the workbench stopped and started;
6. ``chdb_insert_failure``: the next inserts of the embedded engine fail (the writer's failpoint,
   setting ``fault_failpoint_dir``): the writer treats them as any engine error, retries, and the
   batch's offsets are committed only once its rows are stored.

A fault's recovery time runs from the injection until the part answers again and the worker's input
lag is back under the bound (``30 s × rate``). At the end (after the worker has drained) it checks
and prints, as a table and as JSON (``--out``):

* events in = rows stored, per table; dead letters = malformed messages the simulator sent;
* alerts raised cover the simulator's ground truth: every injected incident that ended within the
  simulated time is matched by a stored alert (:func:`riskwatch.tools.simulator.incidents.match_alerts`);
* notifications delivered = decided (distinct department × alert revision on ``alerts.<dept>``
  against those at the departments' webhooks, as ``riskwatch demo`` counts them);
* duplicates = 0: rows by ``event_id`` (FINAL), alert revisions in ``alert_history``, notifications;
* the largest consumer lag and each fault's recovery time (each must recover before the next fault);
* RSS of the worker, bridge and workbench every minute (scaled): every sample under a ceiling, and
  on runs of 30 minutes or more the last third's slope at most 5 MB/min (a leak of 300 MB/hour fails).

It exits 1 with one line per failed check.

    riskwatch soak --minutes 3 --rate 300 --out var/soak/soak.json
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from riskwatch.settings import Settings
from riskwatch.tools.runner import WorkerProcess, consumer_lag, read_all, settings_env, wait_for

FAULTS = (
    "worker_kill9",
    "broker_restart",
    "bridge_kill9",
    "alertmanager_down",
    "workbench_restart",
    "chdb_insert_failure",
)
CHDB_FAILED_INSERTS = 3  # attempts that fail: back-off 0.5 + 1 + 2 s, then the rows are stored
RSS_CEILING_MB = {"worker": 2048.0, "bridge": 512.0, "workbench": 512.0}
RSS_SLOPE_MAX_MB_PER_MIN = 5.0
RSS_SLOPE_MIN_MINUTES = 30.0
EVENTS_PER_SIM_DAY = 80_000  # scale 0.5, 15-minute sampling (the demo's county)


@dataclass(slots=True)
class SoakConfig:
    minutes: float = 60.0
    rate: float = 1000.0
    seed: int = 7
    scale: float = 0.5
    data_dir: Path = Path("var/soak/run")
    out: Path = Path("var/soak/soak.json")
    topic_prefix: str = "soak."

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0

    @property
    def fault_interval(self) -> float:
        return min(300.0, self.seconds / (len(FAULTS) + 1))

    @property
    def alertmanager_down_seconds(self) -> float:
        return 120.0 * self.fault_interval / 300.0

    @property
    def rss_interval(self) -> float:
        return min(60.0, self.seconds / 12)

    @property
    def lag_bound(self) -> int:
        return int(max(5_000, 30 * self.rate))


@dataclass(slots=True)
class FaultRecord:
    fault: str
    at_s: float  # seconds into the run
    recovered_s: float | None = None  # seconds from the injection until recovered
    note: str = ""
    error: str = ""  # the fault could not be injected or undone as planned


@dataclass(slots=True)
class RssSample:
    at_s: float
    mb: dict[str, float]


@dataclass(slots=True)
class SoakResult:
    minutes: float
    rate: float
    seed: int
    sent: dict[str, int] = field(default_factory=dict)  # topic → valid events acknowledged by the broker
    malformed_sent: int = 0
    send_errors: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)  # table → rows (FINAL)
    physical_copies: dict[str, int] = field(default_factory=dict)  # table → rows not yet merged away
    duplicate_rows: dict[str, int] = field(default_factory=dict)  # table → FINAL rows − distinct event_id
    dead_letters: int = 0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)  # "topic: reason" → messages
    dead_letter_examples: dict[str, str] = field(default_factory=dict)
    other_dead_letters: int = 0  # not from the simulator's topics (department answers refused)
    feedback_sent: int = 0
    incidents_injected: int = 0
    incidents_ended: int = 0
    incidents_detected: int = 0
    missed_incidents: list[str] = field(default_factory=list)
    alerts_raised: int = 0
    alert_revisions: int = 0
    duplicate_alert_revisions: int = 0
    alert_messages_republished: int = 0
    notifications_decided: int = 0
    notifications_delivered: int = 0
    duplicate_notifications: int = 0  # delivered twice, not counting Alertmanager's repeats after its restart
    duplicate_notification_examples: list = field(default_factory=list)  # both deliveries' labels, a few
    # delivered before Alertmanager was stopped and again after it started: its log records a notification
    # only once the receiver answered, so one in flight at the stop goes out again (at least once); the
    # labels identify it, and the robot adapter posts it once (notify/robots.py)
    alertmanager_repeats: int = 0
    max_lag: int = 0
    lag_bound: int = 0
    faults: list[FaultRecord] = field(default_factory=list)
    unplanned_restarts: dict[str, int] = field(default_factory=dict)
    rss: list[RssSample] = field(default_factory=list)
    rss_slope_mb_per_min: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)


def alertmanager_repeat(delivered: list[float], restarts: list[float]) -> bool:
    """Whether a notification's two deliveries straddle an Alertmanager restart: the first before it was
    started again, the second after — Alertmanager's own at-least-once, not a second notification decided.

    >>> alertmanager_repeat([100.0, 131.0], [130.0]), alertmanager_repeat([100.0, 101.0], [130.0])
    (True, False)
    """
    first, last = min(delivered), max(delivered)
    return any(first < t <= last for t in restarts)


def free_port(taken: set[int]) -> int:
    """A free loopback port below the kernel's ephemeral range (not handed out to clients meanwhile)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError):
        low = 32768
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(21000, low)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def soak_settings(base: Settings, cfg: SoakConfig) -> Settings:
    """Every port, directory, topic and group of the soak its own."""
    d = cfg.data_dir.resolve()
    ports: set[int] = set()
    kafka, controller = free_port(ports), free_port(ports)
    am = free_port(ports)
    return base.model_copy(
        update=dict(
            kafka_bootstrap=f"127.0.0.1:{kafka}",
            kafka_port=kafka,
            kafka_controller_port=controller,
            kafka_data_dir=d / "kafka",
            kafka_security_protocol="PLAINTEXT",
            topic_prefix=cfg.topic_prefix,
            app_id="riskwatch-soak",
            clickhouse_url=f"chdb://{d / 'clickhouse'}",
            state_dir=d / "state",
            web_port=free_port(ports),
            alertmanager_port=am,
            alertmanager_url=f"http://127.0.0.1:{am}",
            alertmanager_data_dir=d / "alertmanager",
            robot_port=free_port(ports),
            notify_port=free_port(ports),
            workbench_port=free_port(ports),
            workbench_dir=d / "web",
            lifecycle_clock="event",
            lifecycle_tick_seconds=2.0,
            fault_failpoint_dir=d / "failpoints",
            fault_clickhouse_down_file=None,
        )
    )


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute (0 with fewer than 3 points)."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    if var == 0:
        return 0.0
    return 60.0 * sum((p[0] - mx) * (p[1] - my) for p in points) / var


class Simulated:
    """The county simulator sending in a thread of this process, counting what the broker acknowledged."""

    def __init__(self, settings: Settings, cfg: SoakConfig):
        from riskwatch.tools.simulator import SimConfig, Simulator

        events = cfg.seconds * cfg.rate
        # short runs sample sensors less often, so that simulated time gets past the 14 h warm-up into incidents
        sample = max(15.0, min(60.0, 15.0 * 240_000 / events))
        days = max(3.0, 1.5 * events / (EVENTS_PER_SIM_DAY * 15.0 / sample))
        self.sim = Simulator(SimConfig(seed=cfg.seed, days=days, scale=cfg.scale, sample_minutes=sample))
        self.settings, self.cfg = settings, cfg
        self.acked: Counter[str] = Counter()  # topic (or "malformed") → acknowledged
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="soak-simulator", daemon=True)

    def _ok(self, what: str):
        def cb(_):
            with self.lock:
                self.acked[what] += 1

        return cb

    def _err(self, what: str):
        def cb(e):
            with self.lock:
                self.errors[f"{what}: {type(e).__name__}"] += 1

        return cb

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            **self.settings.kafka_kwargs(),
            client_id="riskwatch-soak-simulator",
            acks="all",
            linger_ms=20,
            retries=1_000_000,  # a broker restart is a fault: keep the events and send them when it is back
            retry_backoff_ms=250,
            delivery_timeout_ms=600_000,
            request_timeout_ms=30_000,
            max_request_size=4 * 1024 * 1024,
            allow_auto_create_topics=False,
        )
        from riskwatch.tools.simulator.streams import wire_topic

        catalog = self.sim.catalog
        t0 = time.monotonic()
        n_bad = 0
        try:
            for topic, key, value in self.sim.events():
                n = self.sent = self.sent + 1
                what = "malformed" if len(self.sim.bad) > n_bad else topic  # the generator records it before yielding
                n_bad = len(self.sim.bad)
                wire = wire_topic(topic, value, catalog)  # an inspection: its department's own topic
                fut = producer.send(self.settings.topic(wire), key=key, value=value)
                fut.add_callback(self._ok(what)).add_errback(self._err(what))
                if n & 63 == 0:
                    elapsed = time.monotonic() - t0
                    if elapsed >= self.cfg.seconds:
                        break
                    wait = min(n / self.cfg.rate - elapsed, self.cfg.seconds - elapsed)
                    if wait > 0:
                        time.sleep(wait)
        finally:
            producer.flush(timeout=600)
            producer.close(timeout=30)
            self.done.set()

    def start(self) -> Simulated:
        self.thread.start()
        return self


class Soak:
    def __init__(self, settings: Settings, cfg: SoakConfig, console: Console):
        self.cfg, self.console = cfg, console
        self.settings = soak_settings(settings, cfg)
        self.result = SoakResult(minutes=cfg.minutes, rate=cfg.rate, seed=cfg.seed, lag_bound=cfg.lag_bound)
        self.paused: set[str] = set()  # parts a fault holds down: the watchdog leaves them alone
        self.alertmanager_restarts: list[float] = []  # wall times Alertmanager was started again (a fault)
        self.lag: int | None = None
        self.t0 = time.monotonic()
        self.worker: Any = None  # WorkerProcess once started
        self.notify: Any = None
        self.web: Any = None
        self.depts: Any = None  # subprocess.Popen[str] once started
        self.sim: Any = None  # Simulated once started
        self.fault_thread: Any = None  # threading.Thread of the fault being injected
        self.pending: list[tuple[FaultRecord, threading.Thread]] = []  # injected, not yet recovered
        self.failpoint = cfg.data_dir.resolve() / "failpoints" / "clickhouse_insert"
        self._dead_since: dict[str, tuple[object, float]] = {}

    # --- parts ------------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        self.console.log(f"[{self.elapsed():6.0f}s] {msg}")

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    @property
    def services(self) -> dict[str, Any]:
        return {svc.name: svc for svc in (self.notify.services if self.notify else [])}

    def broker(self):
        from riskwatch.tools.broker import Broker

        return Broker(self.settings)

    def start(self) -> None:
        from riskwatch.domain.catalog import load_catalog
        from riskwatch.tools.notify_demo import DemoNotify
        from riskwatch.tools.webserver import WebServer
        from streams.runtime import topics as T

        d = self.cfg.data_dir
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        (d / "failpoints").mkdir()
        self.log(self.broker().start(log=self.log))
        catalog = load_catalog(self.settings.catalog_path)
        T.ensure_topics(self.settings, catalog)
        self.worker = WorkerProcess(self.settings, log_path=d / "worker.log").start()
        self.log(f"worker ready (pid {self.worker.pid}, log {d / 'worker.log'})")
        self.notify = DemoNotify(
            self.settings, catalog, Console(quiet=True), out_dir=d / "receivers", show_per_department=0
        ).start()
        self.web = WebServer(self.settings)
        self.log(self.web.start(log=self.log))
        env = {**os.environ, **settings_env(self.settings)}
        with open(d / "departments.log", "ab") as errlog:  # the child writes to its own descriptor
            self.depts = subprocess.Popen(
                [sys.executable, "-m", "riskwatch.cli.main", "simulate", "departments", "--seed", str(self.cfg.seed)]
                + ["--idle-seconds", "86400", "--truth", str(d / "departments_truth.jsonl"), "--quiet"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=errlog,
                text=True,
            )
        self.t0 = time.monotonic()
        self.sim = Simulated(self.settings, self.cfg).start()

    def pids(self) -> dict[str, int | None]:
        w = self.worker.proc if self.worker else None
        return {
            "worker": w.pid if w is not None and w.poll() is None else None,
            "bridge": self.services["bridge"].pid() if self.notify else None,
            "workbench": self.web.pid() if self.web else None,
        }

    def part_ok(self, part: str) -> bool:
        from riskwatch.tools.runner import identify_worker

        if part == "worker":
            return bool(self.worker and self.worker.proc and self.worker.proc.poll() is None) and identify_worker(
                self.settings, timeout=3
            )
        if part == "broker":
            return self.broker().port_open() and self.broker().responsive(timeout=3)
        if part == "workbench":
            return self.web.healthy()
        return self.services[part].healthy()

    # --- faults -----------------------------------------------------------------------------------
    def inject(self, fault: str, rec: FaultRecord) -> None:
        try:
            if fault == "worker_kill9":
                self.paused.add("worker")
                self.worker.kill9()
                self.worker.start()
            elif fault == "broker_restart":
                self.paused.add("broker")
                b = self.broker()
                self.log(f"broker: {b.stop()}")
                self.log(f"broker: {b.start(log=self.log)}")
            elif fault == "bridge_kill9":
                self.paused.add("bridge")
                self.services["bridge"].stop(kill=True)
                self.services["bridge"].start(log=lambda m: None)
            elif fault == "alertmanager_down":
                self.paused.add("alertmanager")
                self.services["alertmanager"].stop()
                time.sleep(self.cfg.alertmanager_down_seconds)
                self.services["alertmanager"].start(log=lambda m: None)
                self.alertmanager_restarts.append(time.time())
            elif fault == "workbench_restart":
                self.paused.add("workbench")
                self.web.stop()
                self.web.start(log=lambda m: None)
            elif fault == "chdb_insert_failure":
                fp = self.failpoint
                tmp = fp.with_suffix(".tmp")
                before = self.insert_retries()
                tmp.write_text(str(CHDB_FAILED_INSERTS))
                tmp.replace(fp)
                wait_for(lambda: not fp.exists(), self.cfg.fault_interval, "the worker to attempt the failing inserts")
                wait_for(lambda: (self.insert_retries() or 0) >= (before or 0) + CHDB_FAILED_INSERTS, 30, "retries")
                rec.note = f"{CHDB_FAILED_INSERTS} inserts failed and were retried by the writer"
        except Exception as e:  # noqa: BLE001 — a fault that could not be injected or undone is a finding
            rec.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            self.log(f"[red]{fault}: {rec.error}[/]")
        finally:
            self.paused.clear()

    def insert_retries(self) -> float | None:
        """The worker's ``riskwatch_clickhouse_retries_total{kind="insert"}`` (None: no answer)."""
        import urllib.request

        try:
            url = f"http://{self.settings.web_host}:{self.settings.web_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("riskwatch_clickhouse_retries_total{") and '"insert"' in line
        )

    def recovered(self, fault: str) -> bool:
        part = {
            "worker_kill9": "worker",
            "broker_restart": "broker",
            "bridge_kill9": "bridge",
            "alertmanager_down": "alertmanager",
            "workbench_restart": "workbench",
            "chdb_insert_failure": "worker",
        }[fault]
        if fault == "chdb_insert_failure" and self.failpoint.exists():
            return False
        if fault == "broker_restart" and not self.part_ok("worker"):
            return False
        return self.lag is not None and self.lag <= self.cfg.lag_bound and self.part_ok(part)

    def check_recoveries(self) -> None:
        """Every injected fault is watched until it has recovered (the next fault may come first)."""
        for rec, thread in list(self.pending):
            if not thread.is_alive() and self.recovered(rec.fault):
                rec.recovered_s = round(self.elapsed() - rec.at_s, 1)  # now, not the loop's start: lag polls can block
                self.log(f"{rec.fault}: recovered in {rec.recovered_s:.1f}s")
                self.pending.remove((rec, thread))

    # --- watchdog: restart what died on its own (compose restart: unless-stopped) -----------------
    def watchdog(self) -> None:
        now = time.monotonic()
        parts: dict[str, tuple[object, bool]] = {}
        if self.worker and self.worker.proc is not None:
            parts["worker"] = (self.worker.proc, self.worker.proc.poll() is not None)
        for name, svc in self.services.items():
            parts[name] = (name, svc.pid() is None)
        if self.web:
            parts["workbench"] = ("workbench", self.web.pid() is None)
        for name, (ident, dead) in parts.items():
            if name in self.paused or not dead:
                self._dead_since.pop(name, None)
                continue
            seen = self._dead_since.setdefault(name, (ident, now))
            if seen[0] is not ident or now - seen[1] < 5.0:  # the worker's own supervisor restarts code 70
                continue
            self._dead_since.pop(name, None)
            self.result.unplanned_restarts[name] = self.result.unplanned_restarts.get(name, 0) + 1
            self.log(f"[yellow]{name} exited on its own; restarting it[/]")
            try:
                if name == "worker":
                    self.worker.start()
                elif name == "workbench":
                    self.web.start(log=lambda m: None)
                else:
                    self.services[name].start(log=lambda m: None)
            except (Exception, SystemExit) as e:  # noqa: BLE001
                self.log(f"[red]restarting {name} failed: {e}[/]")

    def measure_lag(self) -> None:
        from streams.runtime import topics as T

        try:
            self.lag = consumer_lag(self.settings, [self.settings.topic(t) for t in T.INPUT_TOPICS])
        except Exception:  # noqa: BLE001 — broker down: lag unknown
            self.lag = None
        if self.lag is not None:
            self.result.max_lag = max(self.result.max_lag, self.lag)

    # --- the run ----------------------------------------------------------------------------------
    def run(self) -> SoakResult:
        cfg = self.cfg
        self.start()
        interval = cfg.fault_interval
        next_fault, k = interval, 0
        next_rss = 0.0
        next_line = 60.0
        progress = Progress(
            TextColumn("[bold blue]soak"),
            TimeElapsedColumn(),
            TextColumn("sent {task.fields[sent]:>10,}"),
            TextColumn("lag {task.fields[lag]:>8}"),
            TextColumn("next fault {task.fields[next]}"),
            console=self.console,
            transient=True,
        )
        with progress:
            task = progress.add_task("soak", sent=0, lag="?", next="")
            while not self.sim.done.is_set() or self.pending:
                now = self.elapsed()
                if now > cfg.seconds + 2 * interval:
                    break
                self.measure_lag()
                self.watchdog()
                self.check_recoveries()
                if (
                    now >= next_fault
                    and now < cfg.seconds - 5
                    and (self.fault_thread is None or not self.fault_thread.is_alive())
                ):
                    fault = FAULTS[k % len(FAULTS)]
                    rec = FaultRecord(fault, round(now, 1))
                    self.result.faults.append(rec)
                    self.log(f"fault {k + 1}: {fault}")
                    self.fault_thread = threading.Thread(target=self.inject, args=(fault, rec), daemon=True)
                    self.fault_thread.start()
                    self.pending.append((rec, self.fault_thread))
                    k += 1
                    next_fault += interval
                if now >= next_rss:
                    self.result.rss.append(
                        RssSample(
                            round(now, 1), {p: round(v, 1) for p, pid in self.pids().items() if (v := rss_mb(pid))}
                        )
                    )
                    next_rss += cfg.rss_interval
                nxt = FAULTS[k % len(FAULTS)] if next_fault < cfg.seconds - 5 else "none"
                progress.update(
                    task,
                    sent=self.sim.sent,
                    lag="?" if self.lag is None else f"{self.lag:,}",
                    next=f"{nxt} in {max(0.0, next_fault - now):.0f}s" if nxt != "none" else "none",
                )
                if now >= next_line:  # logs (not a terminal) get a line a minute
                    self.log(f"sent {self.sim.sent:,}, lag {self.lag}, faults {k}, max lag {self.result.max_lag:,}")
                    next_line += 60.0
                time.sleep(2.0)
        self.sim.thread.join(timeout=600)
        return self.finish()

    def drain(self) -> None:
        from streams.runtime import topics as T

        def caught_up() -> bool:
            self.watchdog()
            self.measure_lag()
            self.check_recoveries()
            return self.lag == 0

        wait_for(caught_up, max(300.0, self.cfg.seconds), "the worker to consume every event", interval=2.0)
        out = self.settings.topic
        wait_for(lambda: consumer_lag(self.settings, [out(T.ALERTS_ALL)]) == 0, 120, "the last alerts", interval=1.0)
        time.sleep(5)  # the departments poll alerts.all; give them the last revisions (as the demo does)
        self.depts.terminate()
        dout, _ = self.depts.communicate(timeout=120)
        with contextlib.suppress(ValueError, IndexError):
            self.result.feedback_sent = int(json.loads(dout.strip().splitlines()[-1]).get("sent", 0))
        wait_for(caught_up, 300, "the worker to consume the departments' last answers", interval=2.0)
        wait_for(
            lambda: consumer_lag(self.settings, [out(T.ALERTS_ALL), out(T.DEADLETTER)]) == 0,
            180,
            "alerts and dead letters to reach ClickHouse",
            interval=1.0,
        )

    def finish(self) -> SoakResult:
        r = self.result
        r.seconds = round(self.elapsed(), 1)
        self.log("input stopped; waiting for the worker to drain")
        try:
            self.drain()
        except Exception as e:  # noqa: BLE001
            r.failed.append(f"drain: {e}")
        sim = self.sim
        r.sent = {t: n for t, n in sorted(sim.acked.items()) if t != "malformed"}
        r.malformed_sent = sim.acked["malformed"]
        r.send_errors = dict(sim.errors)
        self.count_rows()
        self.count_alerts()
        self.count_notifications()
        self.check()
        return r

    def q(self, sql: str) -> list[dict]:
        rows = self.worker.query(sql)
        if rows is None:
            raise RuntimeError(f"the worker did not answer: {sql[:80]}")
        return rows

    def count_rows(self) -> None:
        r = self.result
        db = self.settings.clickhouse_database
        for topic in sorted({*r.sent, "events.feedback"}):
            key = topic.replace(".", "_")
            # the device registry keeps one row per device (the simulator registers each once), not event rows
            table, ident = ("devices", "device_id") if topic == "events.device" else (key, "event_id")
            row = self.q(
                f"SELECT (SELECT count() FROM {db}.{table} FINAL) AS final, (SELECT count() FROM {db}.{table}) AS raw,"
                f" (SELECT uniqExact({ident}) FROM {db}.{table}) AS ids"
            )[0]
            r.stored[key] = int(row["final"])
            r.physical_copies[key] = int(row["raw"]) - int(row["final"])
            r.duplicate_rows[key] = int(row["final"]) - int(row["ids"])
        from riskwatch.tools.simulator.streams import TOPICS

        prefix = self.settings.topic_prefix
        dl = self.q(
            f"SELECT replaceOne(topic, '{prefix}', '') AS t, multiIf(error ILIKE '%duplicate%', 'duplicate event_id', "
            "error ILIKE '%oversize%' OR error ILIKE '%too large%' OR error ILIKE '%bytes%', 'oversized', "
            "'malformed or invalid') AS reason, count() AS n, any(substringUTF8(error, 1, 160)) AS example "
            f"FROM {db}.dead_letters FINAL WHERE startsWith(topic, '{prefix}') GROUP BY t, reason ORDER BY t, n DESC"
        )
        r.dead_letters_by_reason = {f"{x['t']}: {x['reason']}": int(x["n"]) for x in dl}
        r.dead_letter_examples = {f"{x['t']}: {x['reason']}": x["example"] for x in dl}
        # the simulator's topics: its malformed messages; others (department answers) are reported apart
        # an inspection travels on its department's topic (events.inspection.<dept>): the simulator's topic
        sim_topic = {x["t"]: "events.inspection" if x["t"].startswith("events.inspection.") else x["t"] for x in dl}
        r.dead_letters = sum(int(x["n"]) for x in dl if sim_topic[x["t"]] in TOPICS)
        r.other_dead_letters = sum(int(x["n"]) for x in dl if sim_topic[x["t"]] not in TOPICS)

    def count_alerts(self) -> None:
        from riskwatch.tools.simulator.incidents import match_alerts
        from streams.runtime import topics as T

        r = self.result
        db = self.settings.clickhouse_database
        sim = self.sim.sim
        truth = [x for x in sim.ground_truth() if x.get("record") == "incident"]
        reached = sim.sim_time
        ended = [x for x in truth if datetime.fromisoformat(x["end"]).timestamp() <= reached]
        alerts = [
            {
                "alert_id": a["alert_id"],
                "entity_id": a["entity_id"],
                "rule": a["rule"],
                "first_seen": datetime.fromtimestamp(int(a["ts"]), UTC),
            }
            for a in self.q(
                f"SELECT alert_id, entity_id, rule, toUnixTimestamp(first_seen) AS ts FROM {db}.alerts FINAL"
            )
        ]
        # an incident is detected by an alert that opens or fires again inside its window: an alert opened
        # earlier on the same entity (a pharmacy's humid nights) that fires again for the incident counts
        firings = alerts + [
            {
                "alert_id": h["alert_id"],
                "entity_id": h["entity_id"],
                "first_seen": datetime.fromtimestamp(int(h["ts"]), UTC),
            }
            for h in self.q(
                f"SELECT alert_id, entity_id, toUnixTimestamp(at) AS ts FROM {db}.alert_history FINAL "
                "WHERE to_status = 'firing' AND from_status != 'firing'"
            )
        ]
        m = match_alerts(ended, firings)
        r.incidents_injected, r.incidents_ended = len(truth), len(ended)
        r.incidents_detected = len(m["detected"])
        r.missed_incidents = list(m["missed"])
        r.alerts_raised = len(alerts)
        h = self.q(f"SELECT count() AS n, uniqExact(alert_id, seq) AS u FROM {db}.alert_history FINAL")[0]
        r.alert_revisions = int(h["u"])
        r.duplicate_alert_revisions = int(h["n"]) - int(h["u"])
        keys: Counter[tuple[Any, Any]] = Counter()
        for rec in read_all(self.settings, self.settings.topic(T.ALERTS_ALL)):
            v = json.loads(rec.value)
            keys[(v.get("alert_id"), v.get("revision"))] += 1
        r.alert_messages_republished = sum(n - 1 for n in keys.values())

    def count_notifications(self) -> None:
        r = self.result
        try:
            self.notify.summary(timeout=max(180.0, 2 * self.cfg.alertmanager_down_seconds))  # the demo's wait
        except Exception as e:  # noqa: BLE001
            r.failed.append(f"notifications: {e}")
        decided: set[tuple[str, str, str]] = set()
        for dept in self.notify.catalog.departments:
            for rec in read_all(self.settings, self.settings.topic(f"alerts.{dept}")):
                v = json.loads(rec.value)
                decided.add((dept, str(v.get("alert_id")), str(v.get("revision"))))
        got: Counter[tuple[str, str, str]] = Counter()
        seen: dict[tuple[str, str, str], list[dict]] = {}
        when: dict[tuple[str, str, str], list[float]] = {}
        for dept in self.notify.catalog.departments:
            for req in self.notify.sink.ok(f"/hook/{dept}"):
                for a in req.body.get("alerts", []) if req.path == f"/hook/{dept}" else []:
                    lab = a.get("labels", {})
                    k = (dept, str(lab.get("alert_id")), str(lab.get("seq")))
                    got[k] += 1
                    seen.setdefault(k, []).append({**lab, "startsAt": a.get("startsAt", ""), "delivered": req.at})
                    when.setdefault(k, []).append(req.at)
        repeats = {k for k, n in got.items() if n == 2 and alertmanager_repeat(when[k], self.alertmanager_restarts)}
        r.alertmanager_repeats = len(repeats)
        r.duplicate_notification_examples = [seen[k] for k, n in got.items() if n > 1 and k not in repeats][:5]
        r.notifications_decided = len(decided)
        r.notifications_delivered = len(decided & set(got))
        r.duplicate_notifications = sum(n - 1 for k, n in got.items() if k not in repeats)

    # --- checks -----------------------------------------------------------------------------------
    def check(self) -> None:
        r, fail = self.result, self.result.failed
        lost = {k: n for k, n in r.send_errors.items() if not k.startswith("malformed")}
        if lost:  # a malformed message the broker refuses (oversized) never reaches the worker: not a loss
            fail.append(f"send errors: {lost}")
        for topic, n in r.sent.items():
            table = topic.replace(".", "_")
            if r.stored.get(table) != n:
                fail.append(f"events in ≠ rows stored: {topic} sent {n:,}, {table} holds {r.stored.get(table, 0):,}")
        if r.dead_letters != r.malformed_sent:
            fail.append(
                f"dead letters {r.dead_letters:,} ≠ malformed messages sent {r.malformed_sent:,} "
                f"({r.dead_letters_by_reason})"
            )
        if r.missed_incidents:
            fail.append(
                f"alerts ≠ ground truth: {len(r.missed_incidents)} of {r.incidents_ended} ended incidents have no "
                f"alert ({', '.join(r.missed_incidents[:5])})"
            )
        if r.notifications_delivered != r.notifications_decided:
            fail.append(f"notifications delivered {r.notifications_delivered:,} ≠ decided {r.notifications_decided:,}")
        dups = {t: n for t, n in r.duplicate_rows.items() if n}
        if dups:
            fail.append(f"duplicate rows by event_id: {dups}")
        if r.duplicate_alert_revisions:
            fail.append(f"duplicate alert revisions in alert_history: {r.duplicate_alert_revisions}")
        if r.duplicate_notifications:
            fail.append(f"duplicate notifications at the webhooks: {r.duplicate_notifications}")
        for f in r.faults:
            if f.error:
                fail.append(f"{f.fault} at {f.at_s:.0f}s: {f.error}")
            if f.recovered_s is None:
                fail.append(f"{f.fault} at {f.at_s:.0f}s did not recover")
        if len({f.fault for f in r.faults}) < len(FAULTS):
            fail.append(f"only {len({f.fault for f in r.faults})} of {len(FAULTS)} faults were injected")
        for part, ceiling in RSS_CEILING_MB.items():
            peak = max((s.mb.get(part, 0.0) for s in r.rss), default=0.0)
            if peak > ceiling:
                fail.append(f"{part} RSS reached {peak:.0f} MB (ceiling {ceiling:.0f} MB)")
            third = [s for s in r.rss if s.at_s >= 2 * self.cfg.seconds / 3 and part in s.mb]
            r.rss_slope_mb_per_min[part] = round(slope_per_min([(s.at_s, s.mb[part]) for s in third]), 2)
            if self.cfg.minutes >= RSS_SLOPE_MIN_MINUTES and r.rss_slope_mb_per_min[part] > RSS_SLOPE_MAX_MB_PER_MIN:
                fail.append(
                    f"{part} RSS still growing in the last third: {r.rss_slope_mb_per_min[part]:.1f} MB/min "
                    f"(bound {RSS_SLOPE_MAX_MB_PER_MIN:g})"
                )

    # --- shutdown ---------------------------------------------------------------------------------
    def stop(self) -> None:
        def depts() -> None:
            if self.depts is not None and self.depts.poll() is None:
                self.depts.kill()

        parts = [depts, self.web and self.web.stop, self.notify and self.notify.stop, self.worker and self.worker.stop]
        for what in [*parts, self.broker().stop]:
            try:
                if what:
                    what()
            except Exception as e:  # noqa: BLE001 — stop the rest anyway
                self.console.print(f"[yellow]stopping: {e}[/]")


def report(r: SoakResult, console: Console) -> None:
    t = Table(title=f"riskwatch soak: {r.minutes:g} 分钟, {r.rate:g} 事件/秒, 故障 {len(r.faults)} 次")
    for c in ("检查 check", "期望 expected", "实际 actual", "结果"):
        t.add_column(c)

    def row(name: str, expected: object, actual: object, ok: bool) -> None:
        t.add_row(name, str(expected), str(actual), "[green]通过[/]" if ok else "[red]失败[/]")

    for topic, n in r.sent.items():
        table = topic.replace(".", "_")
        row(f"入库 events in = rows ({table})", f"{n:,}", f"{r.stored.get(table, 0):,}", r.stored.get(table) == n)
    row(
        "部门反馈 rows (events_feedback)",
        f"{r.feedback_sent:,} sent",
        f"{r.stored.get('events_feedback', 0):,} stored, {r.other_dead_letters:,} refused (dead letters)",
        True,
    )
    row(
        "死信 dead letters = malformed sent",
        f"{r.malformed_sent:,}",
        f"{r.dead_letters:,}",
        r.dead_letters == r.malformed_sent,
    )
    row(
        "预警 incidents ended → alerted",
        f"{r.incidents_ended}",
        f"{r.incidents_detected} ({r.alerts_raised} alerts)",
        not r.missed_incidents,
    )
    row(
        "通知 notifications delivered = decided",
        f"{r.notifications_decided:,}",
        f"{r.notifications_delivered:,}",
        r.notifications_delivered == r.notifications_decided,
    )
    dup_rows = sum(r.duplicate_rows.values())
    row("重复 duplicate rows (event_id)", 0, dup_rows, dup_rows == 0)
    row("重复 duplicate alert revisions", 0, r.duplicate_alert_revisions, r.duplicate_alert_revisions == 0)
    row("重复 duplicate notifications", 0, r.duplicate_notifications, r.duplicate_notifications == 0)
    row(
        "重发 Alertmanager repeats after its restart",
        "labels identify them",
        r.alertmanager_repeats,
        True,
    )
    row("最大积压 max lag", f"≤ recovery bound {r.lag_bound:,}", f"{r.max_lag:,}", True)
    for f in r.faults:
        rec = f"{f.recovered_s:.1f}s" if f.recovered_s is not None else "not recovered"
        row(
            f"故障 {f.fault} @ {f.at_s:.0f}s",
            "recovers",
            rec + (f" ({f.error or f.note})" if f.error or f.note else ""),
            f.recovered_s is not None and not f.error,
        )
    for part, ceiling in RSS_CEILING_MB.items():
        vals = [s.mb[part] for s in r.rss if part in s.mb]
        if vals:
            row(
                f"内存 RSS {part} (MB)",
                f"≤ {ceiling:.0f}; slope ≤ {RSS_SLOPE_MAX_MB_PER_MIN:g}/min",
                f"{vals[0]:.0f} → {vals[-1]:.0f}, peak {max(vals):.0f}, "
                f"last third {r.rss_slope_mb_per_min.get(part, 0):+.1f}/min",
                not any(x.startswith(f"{part} RSS ") for x in r.failed),
            )
    console.print(t)
    console.print(
        f"sent {sum(r.sent.values()):,} events + {r.malformed_sent:,} malformed; alert revisions {r.alert_revisions:,} "
        f"(republished messages on alerts.all: {r.alert_messages_republished:,}); unplanned restarts: "
        f"{r.unplanned_restarts or 'none'}; copies awaiting merge: {sum(r.physical_copies.values()):,}"
    )


def run_soak(settings: Settings, cfg: SoakConfig, console: Console | None = None) -> int:
    console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    console.rule(
        f"[bold]riskwatch soak[/] — {cfg.minutes:g} min at {cfg.rate:g} events/s, "
        f"a fault every {cfg.fault_interval:.0f}s"
    )
    soak = Soak(settings, cfg, console)
    try:
        r = soak.run()
    finally:
        soak.stop()
    report(r, console)
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(asdict(r), ensure_ascii=False, indent=1))
    console.print(f"JSON: {cfg.out}")
    for line in r.failed:
        print(f"soak check failed: {line}", file=sys.stderr)
    return 1 if r.failed else 0
