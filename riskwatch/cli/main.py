"""The `riskwatch` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from riskwatch.cli.evals import app as eval_app
from riskwatch.settings import Settings, load_settings

app = typer.Typer(
    help="riskwatch — 三品一特 cross-department risk monitoring and early warning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
kafka_app = typer.Typer(
    help="A local single-node Kafka broker (KRaft) for development, demo and tests.", no_args_is_help=True
)
topics_app = typer.Typer(help="Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="Event contracts (JSON Schema).", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(eval_app, name="eval")


@app.callback()
def _private_files() -> None:
    # Every file and directory riskwatch and the servers it starts create (var/clickhouse with complaints'
    # texts, var/state, var/kafka, logs) is readable by this account only, whatever the login's umask.
    os.umask(0o077)


def _settings() -> Settings:
    return load_settings()


# --- kafka ------------------------------------------------------------------------------------
@kafka_app.command("start")
def kafka_start() -> None:
    """Fetch (once) and start the broker on 127.0.0.1; reuse it if already running."""
    from riskwatch.tools.broker import Broker, BrokerError

    try:
        print(Broker(_settings()).start(log=lambda m: print(m, file=sys.stderr)))
    except BrokerError as e:
        raise SystemExit(f"riskwatch kafka start: {e}") from None


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker (keeps its data)."""
    from riskwatch.tools.broker import Broker

    print(Broker(_settings()).stop())


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker runs, is stale or stopped."""
    from riskwatch.tools.broker import Broker

    print(Broker(_settings()).status())


@kafka_app.command("reset")
def kafka_reset() -> None:
    """Stop the local broker and delete its data (all topics and offsets)."""
    from riskwatch.tools.broker import Broker

    Broker(_settings()).reset()
    print("broker stopped and data deleted")


# --- topics -----------------------------------------------------------------------------------
@topics_app.command("create")
def topics_create() -> None:
    """Create every riskwatch topic that is missing (the worker also does this at start-up)."""
    from riskwatch.domain.catalog import load_catalog
    from streams.runtime.topics import ensure_topics

    s = _settings()
    created = ensure_topics(s, load_catalog(s.catalog_path))
    print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else " (all existed)"))


@topics_app.command("list")
def topics_list() -> None:
    """List the topics riskwatch uses."""
    from riskwatch.domain.catalog import load_catalog
    from streams.runtime.topics import all_topics

    s = _settings()
    for t in all_topics(s, load_catalog(s.catalog_path)):
        print(t)


# --- schemas ----------------------------------------------------------------------------------
@schemas_app.command("export")
def schemas_export() -> None:
    """Write the JSON Schema of every event and output payload to schemas/json/."""
    from schemas.export import export

    for p in export():
        print(p)


# --- worker, query, settings ------------------------------------------------------------------
@app.command()
def worker(loglevel: str = typer.Option("warn", help="crit|error|warn|info|debug")) -> None:
    """Run a stream worker (start more on other machines to scale out: partitions are the unit)."""
    from streams.runtime.app import run_worker

    run_worker(_settings(), loglevel=loglevel)


@app.command()
def query(sql: str = typer.Argument(..., help="One read-only statement (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN)")) -> None:
    """Run read-only SQL against ClickHouse and print a table.

    Embedded mode: asks the running worker (which owns the chDB directory) once its ``/identity``
    shows it is this configuration's worker; if none runs, opens the directory itself. Server
    mode: connects to the server. Writes are refused either way; every error is one line.
    """
    from riskwatch.tools.runner import QueryFailed, WebPortTaken, WorkerProcess, identify_worker
    from sinks.clickhouse import make_client
    from sinks.query import QueryRefused, engine_error_line, format_table, run_read_query

    s = _settings()
    note = ""
    try:
        if s.clickhouse_url.startswith("chdb://"):
            try:
                ours = identify_worker(s)
            except WebPortTaken as e:
                ours, note = False, str(e)
            if ours:
                rows = WorkerProcess(s).query(sql)
                if rows is None:
                    raise SystemExit(
                        f"riskwatch query: the worker on {s.web_host}:{s.web_port} stopped answering; "
                        "check it is running (`riskwatch worker`) and try again"
                    )
                print(format_table(list(rows[0]) if rows else [], [list(r.values()) for r in rows]))
                return
            if note:
                print(f"riskwatch query: note: {note}; reading {s.data_location()} directly", file=sys.stderr)
        try:
            client = make_client(s.clickhouse_url)
        except Exception as e:  # noqa: BLE001 - one line, and what to do
            where = s.data_location()
            raise SystemExit(
                f"riskwatch query: cannot open ClickHouse at {where}: {engine_error_line(e)}"
                + (f" ({note}; set RISKWATCH_WEB_PORT to the worker's port if one runs)" if note else "")
            ) from None
        try:
            cols, data = run_read_query(client, sql)
        finally:
            client.close()
        print(format_table(cols, data))
    except QueryRefused as e:
        raise SystemExit(f"riskwatch query: refused: {e}") from None
    except QueryFailed as e:
        raise SystemExit(f"riskwatch query: {e}") from None
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - ClickHouse's errors as one line, no traceback
        raise SystemExit(f"riskwatch query: {engine_error_line(e)}") from None


@app.command("settings")
def show_settings() -> None:
    """Print every setting, its environment variable, current value and meaning."""
    s = _settings()
    for name, f in Settings.model_fields.items():
        print(f"RISKWATCH_{name.upper():<28} = {getattr(s, name)!s:<40}  # {f.description}")


@app.command()
def demo(
    duration: float = typer.Option(120.0, help="Seconds of simulated input"),
    scale: float = typer.Option(0.5, help="Multiplies the number of simulated entities (1.0 ≈ 1,000)"),
    seed: int = typer.Option(7, help="Simulator seed"),
    rate: float = typer.Option(1000.0, help="Events/s sent by the simulator (one worker on 2 cores sustains ~1,200/s)"),
    fresh: bool = typer.Option(
        False,
        "--fresh",
        help="Start from empty: delete the local broker's data, the embedded "
        "ClickHouse, the worker's state and Alertmanager's data left by earlier runs",
    ),
) -> None:
    """The main job on embedded defaults: broker, worker, simulator, then a summary."""
    from riskwatch.tools.broker import BrokerError
    from riskwatch.tools.demo import DemoError, run_demo

    try:
        code = run_demo(_settings(), duration=duration, scale=scale, seed=seed, rate=rate, fresh=fresh)
    except (BrokerError, DemoError) as e:
        raise SystemExit(f"riskwatch demo: {e}") from None
    raise SystemExit(code)


@app.command()
def bench(
    events: int = typer.Option(100_000, "--events", help="Simulated events to produce"),
    entities: int = typer.Option(1_000, "--entities", help="Approximate number of entities"),
    out: Path = typer.Option(Path("var/bench/bench.json"), "--out", help="JSON result file"),
    partitions: int = typer.Option(4, "--partitions", help="Partitions of the benchmark topics"),
    mode: str = typer.Option(
        "both", "--mode", help="single (one reading per message), batch (gateway batches) or both"
    ),
    gateway_batch: int = typer.Option(
        20, "--gateway-batch", min=2, max=500, help="Readings per gateway batch in batch mode"
    ),
    peer: bool = typer.Option(
        True, "--peer/--no-peer", help="Also run the Quix Streams peer (riskwatch's SensorAnomaly) on the same topics"
    ),
    two_workers: bool = typer.Option(
        True, "--two-workers/--no-two-workers", help="Also run two workers sharing the partitions"
    ),
    recovery: bool = typer.Option(False, "--recovery", help="Also kill -9 the worker and time until alerts flow again"),
    floor: bool = typer.Option(True, "--floor/--no-floor", help="Measure the Faust floor (a do-nothing agent)"),
    latency: bool = typer.Option(
        True, "--latency/--no-latency", help="Measure alert latency at half the single-message rate"
    ),
    profile: float = typer.Option(
        0.0,
        "--profile",
        min=0,
        help="Sample the one-worker phases with py-spy for this many seconds (var/bench/profile-*.txt)",
    ),
) -> None:
    """Throughput of the full pipeline (single readings and gateway batches) against the raw-consume
    ceiling, the Faust floor and a Quix Streams peer; latency, memory, two workers, recovery."""
    from riskwatch.tools.bench.pipeline import run

    if mode not in ("single", "batch", "both"):
        raise typer.BadParameter("--mode must be single, batch or both")
    run(
        _settings(),
        events=events,
        entities=entities,
        out=out,
        partitions=partitions,
        mode=mode,
        batch=gateway_batch,
        peer=peer,
        two_workers=two_workers,
        recovery=recovery,
        floor=floor,
        latency=latency,
        profile=profile,
    )


@app.command("bench-paced")
def bench_paced(
    rate: float = typer.Option(2_000, "--rate", help="Input events per second"),
    seconds: float = typer.Option(15, "--seconds", help="How long to produce at that rate"),
    entities: int = typer.Option(10_000, "--entities", help="Approximate number of entities"),
    probes: bool = typer.Option(
        False, "--probes", help="One alert-raising complaint in 50, as the bench's latency phase"
    ),
) -> None:
    """What a steady, paced load costs one worker, per thread (where "half the rate" spends its CPU)."""
    from riskwatch.tools.bench.paced import run

    run(_settings(), rate=rate, seconds=seconds, entities=entities, probes=probes)


@app.command("bench-evidence")
def bench_evidence(
    events: int = typer.Option(100_000, "--events", help="Simulated events"),
    entities: int = typer.Option(1_000, "--entities", help="Approximate number of entities"),
    rounds: int = typer.Option(3, "--rounds", help="Rounds with and without, alternating"),
) -> None:
    """Processor CPU per event with and without evidence bundles and the audit chain."""
    from riskwatch.tools.bench.evidence import run

    run(events=events, entities=entities, rounds=rounds)


@app.command("bench-state")
def bench_state(
    days: float = typer.Option(1.0, "--days", help="Simulated days of the county before measuring"),
    scale: float = typer.Option(1.0, "--scale", help="Simulator scale (entities)"),
    rounds: int = typer.Option(5, "--rounds", help="Rounds, the formats alternating"),
) -> None:
    """µs per entity-state write and read: the changelog's data format against the old pickle."""
    from riskwatch.tools.bench.state import run

    run(days=days, scale=scale, rounds=rounds)


