"""An MQTT message → readings of the ``sensor_batch`` contract, or the reasons it is refused. Pure.

A device publishes to ``devices/<device_id>/telemetry`` either one reading::

    {"channel": "boiler_pressure", "value": 0.82, "unit": "MPa", "occurred_at": "2026-12-05T10:00:00+08:00"}

or a gateway batch: a JSON array of such readings, or ``{"readings": [...]}``. The device is the one
the TOPIC names, never the body (a body's ``device_id``, ``entity_id`` or ``source`` is ignored);
its entity comes from the registry. ``channel`` may be left out by a one-channel device, ``unit``
by a device whose registry entry has one, ``occurred_at`` by a device without a clock (the
bridge's receipt time), ``event_id`` always: it is then derived from the device and the message's
bytes, so a redelivered message carries the same id and the worker drops the copy.

>>> from edge.mqtt.registry import Device
>>> dev = Device("b7", "E1", ("boiler_pressure",), "MPa", "")
>>> r = convert(dev, "b7", b'{"value": 0.8}', "2026-12-05T10:00:00+08:00")
>>> r.refused, r.readings[0]["channel"], r.readings[0]["unit"], r.readings[0]["source"]
([], 'boiler_pressure', 'MPa', 'mqtt:b7')
>>> convert(dev, "b7", b'{"channel": "boiler_temp", "value": 80}', "2026-12-05T10:00:00+08:00").refused
[(None, "readings[0].channel: the device has no channel 'boiler_temp' (it has: boiler_pressure)")]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from edge.mqtt.registry import Device
from schemas.events import MAX_BATCH_READINGS, BatchReading

_READING = TypeAdapter(BatchReading)
_IGNORED = frozenset({"device_id", "entity_id", "source", "kind", "gateway_id", "schema_version"})


@dataclass(slots=True)
class Converted:
    """Readings ready for a ``sensor_batch`` of ``entity_id``, and ``(index, reason)`` of the refused:
    index None = the whole message (malformed JSON, unknown device)."""

    entity_id: str = ""
    readings: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int | None, str]] = field(default_factory=list)


def _event_id(device_id: str, raw: bytes, i: int) -> str:
    digest = hashlib.blake2b(device_id.encode() + b"\0" + raw, digest_size=12).hexdigest()
    return f"mqtt-{digest}-{i}"


def _reason(e: ValidationError, i: int) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"readings[{i}].{loc}: {err['msg']}")
    return "; ".join(parts)


def convert(device: Device | None, device_id: str, raw: bytes, received_at: str) -> Converted:
    """Readings of one message of ``device_id`` (from the topic); ``device`` None = not registered."""
    if device is None:
        return Converted(refused=[(None, f"unknown device {device_id!r}: not in the device registry")])
    out = Converted(entity_id=device.entity_id)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        out.refused.append((None, f"malformed JSON: {e}"))
        return out
    items = body.get("readings") if isinstance(body, dict) and "readings" in body else body
    single = isinstance(items, dict)
    if single:
        items = [items]
    if not isinstance(items, list) or not items:
        out.refused.append((None, "expected a reading (JSON object), a JSON array of readings or {readings: [...]}"))
        return out
    if len(items) > MAX_BATCH_READINGS:
        out.refused.append((None, f"{len(items)} readings in one message; at most {MAX_BATCH_READINGS}"))
        return out
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            out.refused.append((i, f"readings[{i}]: expected a JSON object, got {type(item).__name__}"))
            continue
        r = {k: v for k, v in item.items() if k not in _IGNORED}
        r["device_id"] = device_id
        r.setdefault("event_id", _event_id(device_id, raw, i))
        if "channel" not in r and len(device.channels) == 1:
            r["channel"] = device.channels[0]
        if not r.get("unit") and device.unit:
            r["unit"] = device.unit
        r.setdefault("occurred_at", received_at)
        r["source"] = device.source
        if "channel" in r and r["channel"] not in device.channels:
            has = ", ".join(device.channels) or "none"
            out.refused.append(
                (i, f"readings[{i}].channel: the device has no channel {r['channel']!r} (it has: {has})")
            )
            continue
        try:
            _READING.validate_python(r)
        except ValidationError as e:
            out.refused.append((i, _reason(e, i)))
            continue
        out.readings.append(r)
    if single:  # a single reading is refused as a whole message (a dead letter without indexes)
        out.refused = [(None, why) for _, why in out.refused]
    return out
