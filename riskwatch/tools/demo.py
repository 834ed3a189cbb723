"""`riskwatch demo` (what `make demo` runs): the whole pipeline on embedded defaults.

1. start (or reuse) the local Kafka broker, create the topics;
2. start a worker process (it owns the embedded ClickHouse directory);
3. run the county simulator for ``duration`` seconds, and at the same time the departments
   (``riskwatch simulate departments``: they acknowledge, dispose, say "not ours", answer late or
   never, in simulated time); the worker's alert deadlines follow the events' time
   (``lifecycle_clock=event``), so urging and escalation happen within the demo;
4. publish this month's 双随机 spot-check draw as inspection tasks (joint inspections are merged);
5. wait until the worker has consumed everything (progress: remaining lag);
6. print a summary from ClickHouse (alerts by item × department and by status, notifications,
   one alert's whole life cycle, joint inspections, dead letters, rows per table) and the next
   commands to try;
7. start the workbench in the background (``riskwatch web start``), give the demo accounts
   (amr, police, taskforce) fresh generated passwords and print the URL and the accounts. The
   worker and the workbench stay up to be explored until ``riskwatch web stop``.

Notifications go through a local Alertmanager (riskwatch/tools/notify_demo.py): the bridge posts
every department notification, Alertmanager routes it to the department's channels (webhook,
企业微信 and 钉钉 robots through the robot adapter, email), all pointed at a local receiver sink
that prints the first messages of each department; the summary counts what each department
received per channel against what riskwatch decided. It stops with the demo (the sink lives in
the demo's process); `riskwatch alertmanager start` and `riskwatch notify start` run it for real.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from riskwatch.tools.broker import Broker
from riskwatch.tools.demo_office import office_steps
from riskwatch.tools.runner import WorkerProcess, consumer_lag, settings_env, wait_for
from riskwatch.tools.webserver import WebError, WebServer
from schemas.vocabulary import OPEN_STATUSES, AlertStatus
from streams.runtime import topics as T

console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)  # logs and CI: wide enough for the tables

SUMMARY_SQL = {
    "预警 alerts by item × department": """
        SELECT item_name AS item, dept, level_zh AS level, count() AS alerts
        FROM riskwatch.alerts FINAL ARRAY JOIN departments AS dept
        GROUP BY item, dept, level ORDER BY item, dept, level""",
    "预警状态 alerts by status (FINAL)": """
        SELECT status, {STATUS_ZH} AS status_zh, count() AS alerts,
               countIf(dispose_due < last_seen AND status IN ({OPEN})) AS overdue
        FROM riskwatch.alerts FINAL GROUP BY status ORDER BY alerts DESC""".format(
        STATUS_ZH=f"transform(status, {[s.value for s in AlertStatus]}, {[s.zh for s in AlertStatus]}, status)",
        OPEN=", ".join(repr(s.value) for s in OPEN_STATUSES),
    ),
    "通知 notifications sent to departments by kind (alert_history kind='notify')": """
        SELECT splitByString(' → ', comment)[1] AS notification, count() AS messages,
               sum(length(splitByChar(',', splitByString(' → ', comment)[2]))) AS deliveries
        FROM riskwatch.alert_history FINAL WHERE kind = 'notify' GROUP BY notification ORDER BY messages DESC""",
    "部门反馈 department feedback (alert_history kind='feedback')": """
        SELECT actor AS department, count() AS feedback, countIf(comment LIKE 'acknowledged%') AS acknowledged,
               countIf(comment LIKE 'disposed%') AS disposed, countIf(comment LIKE 'not_ours%') AS not_ours
        FROM riskwatch.alert_history FINAL WHERE kind = 'feedback'
        GROUP BY department ORDER BY feedback DESC LIMIT 8""",
    "联合检查 joint inspections": """
        SELECT count() AS plans, countIf(has(sources, 'alert')) AS with_alert_followup,
               countIf(has(sources, 'spot_check')) AS with_spot_check,
               round(avg(length(departments)), 2) AS avg_departments
        FROM riskwatch.inspection_plans FINAL""",
    "rows per table": """
        SELECT name AS table, total_rows AS rows FROM system.tables
        WHERE database = 'riskwatch' AND engine NOT IN ('MaterializedView', 'View') ORDER BY name""",
}


def _show(title: str, rows: list[dict] | None) -> None:
    t = Table(title=title, show_lines=False)
    if not rows:
        console.print(f"[bold]{title}[/]: (none)")
        return
    for c in rows[0]:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*(str(v) for v in r.values()))
    console.print(t)


LIFECYCLE_SQL = """
    SELECT seq, formatDateTime(at, '%m-%d %H:%i') AS at, kind, from_status, to_status, actor,
           substringUTF8(comment, 1, 60) AS comment
    FROM riskwatch.alert_history FINAL
    WHERE alert_id = (SELECT alert_id FROM riskwatch.alert_history FINAL GROUP BY alert_id
                      ORDER BY countIf(kind = 'feedback') > 0 AND countIf(kind = 'reminder') > 0 DESC,
                               countIf(to_status = 'resolved') DESC, count() DESC, alert_id LIMIT 1)
    ORDER BY seq"""


def _count_events(worker) -> int:
    """Input events in ClickHouse (all runs: the embedded store persists)."""
    return sum(
        r["n"]
        for r in worker.query(
            "SELECT count() AS n FROM riskwatch.events_sensor UNION ALL SELECT count() FROM riskwatch.events_video "
            "UNION ALL SELECT count() FROM riskwatch.events_complaint "
            "UNION ALL SELECT count() FROM riskwatch.events_inspection "
            "UNION ALL SELECT count() FROM riskwatch.events_registry "
            "UNION ALL SELECT count() FROM riskwatch.events_feedback"
        )
    )


class DemoError(RuntimeError):
    """A demo that cannot run as asked; the message says what to do."""


def fresh_start(settings: Settings) -> list[str]:
    """``riskwatch demo --fresh``: delete what earlier runs left in this checkout, so that the run
    starts from empty: the local broker's topics and offsets, the embedded ClickHouse, the
    worker's state and Alertmanager's notification log and silences (the processes using them, and
    the demo's gateway, mosquitto and MQTT bridge, are stopped first). Only local data: refused for
    a remote broker or a ClickHouse server."""
    import shutil

    from riskwatch.tools.services import Alertmanager, bridge, robots
    from sinks.clickhouse import chdb_path

    if not settings.kafka_bootstrap.startswith("127.0.0.1:") or not settings.clickhouse_url.startswith("chdb://"):
        raise DemoError(
            "--fresh deletes local data only: it needs the local broker (127.0.0.1) and the embedded "
            "ClickHouse (chdb://); unset RISKWATCH_KAFKA_BOOTSTRAP and RISKWATCH_CLICKHOUSE_URL or drop --fresh"
        )
    from riskwatch.tools.gateway_server import GatewayServer
    from riskwatch.tools.mqtt import BridgeService, Mosquitto

    done = [WebServer(settings).stop(), GatewayServer(settings).stop()]
    for svc in (
        bridge(settings),
        robots(settings),
        Alertmanager(settings),
        BridgeService(settings),
        Mosquitto(settings),
    ):
        done.append(svc.stop(timeout=10))
    broker = Broker(settings)
    if broker.data_dir.exists():
        broker.reset()
        done.append(f"deleted the local broker's data ({broker.data_dir})")
    for d in (Path(chdb_path(settings.clickhouse_url)), settings.state_dir, settings.alertmanager_data_dir):
        if d.exists():
            shutil.rmtree(d)
            done.append(f"deleted {d}")
    return [line for line in done if "was not running" not in line]


def run_demo(
    settings: Settings,
    duration: float = 120.0,
    scale: float = 0.5,
    seed: int = 7,
    rate: float = 1000.0,
    fresh: bool = False,
) -> int:
    console.rule("[bold]riskwatch demo[/] — 三品一特跨部门综合监管 风险监测预警")
    if fresh:
        for line in fresh_start(settings):
            console.print(line)
    console.print(
        Broker(settings).start(log=console.print)
        if settings.kafka_bootstrap.startswith("127.0.0.1:")
        else f"using Kafka at {settings.kafka_bootstrap}"
    )
    catalog = load_catalog(settings.catalog_path)
    T.ensure_topics(settings, catalog)
    Path("var/demo").mkdir(parents=True, exist_ok=True)
    log = Path("var/demo/worker.log")
    console.print(f"starting worker (log: {log}) ...")
    # simulated days pass in minutes: alert deadlines follow the events' time, not the wall clock
    # simulated days pass in minutes: alert deadlines follow the events' time, not the wall clock; the
    # simulation starts 3 days back, so the gateway accepts events up to 4 days old (default 72 h)
    settings = settings.model_copy(
        update={"lifecycle_clock": "event", "lifecycle_tick_seconds": 2.0, "gateway_max_age_hours": 96.0}
    )
    web = WebServer(settings)
    web.stop()  # a previous demo's workbench and worker (the embedded ClickHouse allows one process)
    worker = WorkerProcess(settings, log_path=log).start()
    depts = None
    notify = None
    keep = False
    edges: list = []
    try:
        from riskwatch.tools.notify_demo import DemoNotify
        from riskwatch.tools.services import ServiceError

        try:
            notify = DemoNotify(settings, catalog, console).start()
        except ServiceError as e:
            console.print(f"[yellow]notifications through Alertmanager are off in this run: {e}[/]")
            notify = None
        edges = _start_edges(settings)
        console.print(
            f"worker ready; simulating the county for {duration:.0f}s (seed {seed}, scale {scale}) through the "
            "edges (imports, HTTP gateway, MQTT, Kafka), and its departments answering alerts ..."
        )
        n_before = _count_events(worker)
        if n_before:
            console.print(
                f"[yellow]this checkout already holds {n_before:,} events from earlier runs: the simulator sends "
                "the same events again, and those the worker still remembers go to the dead letters as "
                "duplicates; `riskwatch demo --fresh` starts from empty[/]"
            )
        t0 = time.monotonic()
        env = {**__import__("os").environ, **settings_env(settings)}
        depts = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "riskwatch.cli.main",
                "simulate",
                "departments",
                "--seed",
                str(seed),
                "--idle-seconds",
                "86400",
                "--truth",
                "var/demo/departments_truth.jsonl",
                "--quiet",
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        router = _simulate_through_edges(settings, catalog, worker, duration, seed, scale, rate)
        topics = [settings.topic(t) for t in T.INPUT_TOPICS]
        last: list[int | None] = [None]

        def caught_up() -> bool:
            lag = consumer_lag(settings, topics)
            if lag != last[0]:
                console.print(f"  waiting for the worker: {lag} events left")
                last[0] = lag
            return lag == 0

        wait_for(
            caught_up,
            timeout=max(300.0, duration * 5),
            what="the worker to consume every simulated event",
            interval=2.0,
        )
        # the departments answer the last alerts, then stop (SIGTERM: they send what is due and report)
        wait_for(
            lambda: consumer_lag(settings, [settings.topic(T.ALERTS_ALL)]) == 0,
            timeout=120,
            what="the last alerts to be published",
            interval=1.0,
        )
        time.sleep(5)  # the player polls alerts.all every 0.25 s; give it the last ones (demo pacing, not sync)
        depts.terminate()
        out, _ = depts.communicate(timeout=120)
        _print_departments(console, out)
        month = time.strftime("%Y-%m")
        plan = subprocess.run(
            [
                sys.executable,
                "-m",
                "riskwatch.cli.main",
                "plan",
                "spot-checks",
                "--month",
                month,
                "--seed",
                str(seed),
                "--entities",
                str(_entities_csv(router)),
                "--publish",
                "--out",
                f"var/demo/spot_checks_{month}.csv",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        console.print(
            plan.stdout.strip().splitlines()[-1]
            if plan.returncode == 0
            else f"[red]spot checks failed: {plan.stderr[-500:]}[/]"
        )
        # the simulated incidents have ended and their alerts are resolved by now: one happening
        # now leaves the workbench an open alert with running 签收/处置 deadlines to act on
        console.print(_live_incident(settings, worker))
        wait_for(
            caught_up,
            timeout=max(300.0, duration * 3),
            what="the worker to consume the feedback and the tasks",
            interval=2.0,
        )
        elapsed = time.monotonic() - t0
        # the sink of alerts/dead letters runs a batch behind: wait until its lag is zero too
        wait_for(
            lambda: consumer_lag(settings, [settings.topic(T.ALERTS_ALL), settings.topic(T.DEADLETTER)]) == 0,
            timeout=120,
            what="alerts and dead letters to reach ClickHouse",
            interval=1.0,
        )
        office_steps(settings, worker, console, catalog)  # #22/#23: 整改复查, 误报, 准确率, 双告知, 会商, 研判, 信用
        n_total = _count_events(worker)
        n_events = n_total - n_before
        console.rule("summary")
        console.print(
            f"events stored by this run: {n_events:,} ({n_total:,} in total: the embedded ClickHouse keeps "
            f"earlier runs) in {elapsed:.1f}s of simulation + catch-up → {n_events / elapsed:,.0f} events/s end to end"
        )
        _edge_summary(router, worker)
        for title, sql in SUMMARY_SQL.items():
            _show(title, worker.query(sql))
        _device_faults(router, worker)
        _show("一条预警的全生命周期 one alert's life cycle (alert_history)", worker.query(LIFECYCLE_SQL))
        if notify is not None:
            notify.summary()
        keep = _start_workbench(settings, web, worker)
    finally:
        if notify is not None:
            notify.stop()
        if depts is not None and depts.poll() is None:
            depts.kill()
        _stop_edges(edges)
        if not keep:
            worker.stop()
    if keep:
        console.print(f"  riskwatch web stop                    # stop the workbench and the demo's worker ({web.url})")
    console.rule("next")
    console.print(
        '  riskwatch query "SELECT level_zh, count() FROM riskwatch.alerts FINAL GROUP BY level_zh"\n'
        "  riskwatch worker                      # keep the pipeline running (Ctrl-C to stop)\n"
        "  riskwatch eval nab --data ../shared/data/nab/data --out var/nab\n"
        "  riskwatch kafka stop                  # stop the local broker\n"
        "  riskwatch alertmanager start && riskwatch notify start   # deliver notifications "
        "(receivers: riskwatch/data/receivers.yaml)\n"
        "  kafka consumer for one department:    see README, 'Who connects, and how'"
    )
    return 0


DEMO_ACCOUNTS = (
    ("amr", "dept", "amr", "市场监管局演示账号"),
    ("police", "dept", "police", "公安局演示账号"),
    ("taskforce", "taskforce", "", "专班办公室演示账号"),
)


def _start_workbench(settings: Settings, web: WebServer, worker: WorkerProcess) -> bool:
    """Start the workbench, (re)create the demo accounts, print the URL and the accounts; leave
    the worker running for it (its pid in var/web/worker.pid, stopped by `riskwatch web stop`)."""
    from web.users import UserStore

    store = UserStore(Path(settings.workbench_dir) / "users.json")
    rows = []
    for username, role, dept, name in DEMO_ACCOUNTS:
        if store.get(username) is None:
            pw = store.add(username, role=role, dept=dept, name=name)[1]
        else:
            pw = store.reset_password(username)
        rows.append((username, name, pw))
    web.dir.mkdir(parents=True, exist_ok=True)
    web.worker_pid_file.write_text(str(worker.pid))
    try:
        console.print(web.start(log=console.print))
    except WebError as e:
        console.print(f"[red]the workbench did not start: {e}[/]")
        web.worker_pid_file.unlink(missing_ok=True)
        return False
    console.rule("workbench 部门工作台")
    t = Table(title=f"{web.url}  (public pages: {web.url}/public)")
    for c in ("account", "who", "password (new each demo run)"):
        t.add_column(c)
    for r in rows:
        t.add_row(*r)
    console.print(t)
    console.print("The worker and the workbench keep running; `riskwatch web stop` stops both.")
    return True


def _live_incident(settings: Settings, worker) -> str:
    """Boiler pressure above its rated limit at one simulated boiler, now (wall time): a red alert
    that nobody has answered yet when the demo ends (the simulated departments have stopped)."""
    import uuid
    from datetime import datetime, timedelta

    import orjson

    from kafka import KafkaProducer

    rows = worker.query(
        "SELECT entity_id, device_id FROM riskwatch.events_sensor WHERE channel = 'boiler_pressure' "
        "ORDER BY entity_id, device_id LIMIT 1"
    )
    if not rows:
        return "no simulated boiler to raise a live alert on"
    entity, device = rows[0]["entity_id"], rows[0]["device_id"]
    now = datetime.now(UTC).replace(microsecond=0)
    producer = KafkaProducer(**settings.kafka_kwargs(), acks="all")
    try:
        for minutes, value in ((10, 1.22), (5, 1.31), (0, 1.38)):
            producer.send(
                settings.topic("events.sensor"),
                key=entity.encode(),
                value=orjson.dumps(
                    {
                        "schema_version": 1,
                        "event_id": f"demo-live-{uuid.uuid4()}",
                        "entity_id": entity,
                        "occurred_at": (now - timedelta(minutes=minutes)).isoformat(),
                        "source": "demo",
                        "device_id": device,
                        "channel": "boiler_pressure",
                        "unit": "MPa",
                        "value": value,
                    }
                ),
            )
        producer.flush(timeout=30)
    finally:
        producer.close()
    return (
        f"live incident: boiler {device} of {entity} at 1.38 MPa (rated 1.25) now: "
        "a red alert left open for the workbench"
    )


def _print_departments(console, out: str) -> None:
    """The simulated departments' own summary (their last output line, JSON) as one short sentence."""
    import json

    try:
        s = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        console.print("simulated departments: (no summary)")
        return
    fb = s.get("feedback", {})
    console.print(
        f"simulated departments read {s.get('alerts', 0):,} alert revisions and answered {s.get('sent', 0):,} times "
        f"(签收 {fb.get('acknowledged', 0)}, 处置中 {fb.get('in_progress', 0)}, 已处置 {fb.get('disposed', 0)}, "
        f"非本部门 {fb.get('not_ours', 0)}; {s.get('late', 0)} late, {s.get('never', 0)} never answered)"
    )


# --- the edges ----------------------------------------------------------------------------------------
def _start_edges(settings: Settings) -> list:
    """mosquitto, the MQTT bridge and the HTTP gateway on their ports from settings (stopped on exit)."""
    from riskwatch.tools.gateway_server import GatewayServer
    from riskwatch.tools.mqtt import BridgeService, Mosquitto

    started: list = []
    for svc in (Mosquitto(settings), BridgeService(settings), GatewayServer(settings)):
        console.print(f"  {type(svc).__name__}: {svc.start(log=lambda m: None)}")
        started.append(svc)
    return started


def _stop_edges(started: list) -> None:
    for svc in reversed(started):
        try:
            console.print(f"  {type(svc).__name__}: {svc.stop()}")
        except Exception as e:  # noqa: BLE001 - clean-up goes on with the next service
            console.print(f"  [yellow]{type(svc).__name__} did not stop cleanly: {e}[/]")


def _simulate_through_edges(settings: Settings, catalog, worker, duration: float, seed: int, scale: float, rate: float):
    """The county simulator in process, each message sent through its edge (riskwatch/tools/demo_edges.py);
    paced at ``rate`` messages/s for ``duration`` seconds (time spent importing files does not count)."""
    from riskwatch.tools.demo_edges import EdgeRouter
    from riskwatch.tools.simulator.county import SimConfig
    from riskwatch.tools.simulator.streams import T_INSPECTION, TOPICS, Simulator, wire_topic

    # 15-minute sensor sampling: two minutes of demo cover ~1.5 simulated days
    # (the simulator's incidents start after a 14 h warm-up)
    sim = Simulator(SimConfig(seed=seed, days=3, scale=scale, sample_minutes=15))
    counts = sim.county.counts()
    console.print(
        f"  county: {sum(counts.values())} entities, {sim.n_streams} sensor streams, {len(sim.cams)} cameras, "
        f"{len(sim.incidents)} incidents scheduled"
    )
    router = EdgeRouter(settings, catalog, worker.query, console.print)
    router.create_sources()
    prefix = settings.topic_prefix
    prefixed = {t: f"{prefix}{t}" for t in TOPICS if t != T_INSPECTION}
    t0 = time.perf_counter()
    n, next_tick = 0, t0 + 15
    try:
        for topic, key, value in sim.events():
            router.send(prefixed.get(topic) or f"{prefix}{wire_topic(topic, value, sim.catalog)}", key, value)
            n += 1
            if n & 255:
                continue
            now = time.perf_counter()
            elapsed = now - t0 - router.blocked
            if elapsed >= duration:
                break
            wait = min(n / rate - elapsed, duration - elapsed)
            if wait > 0:
                time.sleep(wait)
            if now >= next_tick:
                next_tick = now + 15
                sent = router.counts.sent
                by_edge: Counter[str] = Counter()
                for (edge, _), c in sent.items():
                    by_edge[edge] += c
                console.print(
                    f"  simulated {datetime.fromtimestamp(sim.sim_time, UTC).astimezone():%m-%d %H:%M}, "
                    f"{n:,} messages: " + ", ".join(f"{e} {c:,}" for e, c in sorted(by_edge.items()))
                )
    finally:
        router.close()
    sim.write_ground_truth("var/sim/ground_truth.jsonl")
    console.print(
        f"  simulator: {n:,} messages in {time.perf_counter() - t0:.0f}s, simulated until "
        f"{sim.summary()['sim_reached']}, {len(sim.incidents_started())} incidents started "
        "(ground truth: var/sim/ground_truth.jsonl)"
    )
    return router


def _entities_csv(router) -> Path:
    """The imported registry as the spot-check draw's entity list (entity_id = 统一社会信用代码)."""
    import csv

    path = Path("var/demo/edges/entities.csv")
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["entity_id", "kind", "township", "tier", "name"])
        for e in router.entities.values():
            if e.get("action") != "closed":
                w.writerow([e["code"], e.get("kind", ""), e.get("township", ""), "", e.get("name", "")])
    return path


