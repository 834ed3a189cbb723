"""Vendor payload mappings as data: one YAML file per source under ``riskwatch/data/sources/``.

A mapping turns one item of a vendor's own JSON into one or more riskwatch events (dicts ready for
the pydantic models of ``schemas/events.py``):

- ``fields``: target field → JMESPath expression into the item (``jmespath`` library);
- ``static``: fixed target fields (e.g. a complaint's ``channel``);
- ``classes``: vendor class name → :class:`schemas.events.VideoClass` (``老鼠`` → ``rodent``);
- ``scale``: target field → factor (a vendor's 0-100 score → confidence 0-1);
- ``units`` / ``channels``: the unit of each reading (the worker converts with pint; the gateway only
  says what the vendor sends, e.g. kPa);
- ``time_format`` (``iso``, ``epoch_s``, ``epoch_ms``) and ``tz``: a time without an offset is
  accepted only when the mapping or the source declares a zone;
- ``snapshot`` / ``snapshot_hosts``: where a video callback carries an image URL and which hosts the
  gateway may fetch it from (evidence, :mod:`edge.gateway.evidence`).

A sensor mapping with ``values`` + ``channels`` makes one reading per vendor key present (a
ThingsBoard-like ``{"ts": ..., "values": {"pressure": 812.5, "temperature": 168.2}}``).

>>> m = load_mapping("mingchu_video")
>>> out = m.apply({"alarmId": "A1", "storeCode": "E1", "deviceSerial": "CAM-1", "alarmType": "老鼠",
...                "score": 87, "alarmTime": "2026-12-05 08:30:12", "picUrl": ""}, source="v")
>>> out[0]["cls"], out[0]["confidence"], out[0]["event_id"]
('rodent', 0.87, 'v:A1')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jmespath
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.events import SensorChannel, VideoClass

SOURCES_DIR = Path(__file__).resolve().parents[2] / "riskwatch" / "data" / "sources"


class MappingError(ValueError):
    """A mapping file that does not load, or an item a mapping cannot map; names the source and field."""

    def __init__(self, msg: str, field: str = ""):
        super().__init__(msg)
        self.field = field


class ChannelMap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    channel: SensorChannel
    unit: str = Field(min_length=1, max_length=16, description="Unit the vendor sends, e.g. kPa, MPa, C")


class MappingSpec(BaseModel):
    """The YAML file's model (a typo'd key is an error, not silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sensor", "video", "complaint", "registry", "device"]
    description: str = ""
    tz: str = Field("", description="IANA zone of times without an offset; empty = such times are refused")
    time_format: Literal["iso", "epoch_s", "epoch_ms"] = "iso"
    fields: dict[str, str] = Field(description="target field → JMESPath expression")
    static: dict[str, Any] = Field(default_factory=dict)
    classes: dict[str, VideoClass] = Field(default_factory=dict)
    scale: dict[str, float] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict, description="target field → unit (single readings)")
    values: str = Field("", description="JMESPath of an object of readings (sensor): one reading per key")
    channels: dict[str, ChannelMap] = Field(default_factory=dict, description="vendor key → channel and unit")
    snapshot: str = Field("", description="JMESPath of a snapshot image URL (video)")
    snapshot_hosts: list[str] = Field(default_factory=list, description="Hosts the gateway may fetch snapshots from")

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        if v:
            ZoneInfo(v)  # raises for an unknown zone
        return v


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    spec: MappingSpec
    compiled: dict[str, Any]  # target field → compiled JMESPath
    values_expr: Any
    snapshot_expr: Any

    @property
    def tz(self) -> str:
        return self.spec.tz

    def _get(self, expr: Any, item: Any, field: str) -> Any:
        try:
            return expr.search(item)
        except jmespath.exceptions.JMESPathError as e:
            raise MappingError(f"mapping {self.name}: field {field}: {e}", field) from None

    def snapshot_url(self, item: Any) -> str:
        if self.snapshot_expr is None:
            return ""
        v = self._get(self.snapshot_expr, item, "snapshot")
        return v if isinstance(v, str) else ""

    def apply(self, item: Any, source: str) -> list[dict[str, Any]]:
        """The riskwatch event(s) of one vendor item (``source`` set; not yet validated).
        Raises :class:`MappingError` naming the field (``cls``, ``occurred_at`` ...)."""
        spec = self.spec
        if not isinstance(item, dict):
            raise MappingError(f"mapping {self.name}: expected a JSON object, got {type(item).__name__}")
        out: dict[str, Any] = dict(spec.static)
        for field, expr in self.compiled.items():
            v = self._get(expr, item, field)
            if v is not None:
                out[field] = v
        for field, factor in spec.scale.items():
            if isinstance(out.get(field), int | float) and not isinstance(out.get(field), bool):
                out[field] = round(out[field] * factor, 9)
        if spec.classes and "cls" in out:
            raw = out["cls"]
            if raw not in spec.classes:
                known = ", ".join(sorted(spec.classes))
                raise MappingError(f"mapping {self.name}: field cls: unknown class {raw!r}; known: {known}", "cls")
            out["cls"] = spec.classes[raw].value
        if "occurred_at" in out and spec.time_format != "iso":
            t = out["occurred_at"]
            if not isinstance(t, int | float) or isinstance(t, bool):
                raise MappingError(
                    f"mapping {self.name}: field occurred_at: expected {spec.time_format}, got {t!r}", "occurred_at"
                )
            secs = t / 1000 if spec.time_format == "epoch_ms" else t
            try:
                out["occurred_at"] = datetime.fromtimestamp(secs, UTC).isoformat()
            except (OverflowError, OSError, ValueError):
                raise MappingError(
                    f"mapping {self.name}: field occurred_at: {t!r} is not a time", "occurred_at"
                ) from None
        for field, unit in spec.units.items():
            out.setdefault(field, unit)
        if "event_id" not in out:  # the item's own bytes name it: a re-post of the same item is the same event
            digest = hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
            out["event_id"] = f"{source}:{digest}"
        else:
            out["event_id"] = f"{source}:{out['event_id']}"
        out["source"] = source
        if self.values_expr is None:
            return [out]
        values = self._get(self.values_expr, item, "values")
        if not isinstance(values, dict) or not values:
            raise MappingError(f"mapping {self.name}: field values: expected an object of readings", "values")
        readings = []
        for key, v in values.items():
            ch = spec.channels.get(key)
            if ch is None:
                continue  # a vendor key the mapping does not name (battery, rssi ...) is not a reading
            readings.append(
                {
                    **out,
                    "event_id": f"{out['event_id']}:{key}",
                    "channel": ch.channel.value,
                    "unit": ch.unit,
                    "value": v,
                }
            )
        if not readings:
            known = ", ".join(sorted(spec.channels))
            raise MappingError(f"mapping {self.name}: field values: none of {known} present", "values")
        return readings


