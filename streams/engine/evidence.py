"""Evidence bundles (远程取证固证) as the processor builds them: what goes in, and when it is sealed.

Formats and hashes: :mod:`schemas.audit`; design and numbers: ``docs/evidence-and-audit.md``.

An alert's bundle is sealed when the alert opens (version 1): the entity's recent readings of the
triggering device and channel (``before_minutes`` of ``rules.yaml`` ``evidence``), the video
detections and complaints involved (complaint text masked), the inspection with its violations,
the detector's explanation and, for a suspected crime, why. Its hash starts the alert's audit
chain. A sensor alert also wants the readings *after* the trigger (``after_minutes``): they are
collected as they arrive and, once the window has passed by the entity's event time (or the
deadline timer's clock), the bundle is sealed again as version 2 (``final``), which names
version 1 in ``supersedes``; the chain records that as a row of kind ``evidence``, and the alert
then references the version-2 hash. Bundles without an after-window are final at version 1.

Per event the processor only appends ``(time, value)`` to a bounded per-device array; all the
hashing happens when an alert opens or is sealed.

>>> from datetime import datetime, timezone
>>> from schemas.events import SensorReading
>>> t = datetime(2026, 11, 27, 8, tzinfo=timezone.utc)
>>> ev = SensorReading(event_id="s1", entity_id="E1", occurred_at=t, source="iot", device_id="d1",
...                    channel="cold_chain_temp", value=9.5, unit="C")
>>> d = Draft.open(ev, "a1", "rule.sensor.cold_chain_temp", [readings_item("d1", "cold_chain_temp", "C", 30, 10,
...     [(t.timestamp() - 60, 9.1), (t.timestamp(), 9.5)])], after_s=600, key="d1:cold_chain_temp")
>>> first = d.seal_first()
>>> d.version, d.final, len(d.hash)
(1, False, 64)
>>> d.add_point(t.timestamp() + 60, 9.7)
>>> row = d.seal(t.timestamp() + 600)
>>> row["version"], row["final"], row["supersedes"] == row["header"]["supersedes"] != ""
(2, True, True)
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.audit import BundleHeader, EvidenceItem, bundle_hash, bundle_header, canonical, evidence_item
from schemas.events import Complaint, Contribution, Event, InspectionResult
from schemas.privacy import mask_pii

Item = EvidenceItem  # one item of a bundle (schemas.audit.evidence_item)
Row = dict[str, Any]  # a sealed version's row (the evidence table)


def ms(t: float) -> int:
    return int(round(t * 1000))


def readings_item(
    device: str, channel: str, unit: str, before_min: float, after_min: float, points: list[tuple[float, float]]
) -> Item:
    return evidence_item(
        f"readings:{device}:{channel}",
        "readings",
        {
            "device_id": device,
            "channel": channel,
            "unit": unit,
            "before_minutes": before_min,
            "after_minutes": after_min,
            "points": [[ms(t), v] for t, v in points],
        },
    )


def window_points(buf: array[float] | None, since: float, until: float) -> list[tuple[float, float]]:
    """(time, value) pairs of a flat ``array('d')`` [t0, v0, t1, v1, ...] with since <= t <= until."""
    if not buf:
        return []
    return [(buf[i], buf[i + 1]) for i in range(0, len(buf), 2) if since <= buf[i] <= until]


def video_item(v: tuple[float, str, str, str, float, str]) -> Item:
    t, event_id, camera, cls, conf, ref = v
    return evidence_item(
        f"video:{event_id}",
        "video",
        {
            "event_id": event_id,
            "at_ms": ms(t),
            "camera_id": camera,
            "cls": cls,
            "confidence": conf,
            "evidence_ref": ref,
        },
    )


def complaint_item(c: tuple[float, str, str, str, str]) -> Item:
    t, event_id, channel, category, text = c
    return evidence_item(
        f"complaint:{event_id}",
        "complaint",
        {"event_id": event_id, "at_ms": ms(t), "channel": channel, "category": category, "text_masked": text},
    )


def complaint_record(ev: Complaint) -> tuple[float, str, str, str, str]:
    """What an entity keeps of a complaint for later bundles (text masked once, here)."""
    return (ev.occurred_at.timestamp(), ev.event_id, str(ev.channel.value), str(ev.category.value), mask_pii(ev.text))


def inspection_item(ev: InspectionResult) -> Item:
    return evidence_item(
        f"inspection:{ev.inspection_id}",
        "inspection",
        {
            "inspection_id": ev.inspection_id,
            "event_id": ev.event_id,
            "at_ms": ms(ev.occurred_at.timestamp()),
            "item_id": ev.item_id,
            "departments": list(ev.departments),
            "outcome": ev.outcome.value,
            "violations": [
                {
                    "code": v.code,
                    "severity": v.severity.value,
                    "description": mask_pii(v.description),
                    "suspected_crime": v.suspected_crime,
                }
                for v in ev.violations
            ],
        },
    )


def explanation_item(rule: str, level: str, title: str, why: list[Contribution]) -> Item:
    return evidence_item(
        "explanation",
        "explanation",
        {
            "rule": rule,
            "level": level,
            "title": title,
            "contributions": [{"signal": c.signal, "value": c.value, "detail": c.detail} for c in why],
        },
    )


def crime_item(flags: list[tuple[str, str]]) -> Item:
    return evidence_item(
        "suspected_crime", "suspected_crime", {"flags": [f for f, _ in flags], "reasons": [r for _, r in flags]}
    )


@dataclass(slots=True)
class Draft:
    """An alert's bundle: sealed at version 1, and (sensor alerts) open for the after-window."""

    alert_id: str
    entity_id: str
    rule: str
    trigger: float
    items: list[Item]  # the items of the latest version (dropped once final: only hashes stay)
    version: int = 1
    final: bool = False
    hash: str = ""
    first_hash: str = ""
    end: float = 0.0  # after-window end (event time)
    key: str = ""  # "<device>:<channel>" collecting readings after the trigger
    after: list[tuple[float, float]] = field(default_factory=list)  # readings after the trigger

    def to_data(self) -> dict[str, Any]:
        """Data-only form (entity state on the changelog): field name -> value."""
        return {
            "alert_id": self.alert_id,
            "entity_id": self.entity_id,
            "rule": self.rule,
            "trigger": self.trigger,
            "items": self.items,
            "version": self.version,
            "final": self.final,
            "hash": self.hash,
            "first_hash": self.first_hash,
            "end": self.end,
            "key": self.key,
            "after": self.after,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Draft:
        """The draft of :meth:`to_data`'s dict; ValueError if it is not one."""
        if type(data) is not dict or type(data.get("items")) is not list or type(data.get("after", [])) is not list:
            raise ValueError("evidence draft: not a dict with a list of items")
        if not all(type(i) is dict for i in data["items"]):
            raise ValueError("evidence draft: an item is not a dict")
        known = {k: v for k, v in data.items() if k in _DRAFT_FIELDS}
        known["after"] = [(float(t), float(v)) for t, v in known.get("after", ())]
        try:
            return cls(**known)
        except TypeError as e:
            raise ValueError(f"evidence draft: {e}") from e

    @classmethod
    def open(cls, ev: Event, alert_id: str, rule: str, items: list[Item], after_s: float = 0.0, key: str = "") -> Draft:
        t = ev.occurred_at.timestamp()
        d = cls(
            alert_id=alert_id,
            entity_id=ev.entity_id,
            rule=rule,
            trigger=t,
            items=items,
            final=after_s <= 0,
            end=t + after_s,
            key=key,
        )
        return d

    def header(self, sealed_at: float, supersedes: str = "") -> BundleHeader:
        return bundle_header(
            self.alert_id,
            self.version,
            self.final,
            self.entity_id,
            self.rule,
            ms(self.trigger),
            ms(sealed_at),
            self.items,
            supersedes,
        )

    def seal_first(self) -> Row:
        h = self.header(self.trigger)
        self.hash = self.first_hash = bundle_hash(h)
        row = self._row(h)
        if self.final:
            self.items = []
        return row

    def add_point(self, t: float, v: float) -> None:
        if self.trigger < t <= self.end:
            self.after.append((t, v))

    def seal(self, at: float) -> Row:
        """Version 2 with the readings after the trigger (sealed at the window's end, so a replay
        seals the same bytes whenever the clock noticed it)."""
        items: list[Item] = []
        for it in self.items:
            data = it["data"]
            if it["kind"] == "readings" and it["name"] == f"readings:{self.key}" and isinstance(data, Mapping):
                points = data["points"]  # readings_item's [[ms, value], ...]
                if isinstance(points, list):
                    it = {**it, "data": {**data, "points": points + [[ms(t), v] for t, v in self.after]}}
            items.append(it)
        self.items, self.version, self.final = items, 2, True
        h = self.header(self.end, supersedes=self.hash)
        self.hash = bundle_hash(h)
        row = self._row(h)
        self.items, self.after = [], []
        return row

    def _row(self, header: BundleHeader) -> Row:
        return {
            "alert_id": self.alert_id,
            "version": self.version,
            "bundle_hash": self.hash,
            "entity_id": self.entity_id,
            "rule": self.rule,
            "final": self.final,
            "trigger_at_ms": ms(self.trigger),
            "sealed_at_ms": header["sealed_at_ms"],
            "supersedes": header["supersedes"],
            "header": header,
            "items": [canonical(it).decode() for it in self.items],
        }


_DRAFT_FIELDS = frozenset(Draft.__dataclass_fields__)