def _edge_summary(router, worker) -> None:
    c = router.counts
    t = Table(title="入口 what came in through each edge (sent by the demo; refused at once by the edge)")
    for col in ("edge", "kind", "sent", "refused at the edge", "queued for the office (匹配)"):
        t.add_column(col, justify="left" if col in ("edge", "kind") else "right")
    for edge, kind in sorted(c.sent):
        t.add_row(
            edge,
            kind,
            f"{c.sent[(edge, kind)]:,}",
            f"{c.refused[(edge, kind)]:,}",
            f"{c.queued[kind]:,}" if edge != "Kafka" else "",
        )
    console.print(t)
    _show(
        "入库 stored events by source (ClickHouse: who sent them)",
        worker.query(
            "SELECT * FROM (SELECT 'sensor' AS kind, source, count() AS events FROM riskwatch.events_sensor "
            "GROUP BY source "
            "UNION ALL SELECT 'video', source, count() FROM riskwatch.events_video GROUP BY source "
            "UNION ALL SELECT 'complaint', source, count() FROM riskwatch.events_complaint GROUP BY source "
            "UNION ALL SELECT 'registry', source, count() FROM riskwatch.events_registry GROUP BY source "
            "UNION ALL SELECT 'inspection', source, count() FROM riskwatch.events_inspection GROUP BY source "
            ") ORDER BY kind, events DESC"
        ),
    )
    _show(
        "死信 refused, and why (dead letters by source and the first line of the reason)",
        worker.query(
            # the first line of the reason, with item positions, offsets and ids folded: one row per kind of fault
            "SELECT if(startsWith(source, 'mqtt:'), 'mqtt:<device>', if(source = '', '(worker: Kafka input)', source)) "
            "AS src, "
            "uniqExact(source) AS senders, replaceRegexpAll(replaceRegexpAll(replaceRegexpAll("
            # a gateway batch's dead letter: its first line counts, the second says why
            "if(position(error, ' of the gateway batch refused') > 0, "
            "concat('a reading of a batch: ', splitByChar('\\n', error)[2]), splitByChar('\\n', error)[1]), "
            "'\\\\[\\\\d+\\\\]@\\\\d+', ''), '\\\\[\\\\d+\\\\]', '#'), "
            "'\\'[^\\' ]*(?:[0-9][^\\' ]*){4,}\\'', '\\'…\\'') AS reason, count() AS messages, "
            # not FINAL: the gateway's dead letters have no Kafka offset, FINAL would keep one per source
            "sum(length(indexes)) AS batch_readings FROM riskwatch.dead_letters "
            "GROUP BY src, reason ORDER BY src, messages DESC LIMIT 40"
        ),
    )


