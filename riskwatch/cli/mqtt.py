"""`riskwatch mqtt start|stop|status|credentials|acl|bridge [start|stop|status]|bench`: devices over MQTT."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

app = typer.Typer(
    help="MQTT devices: the local mosquitto broker, per-device credentials, the ACL and the bridge to Kafka.",
    no_args_is_help=True,
)


def _settings():
    from riskwatch.settings import load_settings

    return load_settings()


def _registry_ids(s) -> list[str]:
    from edge.mqtt.registry import RegistryUnavailable, load_devices
    from riskwatch.tools.mqtt import worker_query

    try:
        return sorted(load_devices(s, worker_query(s)))
    except RegistryUnavailable as e:
        raise SystemExit(f"riskwatch mqtt: {e}") from None


@app.command("start")
def start() -> None:
    """Start (or reuse) mosquitto on 127.0.0.1 with the generated config; the ACL from the device registry."""
    from edge.mqtt.broker import BrokerError
    from edge.mqtt.registry import RegistryUnavailable, load_devices
    from riskwatch.tools.mqtt import Mosquitto, worker_query
    from riskwatch.tools.services import ServiceError

    s = _settings()
    m = Mosquitto(s)
    try:
        m.write_acl(load_devices(s, worker_query(s)))
    except RegistryUnavailable as e:
        print(f"riskwatch mqtt start: 注意: {e}; ACL 保持不变 (`riskwatch mqtt acl` 稍后重建)", file=sys.stderr)
    try:
        print(m.start(log=lambda msg: print(msg, file=sys.stderr)))
    except (ServiceError, BrokerError) as e:
        raise SystemExit(f"riskwatch mqtt start: {e}") from None


@app.command("config")
def config(
    listen: str = typer.Option("127.0.0.1", "--listen", help="Listener address (0.0.0.0 only inside a container)"),
    root: bool = typer.Option(False, "--root", help="Write `user root` (a container whose files another uid wrote)"),
) -> None:
    """Write mosquitto's files (config, bridge password, ACL from the registry) without starting it (compose)."""
    from edge.mqtt.broker import BrokerError, BrokerFiles

    s = _settings()
    files = BrokerFiles(s, listen_host=listen, stay_root=root or None)
    try:
        files.prepare()
    except BrokerError as e:
        raise SystemExit(f"riskwatch mqtt config: {e}") from None
    n = files.write_acl(_registry_ids(s))
    print(f"{files.config_path} (listener {listen}:{s.mqtt_port}), ACL: {n} devices")


@app.command("stop")
def stop() -> None:
    """Stop mosquitto (it saves its persistent sessions and queued messages first)."""
    from riskwatch.tools.mqtt import Mosquitto

    print(Mosquitto(_settings()).stop())


@app.command("status")
def status() -> None:
    """Say whether mosquitto and the background bridge run."""
    from riskwatch.tools.mqtt import BridgeService, Mosquitto

    s = _settings()
    print(Mosquitto(s).status())
    print(BridgeService(s).status())


@app.command("credentials")
def credentials(
    device_id: str = typer.Argument(..., help="The device's id (its MQTT login), or with --platform the owner's name"),
    platform: bool = typer.Option(
        False, "--platform", help="A vendor platform's login: it may publish to the topics of the devices it owns"
    ),
) -> None:
    """Create or rotate a device's (or a vendor platform's) MQTT password: printed once, stored hashed."""
    from edge.mqtt.broker import BrokerError, new_device_password
    from edge.mqtt.registry import RegistryUnavailable, load_devices
    from riskwatch.tools.mqtt import Mosquitto, worker_query

    s = _settings()
    if device_id == s.mqtt_bridge_user:
        raise SystemExit("riskwatch mqtt credentials: that login is the bridge's")
    try:
        devices = load_devices(s, worker_query(s))
    except RegistryUnavailable as e:
        raise SystemExit(f"riskwatch mqtt: {e}") from None
    owned = sorted(d for d, dev in devices.items() if dev.owner == device_id)
    if platform and not owned:
        raise SystemExit(f"riskwatch mqtt credentials: 设备台账中没有 owner 为 {device_id} 的设备")
    if not platform and device_id not in devices:
        raise SystemExit(f"riskwatch mqtt credentials: 设备 {device_id} 不在设备台账中(先登记设备,再发放 MQTT 凭据)")
    m = Mosquitto(s)
    pw = new_device_password()
    try:
        m.set_password(device_id, pw)
    except (ValueError, BrokerError) as e:
        raise SystemExit(f"riskwatch mqtt credentials: {e}") from None
    if platform:
        m.write_acl(devices)
    m.reload()
    who = f"平台 {device_id}({len(owned)} 台设备)" if platform else f"设备 {device_id}"
    print(f"{who} 的 MQTT 密码(只显示这一次,旧密码已失效):")
    print(pw)
    topic = "devices/<device_id>/telemetry(只限本平台的设备)" if platform else f"devices/{device_id}/telemetry"
    print(f"连接: mqtt://{s.mqtt_host}:{s.mqtt_port}  用户名: {device_id}  主题: {topic}")


