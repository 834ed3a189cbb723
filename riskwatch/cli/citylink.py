"""`riskwatch city-link config|start|stop|status|bridge|bench`: docking with the city platform
(与市级平台的数据对接) through Kafka MirrorMaker 2. The link is :mod:`riskwatch.tools.citylink`;
this module only parses arguments and calls it. See docs/city-link.md."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="Docking with the city platform (市级平台对接): masked county topics out, city tasks in, "
    "via Kafka MirrorMaker 2.",
    no_args_is_help=True,
)


def _settings():
    from riskwatch.settings import load_settings

    return load_settings()


def _err(m: str) -> None:
    print(m, file=sys.stderr)


@app.command("config")
def config(
    out: Path | None = typer.Option(
        None, "--out", help="Write here instead of <citylink_dir>/mm2.properties; '-' prints it"
    ),
) -> None:
    """Write MirrorMaker 2's properties from the settings (RISKWATCH_CITYLINK_*)."""
    from riskwatch.tools.citylink import CityLink, mm2_properties, write_properties

    s = _settings()
    if out is not None and str(out) == "-":
        print(mm2_properties(s))
    else:
        print(f"wrote {write_properties(s, out) if out is not None else CityLink(s).write_config()}")


@app.command("start")
def start(
    bridge_only: bool = typer.Option(
        False, "--bridge-only", help="Only the masking/relay bridge (MirrorMaker runs elsewhere)"
    ),
) -> None:
    """Start the masking/relay bridge and MirrorMaker 2 (detached; pid and logs under citylink_dir)."""
    from riskwatch.tools.citylink import CityLink, CityLinkError

    try:
        print(CityLink(_settings()).start(log=_err, mirror=not bridge_only))
    except (CityLinkError, OSError) as e:
        raise SystemExit(f"riskwatch city-link start: {e}") from None


@app.command("stop")
def stop() -> None:
    """Stop MirrorMaker 2 and the bridge (positions are kept: a start resumes)."""
    from riskwatch.tools.citylink import CityLink

    print(CityLink(_settings()).stop())


@app.command("status")
def status() -> None:
    """Processes, and per topic the records in the county's masked copy vs. on the city."""
    from riskwatch.tools.citylink import CityLink

    for line in CityLink(_settings()).status():
        print(line)


@app.command("bridge")
def bridge(loglevel: str = typer.Option("info", "--loglevel")) -> None:
    """Run the masking/relay bridge in the foreground (what `start` runs detached; compose's citylink-bridge)."""
    from riskwatch.tools.citylink.bridge import serve

    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s] %(levelname)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    serve(_settings(), say=_err)


@app.command("bench")
def bench(
    rate: int = typer.Option(1000, "--rate", help="Events per second produced to the county"),
    seconds: int = typer.Option(30, "--seconds", help="How long"),
    topic: str = typer.Option("alerts.all", "--topic", help="Which county topic (one of citylink_topics)"),
) -> None:
    """MirrorMaker 2 replication lag (county produce -> city remote topic, bridge included) at a paced rate:
    starts its own city broker and MirrorMaker on spare loopback ports, prints p50/p90/p99/max."""
    from riskwatch.tools.bench.citylink import run
    from riskwatch.tools.broker import BrokerError
    from riskwatch.tools.citylink import CityLinkError
    from riskwatch.tools.runner import WaitTimeout

    try:
        run(_settings(), rate=rate, seconds=seconds, topic=topic)
    except (BrokerError, CityLinkError, WaitTimeout) as e:
        raise SystemExit(
            f"riskwatch city-link bench: {str(e).splitlines()[0]} "
            "(logs under var/citylink-bench/; rerun when the machine is quieter)"
        ) from None