def _device_faults(router, worker) -> None:
    """The faults the demo planted: kPa converted, an unknown unit refused, a dead sensor."""
    from riskwatch.domain.units import to_canonical

    console.rule("设备故障 device faults caught")
    rows = worker.query(
        "SELECT device_id, unit, value FROM riskwatch.events_sensor "
        "WHERE channel = 'boiler_pressure' AND source = 'iot-gw-07' ORDER BY occurred_at DESC LIMIT 1"
    )
    if rows:
        r = rows[0]
        console.print(
            f"wrong unit converted: vendor iot-gw-07 sends boiler pressure in kPa over MQTT: {r['device_id']} sent "
            f"{r['value']:g} {r['unit']}, stored as sent and judged as "
            f"{to_canonical('boiler_pressure', float(r['value']), r['unit']):g} MPa against its limit"
        )
    rows = worker.query(
        "SELECT topic, arrayFirst(x -> position(x, 'psig') > 0, splitByChar('\\n', error)) AS reason "
        "FROM riskwatch.dead_letters FINAL WHERE position(error, 'psig') > 0 LIMIT 1"
    )
    console.print(
        f"unknown unit refused ({rows[0]['topic']}): {rows[0]['reason'].strip()}"
        if rows
        else "[red]the 'psig' reading is not among the dead letters[/]"
    )
    end = router.sim_end.strftime("%Y-%m-%d %H:%M:%S") if router.sim_end else "2100-01-01 00:00:00"
    dev = router.dead_device
    if dev:
        last = worker.query(
            f"SELECT formatDateTime(max(occurred_at), '%m-%d %H:%i', 'Asia/Shanghai') AS last "
            f"FROM riskwatch.events_sensor WHERE device_id = '{dev}'"
        )
        alerts = worker.query(
            "SELECT rule, level_zh, status, formatDateTime(first_seen, '%m-%d %H:%i', 'Asia/Shanghai') AS since, "
            "title FROM riskwatch.alerts FINAL WHERE rule LIKE 'device.offline%' "
            f"AND entity_id = '{router.dead_entity}' "
            "ORDER BY first_seen LIMIT 1"
        )
        a = alerts[0] if alerts else None
        console.print(
            f"dead sensor: {dev} (freezer of {router.owner.get(dev, '?')}, reports every 15 min) last reported at "
            f"{last[0]['last'] if last else '?'} (simulated); "
            + (
                f"offline alarm {a['rule']} ({a['title']}, {a['level_zh']}) at {a['since']}, now {a['status']}"
                if a
                else "[yellow]no offline alarm for it (device health alarms: docs/devices-health.md)[/]"
            )
        )
    _show(
        "设备健康 device-health alerts (offline, stuck, out of range, impossible steps)",
        worker.query(
            "SELECT rule, level_zh AS level, count() AS alerts, countIf(status = 'resolved') AS resolved, "
            f"countIf(first_seen > toDateTime64('{end}', 3, 'Asia/Shanghai')) AS after_the_simulation "
            "FROM riskwatch.alerts FINAL WHERE rule LIKE 'device.%' GROUP BY rule, level ORDER BY alerts DESC"
        ),
    )
    console.print(
        "  during the simulation: the planted dead sensor and the simulator's gateway gaps and stuck values; "
        "after_the_simulation: every device stopped when the simulation did, and the live incident's readings "
        "(now) moved event time on, so those devices are rightly silent too"
    )
