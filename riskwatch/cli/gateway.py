"""`riskwatch gateway run|start|stop|status|bench` and `riskwatch sources add|list|disable|enable|rotate`."""

from __future__ import annotations

import sys

import typer

from riskwatch.settings import load_settings

gateway_app = typer.Typer(
    help="The HTTP ingest gateway for vendors' platforms (docs/sources.md).", no_args_is_help=True
)
sources_app = typer.Typer(
    help="Source keys of the ingest gateway (SHA-256 hashed in var/gateway/).", no_args_is_help=True
)


def _store():
    from edge.gateway.keys import SourceStore

    return SourceStore.at(load_settings().gateway_dir)


def _fail(cmd: str, e: Exception) -> SystemExit:
    return SystemExit(f"riskwatch sources {cmd}: {e}")


@sources_app.command("add")
def sources_add(
    name: str = typer.Option(..., "--name", help="The vendor's source name, set as every event's `source`"),
    kinds: str = typer.Option(..., "--kinds", help="Comma-separated: sensor,video,complaint,registry,device"),
    tz: str = typer.Option("", "--tz", help="IANA zone of times sent without an offset (else such times are refused)"),
    mapping: str = typer.Option("", "--mapping", help="Payload mapping: file stem under riskwatch/data/sources/"),
    rate: float = typer.Option(2000.0, "--rate", help="Events per second (429 beyond; bursts of 2 s pass)"),
    require_signature: bool = typer.Option(False, "--require-signature", help="Refuse requests without HMAC signature"),
) -> None:
    """Register a source and print its key once (only its SHA-256 is stored)."""
    from edge.gateway.keys import SourceError
    from edge.gateway.mapping import MappingError

    try:
        src, key = _store().add(
            name,
            tuple(k.strip() for k in kinds.split(",") if k.strip()),
            tz=tz,
            mapping=mapping,
            rate=rate,
            require_signature=require_signature,
        )
    except (SourceError, MappingError) as e:
        raise _fail("add", e) from None
    print(f"added source {src.name} (kinds {','.join(src.kinds)}, tz {src.tz or '-'}, mapping {src.mapping or '-'})")
    print(f"key (shown once): {key}")


@sources_app.command("list")
def sources_list() -> None:
    """List sources (never keys)."""
    from sinks.query import format_table

    rows = [
        (
            s.name,
            ",".join(s.kinds),
            s.tz or "-",
            s.mapping or "-",
            f"{s.rate:g}/s",
            "yes" if s.require_signature else "no",
            "disabled" if s.disabled else "active",
        )
        for s in _store().all()
    ]
    print(format_table(["source", "kinds", "tz", "mapping", "rate", "signed", "state"], rows))


@sources_app.command("disable")
def sources_disable(name: str = typer.Argument(...)) -> None:
    """Disable a source: its key is refused (401) within 2 s by a running gateway."""
    from edge.gateway.keys import SourceError

    try:
        _store().set_disabled(name, True)
    except SourceError as e:
        raise _fail("disable", e) from None
    print(f"disabled {name}")


@sources_app.command("enable")
def sources_enable(name: str = typer.Argument(...)) -> None:
    """Enable a disabled source again (same key)."""
    from edge.gateway.keys import SourceError

    try:
        _store().set_disabled(name, False)
    except SourceError as e:
        raise _fail("enable", e) from None
    print(f"enabled {name}")


@sources_app.command("sign")
def sources_sign(
    name: str = typer.Argument(...),
    off: bool = typer.Option(False, "--off", help="Accept unsigned requests again"),
) -> None:
    """Require HMAC signatures (X-Timestamp, X-Nonce, X-Signature) from a source, or with --off stop requiring."""
    from edge.gateway.keys import SourceError

    try:
        _store().set_signature(name, not off)
    except SourceError as e:
        raise _fail("sign", e) from None
    print(f"{name}: signatures {'optional' if off else 'required'}")


@sources_app.command("rotate")
def sources_rotate(name: str = typer.Argument(...)) -> None:
    """Give a source a new key (printed once); the old key stops working."""
    from edge.gateway.keys import SourceError

    try:
        key = _store().rotate(name)
    except SourceError as e:
        raise _fail("rotate", e) from None
    print(f"rotated {name}; new key (shown once): {key}")


@gateway_app.command("run")
def gateway_run() -> None:
    """Serve the gateway in the foreground (uvicorn); API docs at /docs."""
    import logging

    import uvicorn

    from edge.gateway.app import create_app

    s = load_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    print(f"riskwatch gateway at http://{s.gateway_host}:{s.gateway_port} (docs: /docs)", file=sys.stderr)
    uvicorn.run(
        create_app(s),
        host=s.gateway_host,
        port=s.gateway_port,
        log_level="warning",
        proxy_headers=False,
        server_header=False,
    )


@gateway_app.command("start")
def gateway_start() -> None:
    """Start the gateway in the background (reused if running)."""
    from riskwatch.tools.gateway_server import GatewayError, GatewayServer

    try:
        print(GatewayServer(load_settings()).start(log=lambda m: print(m, file=sys.stderr)))
    except GatewayError as e:
        raise SystemExit(f"riskwatch gateway start: {e}") from None


@gateway_app.command("stop")
def gateway_stop() -> None:
    """Stop the background gateway."""
    from riskwatch.tools.gateway_server import GatewayServer

    print(GatewayServer(load_settings()).stop())


@gateway_app.command("status")
def gateway_status() -> None:
    """Say whether the gateway runs."""
    from riskwatch.tools.gateway_server import GatewayServer

    print(GatewayServer(load_settings()).status())


@gateway_app.command("bench")
def gateway_bench(
    readings: int = typer.Option(20_000, "--readings", help="Readings posted in batches of 100"),
    singles: int = typer.Option(1_000, "--singles", help="Single-event requests"),
    probes: int = typer.Option(50, "--probes", help="Breaching boiler readings timed to their alert"),
    kill: bool = typer.Option(True, "--kill/--no-kill", help="Also kill -9 the gateway mid-run and count"),
    compare: bool = typer.Option(
        False, "--compare", help="Instead: the worker's readings/s fed edge batches vs one reading per message"
    ),
) -> None:
    """Throughput, CPU per reading and POST→alert latency of the gateway with a worker running."""
    if compare:
        from riskwatch.tools.bench.edge_compare import run as run_compare

        run_compare(load_settings(), n=readings)
        return
    from riskwatch.tools.bench.gateway import run

    run(load_settings(), readings=readings, singles=singles, probes=probes, kill=kill)


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
    app.add_typer(sources_app, name="sources")