def _mount_optional() -> None:
    from reports.bulletin import app as bulletin_app
    from riskwatch.cli.grafana import app as grafana_app

    app.add_typer(bulletin_app, name="bulletin", help="情况通报: situation bulletins (HTML + PDF).")
    from riskwatch.cli.planning import plan_app, route_app

    app.add_typer(grafana_app, name="grafana", help="Grafana dashboards: build JSON, provision a Grafana.")
    app.add_typer(route_app, name="route", help="Alert routing to departments.")
    app.add_typer(plan_app, name="plan", help="Inspection planning: 双随机一公开 spot checks.")
    from riskwatch.cli.silence import app as silence_app
    from riskwatch.cli.web import users_app, web_app

    app.add_typer(web_app, name="web")
    app.add_typer(users_app, name="users")

    app.add_typer(silence_app, name="silence")
    from riskwatch.cli.notify import app as notify_app

    app.add_typer(notify_app, name="notify")
    from riskwatch.cli.alertmanager import app as alertmanager_app
    from riskwatch.cli.alertmanager import prometheus_app

    app.add_typer(alertmanager_app, name="alertmanager")
    app.add_typer(prometheus_app, name="prometheus")
    from riskwatch.cli.citylink import app as citylink_app

    app.add_typer(citylink_app, name="city-link")
    app.add_typer(__import__("riskwatch.cli.mqtt", fromlist=["app"]).app, name="mqtt")
    from riskwatch.cli.audit import audit_app, evidence_app

    app.add_typer(evidence_app, name="evidence")
    app.add_typer(audit_app, name="audit")
    from riskwatch.cli.gateway import register as register_gateway  # gateway, sources

    register_gateway(app)

    app.add_typer(__import__("riskwatch.cli.imports", fromlist=["app"]).app, name="import")
    from riskwatch.cli.soak import soak

    app.command("soak")(soak)
    try:
        from riskwatch.cli.simulate import app as sim_app

        app.add_typer(sim_app, name="simulate")
    except ImportError:  # pragma: no cover - during development only
        pass


_mount_optional()

if __name__ == "__main__":
    app()