@app.command("acl")
def acl() -> None:
    """Rebuild the ACL from the device registry and reload mosquitto (SIGHUP); removed devices lose their login."""
    from edge.mqtt.registry import RegistryUnavailable, load_devices
    from riskwatch.tools.mqtt import Mosquitto, worker_query

    s = _settings()
    try:
        devices = load_devices(s, worker_query(s))
    except RegistryUnavailable as e:
        raise SystemExit(f"riskwatch mqtt: {e}") from None
    m = Mosquitto(s)
    n = m.write_acl(devices)  # devices and their owners' platform logins
    dropped = m.remove_logins({*devices, *(d.owner for d in devices.values() if d.owner), s.mqtt_bridge_user})
    m.reload()
    print(f"ACL: {n} devices" + (f"; logins removed: {', '.join(dropped)}" if dropped else "") + f" ({m.acl_file})")


bridge_app = typer.Typer(
    help="The MQTT → Kafka bridge: `riskwatch mqtt bridge` runs it in the foreground; start|stop|status in the "
    "background.",
    invoke_without_command=True,
)
app.add_typer(bridge_app, name="bridge")


@bridge_app.callback()
def bridge(ctx: typer.Context, loglevel: str = typer.Option("info", help="error|warning|info|debug")) -> None:
    """Run the MQTT → Kafka bridge in the foreground (Ctrl-C stops), or start|stop|status it in the background."""
    if ctx.invoked_subcommand is not None:
        return
    from edge.mqtt.bridge import serve
    from riskwatch.tools.mqtt import worker_query

    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    s = _settings()
    try:
        serve(s, worker_query(s))
    except OSError as e:
        raise SystemExit(
            f"riskwatch mqtt bridge: cannot serve /metrics on 127.0.0.1:{s.mqtt_bridge_port} ({e}); "
            "set RISKWATCH_MQTT_BRIDGE_PORT"
        ) from None


@bridge_app.command("start")
def bridge_start() -> None:
    """Start (or reuse) the bridge in the background (pid and log in the mqtt data directory)."""
    from riskwatch.tools.mqtt import BridgeService
    from riskwatch.tools.services import ServiceError

    try:
        print(BridgeService(_settings()).start(log=lambda msg: print(msg, file=sys.stderr)))
    except ServiceError as e:
        raise SystemExit(f"riskwatch mqtt bridge start: {e}") from None


@bridge_app.command("stop")
def bridge_stop() -> None:
    """Stop the background bridge (unacknowledged messages stay on the broker)."""
    from riskwatch.tools.mqtt import BridgeService

    print(BridgeService(_settings()).stop())


@bridge_app.command("status")
def bridge_status() -> None:
    """Say whether the background bridge runs (healthy = subscribed to the broker)."""
    from riskwatch.tools.mqtt import BridgeService

    print(BridgeService(_settings()).status())


@app.command("bench")
def bench(
    devices: int = typer.Option(50, "--devices", help="Simulated devices (each its own MQTT login)"),
    burst: int = typer.Option(20_000, "--burst", help="Messages of the throughput phase (as fast as published)"),
    rate: float = typer.Option(500.0, "--rate", help="MQTT messages/s published in the latency and fault phases"),
    seconds: float = typer.Option(20.0, "--seconds", help="How long each paced phase publishes"),
    faults: bool = typer.Option(True, "--faults/--no-faults", help="kill -9 the bridge, restart mosquitto and Kafka"),
    out: Path = typer.Option(Path("var/bench/mqtt.json"), "--out", help="JSON result file"),
) -> None:
    """MQTT messages/s through the bridge, publish → alert p50/p99, bridge CPU per message, counts
    in = counts stored across kill -9 of the bridge and restarts of mosquitto and Kafka (own broker)."""
    from riskwatch.tools.bench.mqtt import run

    run(_settings(), devices=devices, rate=rate, seconds=seconds, faults=faults, out=out, burst=burst)