def parse_mapping(name: str, text: str) -> Mapping:
    """Validate a mapping file's text; errors name the file and the field."""
    try:
        data = yaml.safe_load(text)
        spec = MappingSpec.model_validate(data)
    except yaml.YAMLError as e:
        raise MappingError(f"mapping {name}: not YAML: {e}") from None
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise MappingError(f"mapping {name}: field {field}: {err['msg']}", field) from None
    compiled = {}
    for field, expr in spec.fields.items():
        try:
            compiled[field] = jmespath.compile(expr)
        except jmespath.exceptions.JMESPathError as e:
            raise MappingError(f"mapping {name}: field fields.{field}: bad JMESPath {expr!r}: {e}", field) from None
    if spec.values and not spec.channels:
        raise MappingError(f"mapping {name}: field channels: `values` needs `channels`", "channels")
    try:
        values_expr = jmespath.compile(spec.values) if spec.values else None
        snapshot_expr = jmespath.compile(spec.snapshot) if spec.snapshot else None
    except jmespath.exceptions.JMESPathError as e:
        raise MappingError(f"mapping {name}: field values/snapshot: bad JMESPath: {e}") from None
    return Mapping(name, spec, compiled, values_expr, snapshot_expr)


@cache
def load_mapping(stem: str, directory: Path = SOURCES_DIR) -> Mapping:
    """``riskwatch/data/sources/<stem>.yaml``, validated (cached per process)."""
    if not stem or "/" in stem or stem.startswith("."):
        raise MappingError(f"mapping {stem!r}: a file stem under {directory}")
    path = directory / f"{stem}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise MappingError(f"mapping {stem}: no file {path}; known: {known}")
    return parse_mapping(stem, path.read_text(encoding="utf-8"))
