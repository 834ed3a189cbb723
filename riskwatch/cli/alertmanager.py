"""`riskwatch alertmanager config|start|stop|status` and `riskwatch prometheus start|stop|status`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

app = typer.Typer(
    help="Notification delivery through Prometheus Alertmanager: config from the catalog and the "
    "receivers file; a local Alertmanager on loopback.",
    no_args_is_help=True,
)
prometheus_app = typer.Typer(
    help="A local Prometheus scraping the worker, the bridge and the robot adapter, "
    "with riskwatch's pipeline alert rules (deploy/prometheus/rules.yml).",
    no_args_is_help=True,
)


def _settings():
    from riskwatch.settings import load_settings

    return load_settings()


def _fail(cmd: str, e: Exception | str) -> NoReturn:
    raise SystemExit(f"riskwatch {cmd}: {e}")


@app.command("config")
def config(
    out: Path = typer.Option(
        Path("var/alertmanager"), "--out", help="Directory for alertmanager.yml and its templates"
    ),
    robot_url: str | None = typer.Option(
        None,
        "--robot-url",
        help="Robot adapter base URL as Alertmanager reaches it (default http://127.0.0.1:<RISKWATCH_ROBOT_PORT>)",
    ),
    check: bool = typer.Option(True, "--check/--no-check", help="Validate the result with amtool check-config"),
) -> None:
    """Write alertmanager.yml from the catalog and the county's receivers file (RISKWATCH_RECEIVERS_PATH)."""
    import shutil
    import subprocess

    from notify.amconfig import empty_departments, write
    from notify.receivers import ReceiversError, load_receivers
    from riskwatch.domain.catalog import load_catalog

    s = _settings()
    catalog = load_catalog(s.catalog_path)
    try:
        receivers = load_receivers(s.receivers_path, catalog)
    except ReceiversError as e:
        _fail("alertmanager config", e)
    path = write(catalog, receivers, robot_url or f"http://127.0.0.1:{s.robot_port}", out)
    for code in empty_departments(catalog, receivers):
        print(
            f"warning: department {code} has no channel in {s.receivers_path}: its notifications reach nobody",
            file=sys.stderr,
        )
    if check:
        amtool = shutil.which("amtool")
        if not amtool:
            _fail(
                "alertmanager config",
                "amtool is not installed (Debian package prometheus-alertmanager); or pass --no-check",
            )
        r = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            _fail("alertmanager config", f"amtool check-config refused {path}:\n{r.stdout}{r.stderr}")
    print(path)


@app.command("start")
def start() -> None:
    """Start (or reuse) a local Alertmanager on 127.0.0.1:<RISKWATCH_ALERTMANAGER_PORT>, config regenerated."""
    from notify.receivers import ReceiversError
    from riskwatch.tools.services import Alertmanager, ServiceError

    try:
        print(Alertmanager(_settings()).start(log=lambda m: print(m, file=sys.stderr)))
    except (ServiceError, ReceiversError) as e:
        _fail("alertmanager start", e)


@app.command("stop")
def stop() -> None:
    """Stop the local Alertmanager (keeps its notification log and silences)."""
    from riskwatch.tools.services import Alertmanager

    print(Alertmanager(_settings()).stop())


@app.command("status")
def status() -> None:
    """Say whether the local Alertmanager runs, is stale or stopped."""
    from riskwatch.tools.services import Alertmanager

    print(Alertmanager(_settings()).status())


@prometheus_app.command("start")
def prom_start(
    worker_port: list[int] = typer.Option(
        None, "--worker-port", help="Worker /metrics ports (default RISKWATCH_WEB_PORT)"
    ),
) -> None:
    """Start (or reuse) a local Prometheus with the pipeline rules, alerting through the local Alertmanager."""
    from riskwatch.tools.services import Prometheus, ServiceError

    try:
        print(Prometheus(_settings(), worker_port or None).start(log=lambda m: print(m, file=sys.stderr)))
    except ServiceError as e:
        _fail("prometheus start", e)


@prometheus_app.command("stop")
def prom_stop() -> None:
    """Stop the local Prometheus."""
    from riskwatch.tools.services import Prometheus

    print(Prometheus(_settings()).stop())


@prometheus_app.command("status")
def prom_status() -> None:
    """Say whether the local Prometheus runs."""
    from riskwatch.tools.services import Prometheus

    print(Prometheus(_settings()).status())
