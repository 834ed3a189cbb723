"""`riskwatch notify run|robots|start|stop|status`: the bridge to Alertmanager and the robot adapter."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Notification delivery: the bridge (alerts.<dept> → Alertmanager) and the 企业微信/钉钉 robot adapter.",
    no_args_is_help=True,
)


def _settings():
    from riskwatch.settings import load_settings

    return load_settings()


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)


@app.command("run")
def run(loglevel: str = typer.Option("info", help="error|warning|info|debug")) -> None:
    """Run the bridge in the foreground: every notification on alerts.<dept> → Alertmanager (Ctrl-C stops)."""
    from notify.bridge import serve

    _logging(loglevel)
    s = _settings()
    try:
        serve(s)
    except OSError as e:
        raise SystemExit(
            f"riskwatch notify run: cannot serve /metrics on {s.notify_host}:{s.notify_port} ({e}); "
            "set RISKWATCH_NOTIFY_PORT"
        ) from None


@app.command("robots")
def robots(loglevel: str = typer.Option("info", help="error|warning|info|debug")) -> None:
    """Run the 企业微信/钉钉 robot adapter in the foreground (Alertmanager's webhook → group robots)."""
    from notify.receivers import ReceiversError, load_receivers
    from notify.robots import serve
    from riskwatch.domain.catalog import load_catalog

    _logging(loglevel)
    logging.getLogger("aiohttp.access").setLevel(
        logging.WARNING
    )  # access lines would carry nothing secret, but are noise
    s = _settings()
    try:
        receivers = load_receivers(s.receivers_path, load_catalog(s.catalog_path))
    except ReceiversError as e:
        raise SystemExit(f"riskwatch notify robots: {e}") from None
    serve(receivers, s.notify_host, s.robot_port)


@app.command("start")
def start() -> None:
    """Start (or reuse) the bridge and the robot adapter in the background (logs under var/notify/)."""
    from riskwatch.tools.services import ServiceError, bridge
    from riskwatch.tools.services import robots as robots_svc

    s = _settings()
    try:
        for svc in (robots_svc(s), bridge(s)):
            print(svc.start(log=lambda m: print(m, file=sys.stderr)))
    except ServiceError as e:
        raise SystemExit(f"riskwatch notify start: {e}") from None


@app.command("stop")
def stop() -> None:
    """Stop the background bridge and robot adapter."""
    from riskwatch.tools.services import bridge
    from riskwatch.tools.services import robots as robots_svc

    s = _settings()
    for svc in (bridge(s), robots_svc(s)):
        print(svc.stop())


@app.command("status")
def status() -> None:
    """Say whether the bridge and the robot adapter run."""
    from riskwatch.tools.services import bridge
    from riskwatch.tools.services import robots as robots_svc

    s = _settings()
    for svc in (bridge(s), robots_svc(s)):
        print(svc.status())


@app.command("bench")
def bench(
    rate: float = typer.Option(1000.0, "--rate", help="Input events per second (the simulator)"),
    seconds: float = typer.Option(60.0, "--seconds", help="How long to simulate"),
    scale: float = typer.Option(0.5, "--scale", help="Simulated entities (1.0 ≈ 1,000), as the demo"),
    out: Path = typer.Option(Path("var/bench/notify.json"), "--out", help="JSON result file"),
) -> None:
    """Latency from the event's Kafka timestamp to the receiver's HTTP request (p50/p99), and
    notifications delivered against decided, through a real Alertmanager."""
    from riskwatch.tools.bench.notify import run

    run(_settings(), rate=rate, seconds=seconds, scale=scale, out=out)
