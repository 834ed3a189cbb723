"""The devices the MQTT edge knows: the registry (ClickHouse ``devices`` FINAL, not removed).

Read the way ``riskwatch query`` reads: through the running worker's read-only ``/query`` when it
owns the embedded chDB directory (``via_worker``), else with the sinks' clickhouse-connect client
directly (a server, or an embedded directory no worker holds). The bridge takes a device's entity, channels,
default unit and owner from here; the broker's ACL takes the device ids.

>>> d = Device("boiler-7", "E1", ("boiler_pressure",), "MPa", "")
>>> d.source
'mqtt:boiler-7'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from riskwatch.settings import Settings

WorkerQuery = Callable[[str], "list[dict] | None"]
"""Runs read-only SQL through this configuration's running worker; None when no worker owns the data
(riskwatch.tools.mqtt.worker_query builds one; front ends do not import the tools)."""

SQL = (
    "SELECT device_id, entity_id, channels, unit, owner FROM {db}.devices FINAL "
    "WHERE action != 'removed' ORDER BY device_id"
)


class RegistryUnavailable(RuntimeError):
    """The registry could not be read (ClickHouse down, table missing); callers keep what they had."""


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    entity_id: str
    channels: tuple[str, ...]
    unit: str
    owner: str

    @property
    def source(self) -> str:
        """The readings' ``source``: the vendor that owns the device, else its MQTT login."""
        return self.owner or f"mqtt:{self.device_id}"


def _device(row: dict) -> Device:
    return Device(
        device_id=str(row["device_id"]),
        entity_id=str(row["entity_id"]),
        channels=tuple(str(c) for c in row["channels"] or ()),
        unit=str(row["unit"] or ""),
        owner=str(row["owner"] or ""),
    )


def _read(url: str, sql: str) -> list[dict]:
    from sinks.clickhouse import make_client

    client = make_client(url)
    try:
        res = client.query(sql)
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]
    finally:
        client.close()


def _read_in_child(url: str, sql: str) -> list[dict]:
    """An embedded directory no worker holds, read by a child process: chDB keeps a directory locked for
    the life of the process that opened it, and a long-running bridge holding it would keep the worker out."""
    import subprocess
    import sys

    import orjson

    p = subprocess.run(
        [sys.executable, "-m", "edge.mqtt.registry", url, sql], capture_output=True, timeout=120, check=False
    )
    if p.returncode != 0:
        lines = p.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"the reading child exited with {p.returncode}")
    rows: list[dict] = orjson.loads(p.stdout)
    return rows


def load_devices(settings: Settings, via_worker: WorkerQuery | None = None) -> dict[str, Device]:
    """``{device_id: Device}`` of every registered, not removed device."""
    sql = SQL.format(db=settings.clickhouse_database)
    try:
        if via_worker is not None and settings.clickhouse_url.startswith("chdb://"):
            rows = via_worker(sql)
            if rows is not None:
                return {r["device_id"]: _device(r) for r in rows}
        if settings.clickhouse_url.startswith("chdb://"):
            rows = _read_in_child(settings.clickhouse_url, sql)
        else:
            rows = _read(settings.clickhouse_url, sql)
    except Exception as e:  # noqa: BLE001 - one line: the engine's message, whatever the transport
        raise RegistryUnavailable(f"cannot read the device registry: {type(e).__name__}: {e}"[:500]) from None
    return {r["device_id"]: _device(r) for r in rows}


if __name__ == "__main__":  # the child of _read_in_child: rows of one query as JSON on stdout
    import sys

    import orjson

    sys.stdout.buffer.write(orjson.dumps(_read(sys.argv[1], sys.argv[2]), default=str))
