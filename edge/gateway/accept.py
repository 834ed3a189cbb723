"""What the gateway does with a request body: items → (mapped) events → validated → Kafka messages.

Pure (no HTTP, no Kafka): :func:`parse_body` splits a body (one JSON object, a JSON array, or NDJSON)
into items; :class:`Acceptor` maps each item with the source's mapping (if any), sets ``source`` from
the key (a body's ``source`` is overwritten), makes naive times aware with the source's zone (refused
without one), validates with the pydantic models of ``schemas/events.py`` and the catalog context
(as the worker's edge does), refuses events older than ``gateway_max_age_hours``, and builds:

- per item a result: accepted with its event ids, or refused with each error's field path
  (pydantic's ``loc`` joined, prefixed by the item's index: ``[3].value``);
- the Kafka messages: sensor readings grouped per entity into ``sensor_batch`` messages (≤ 500
  readings each, ``gateway_id`` = the source), other events one message each, keyed by entity_id;
- one dead letter per refused item, with that item's original bytes and ``source`` set;
- a complaint that names a business instead of an ``entity_id`` (``subject``: name, address,
  credit_code, licence) is matched against the registry (:mod:`edge.matching`): matched, it carries
  its entity and ``match`` (method, confidence); not matched with confidence, it goes to the office's
  matching queue (``events.unmatched``) and its result says ``queued``. A credit code with a bad check
  digit refuses the item.

>>> from riskwatch.domain.catalog import load_catalog
>>> from edge.gateway.keys import Source
>>> src = Source("vendor-a", ("sensor",), "Asia/Shanghai", "", 100.0, False, False)
>>> acc = Acceptor(load_catalog())
>>> body = (b'[{"event_id":"r1","entity_id":"E1","occurred_at":"' + _now_naive() + b'","source":"x",'
...         b'"device_id":"d1","channel":"cold_chain_temp","value":3.5,"unit":"C"},{"event_id":"r2"}]')
>>> out = acc.accept(src, "sensor", parse_body(body, "application/json"))
>>> [r.status for r in out.results], out.results[1].errors[0]["loc"]
(['accepted', 'refused'], '[1].entity_id')
>>> [(m.topic, m.key, m.count) for m in messages("sensor", out.events, src.name)]
[('events.sensor', b'E1', 1)]
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import TypeAdapter, ValidationError

from edge.gateway.keys import Source
from edge.gateway.mapping import Mapping, MappingError, load_mapping
from edge.matching import BadIdentifier, Candidates, Matcher, Subject, alias_key, queue_item
from riskwatch.domain.catalog import Catalog
from schemas.events import (
    MAX_BATCH_READINGS,
    Complaint,
    DeadLetter,
    DeviceEvent,
    EntityEvent,
    Event,
    SensorReading,
    VideoDetection,
)
from schemas.privacy import mask_pii

KIND_MODELS: dict[str, type[Event]] = {
    "sensor": SensorReading,
    "video": VideoDetection,
    "complaint": Complaint,
    "registry": EntityEvent,
    "device": DeviceEvent,
}
DEADLETTER = "deadletter"
NDJSON = "application/x-ndjson"


class BodyError(ValueError):
    """The body is not JSON (or not NDJSON): the request is refused as a whole (400)."""


@dataclass(slots=True)
class Items:
    """A body's items and how to find an item's original bytes (only needed when it is refused)."""

    values: list[Any]
    body: bytes
    lines: list[bytes] | None = None  # NDJSON: each item's line
    _spans: list[bytes] | None = None

    def raw(self, i: int) -> bytes:
        if self.lines is not None:
            return self.lines[i]
        if len(self.values) == 1 and not self.body.lstrip().startswith(b"["):
            return self.body
        if self._spans is None:  # an array: find each element's bytes once, with the stdlib's raw decoder
            self._spans = _array_spans(self.body)
        return self._spans[i] if i < len(self._spans) else b""


def _array_spans(body: bytes) -> list[bytes]:
    text = body.decode("utf-8")
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    out: list[bytes] = []
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return out
        _, end = dec.raw_decode(text, i)
        out.append(text[i:end].encode())
        i = end


def parse_body(body: bytes, content_type: str) -> Items:
    """One JSON object, a JSON array of them, or NDJSON (``application/x-ndjson``: one per line).
    A malformed NDJSON line is one refused item (its line kept); malformed JSON refuses the body."""
    if content_type.split(";")[0].strip().lower() == NDJSON:
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        values: list[Any] = []
        for ln in lines:
            try:
                values.append(orjson.loads(ln))
            except orjson.JSONDecodeError as e:
                values.append(_Malformed(str(e)))
        if not values:
            raise BodyError("empty body: no events")
        return Items(values, body, lines)
    try:
        v = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BodyError(f"malformed JSON: {e}") from None
    if isinstance(v, list):
        if not v:
            raise BodyError("empty array: no events")
        return Items(v, body)
    return Items([v], body)


@dataclass(frozen=True, slots=True)
class _Malformed:
    why: str


@dataclass(slots=True)
class ItemResult:
    index: int
    status: str  # accepted | refused
    event_ids: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)  # {"loc": "[3].value", "msg": ...}
    queued: list[str] = field(default_factory=list)  # event ids sent to the office's matching queue

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.event_ids:
            d["event_ids"] = self.event_ids
        if self.queued:
            d["queued"] = self.queued
        if self.errors:
            d["errors"] = self.errors
        return d


@dataclass(frozen=True, slots=True)
class Message:
    topic: str  # without the deployment's topic prefix
    key: bytes | None
    value: bytes
    count: int  # events in it (a sensor batch: its readings; a dead letter: 0)


@dataclass(slots=True)
class Snapshot:
    """A video event whose callback carried an image URL: fetched before the event is produced."""

    event: VideoDetection
    url: str
    hosts: tuple[str, ...]


@dataclass(slots=True)
class Accepted:
    results: list[ItemResult]
    events: list[Event]  # accepted, in order (sensor readings included)
    dead: list[Message]
    snapshots: list[Snapshot]
    queued: list[Message] = field(default_factory=list)  # to events.unmatched (the office matches them)

    @property
    def accepted(self) -> int:
        return sum(r.status == "accepted" for r in self.results)

    @property
    def refused(self) -> int:
        return len(self.results) - self.accepted


def _now_naive() -> bytes:  # doctest helper: a plausible local time without an offset
    return (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(minutes=5)).replace(tzinfo=None).isoformat().encode()


class Acceptor:
    def __init__(
        self,
        catalog: Catalog,
        max_age: timedelta = timedelta(hours=72),
        mappings: Callable[[str], Mapping] = load_mapping,
        extra_hosts: tuple[str, ...] = (),
    ):
        self.context = {"catalog": catalog}
        self.max_age = max_age
        self.mappings = mappings
        self.extra_hosts = extra_hosts  # snapshot hosts allowed for every source (settings)
        self.adapters = {k: TypeAdapter(m) for k, m in KIND_MODELS.items()}

    def accept(self, src: Source, kind: str, items: Items, matcher: Matcher | None = None) -> Accepted:
        """``matcher``: the registry snapshot complaints without an ``entity_id`` are matched against
        (None: the registry could not be read, and such complaints are queued for the office)."""
        model = KIND_MODELS[kind]
        mapping = self.mappings(src.mapping) if src.mapping else None
        if mapping is not None and mapping.spec.kind != kind:
            raise BodyError(f"source {src.name}'s mapping {mapping.name} is for {mapping.spec.kind}, not {kind}")
        tz = (mapping.tz if mapping is not None and mapping.tz else "") or src.tz
        zone = ZoneInfo(tz) if tz else None
        oldest = datetime.now(UTC) - self.max_age
        out = Accepted([], [], [], [])
        for i, item in enumerate(items.values):
            errors: list[dict[str, str]] = []
            events: list[Event] = []
            queued: list[str] = []
            try:
                if isinstance(item, _Malformed):
                    raise MappingError(f"malformed JSON: {item.why}")
                dicts = mapping.apply(item, src.name) if mapping is not None else [self._own(item, src.name)]
            except MappingError as e:
                errors.append({"loc": f"[{i}]" + (f".{e.field}" if e.field else ""), "msg": str(e)})
                dicts = []
            for d in dicts:
                why = _zone(d, zone, src.name)
                if why is not None:
                    errors.append({"loc": f"[{i}].occurred_at", "msg": why})
                    continue
                subject = d.pop("subject", None) if kind == "complaint" else None
                if kind == "complaint" and not d.get("entity_id"):
                    routed = self._match(d, subject, i, src.name, matcher, errors)
                    if isinstance(routed, Message):
                        out.queued.append(routed)
                        queued.append(str(d.get("event_id")))
                    if routed is None or isinstance(routed, Message):
                        continue
                    d = routed
                try:
                    ev = model.model_validate(d, context=self.context)
                except ValidationError as e:
                    errors.extend(_errors(i, e))
                    continue
                if ev.occurred_at < oldest:
                    errors.append(
                        {
                            "loc": f"[{i}].occurred_at",
                            "msg": f"{ev.occurred_at.isoformat()} is older than the gateway accepts "
                            f"({self.max_age.total_seconds() / 3600:g} h); send late data as an import",
                        }
                    )
                    continue
                events.append(ev)
            if errors:
                out.results.append(ItemResult(i, "refused", errors=errors))
                out.dead.append(self.dead(src.name, kind, i, items.raw(i), errors))
                continue
            out.results.append(ItemResult(i, "accepted", event_ids=[e.event_id for e in events], queued=queued))
            out.events.extend(events)
            if mapping is not None and kind == "video" and isinstance(item, dict):
                url = mapping.snapshot_url(item)
                if url:
                    for ev in events:
                        assert isinstance(ev, VideoDetection)
                        out.snapshots.append(Snapshot(ev, url, (*mapping.spec.snapshot_hosts, *self.extra_hosts)))
        return out

    def _match(
        self,
        d: dict[str, Any],
        subject: Any,
        i: int,
        source: str,
        matcher: Matcher | None,
        errors: list[dict[str, str]],
    ) -> dict[str, Any] | Message | None:
        """A complaint without an entity: the event with its matched entity, its queue message, or
        None (refused: ``errors`` says why)."""
        if not isinstance(subject, dict) or not any(subject.get(k) for k in ("name", "credit_code", "licence")):
            if not d.get("township"):
                errors.append(
                    {
                        "loc": f"[{i}].entity_id",
                        "msg": "give entity_id, or subject {name, address, credit_code, "
                        "licence}, or at least the township",
                    }  # fmt: skip
                )
                return None
            subject = {}
        who = Subject(
            name=str(subject.get("name") or ""),
            address=str(subject.get("address") or d.get("location") or ""),
            credit_code=str(subject.get("credit_code") or ""),
            licence=str(subject.get("licence") or ""),
            township=str(d.get("township") or ""),
        )
        try:  # the other fields first: a bad complaint is refused, not queued
            Complaint.model_validate({**d, "entity_id": "queued"}, context=self.context)
        except ValidationError as e:
            errors.extend(_errors(i, e))
            return None
        if matcher is None:
            m: Any = Candidates((), "名录库暂不可读,由专班办公室人工匹配", alias_key(who.name, who.address))
        else:
            try:
                m = who.match(matcher)
            except BadIdentifier as e:
                errors.append({"loc": f"[{i}].subject.credit_code", "msg": str(e)})
                return None
        if isinstance(m, Candidates):
            item = queue_item(d, Complaint.topic, m, who, source)
            return Message(item.topic, item.queue_id.encode(), item.model_dump_json().encode(), 1)
        return {**d, "entity_id": m.entity_id, "match": m.match}

    @staticmethod
    def _own(item: Any, source: str) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise MappingError(f"expected a JSON object, got {type(item).__name__}")
        return {**item, "source": source}  # the key names the source, never the body

    @staticmethod
    def dead(source: str, kind: str, i: int, raw: bytes, errors: list[dict[str, str]]) -> Message:
        error = f"gateway POST /v1/{kind} from {source}, item [{i}]: " + "; ".join(
            f"{e['loc']}: {e['msg']}" for e in errors
        )
        dl = DeadLetter(
            topic=f"gateway:/v1/{kind}",
            partition=-1,
            # no Kafka offset: a content hash keeps refused items apart in dead_letters (ORDER BY topic,
            # partition, offset) while a re-posted item stays one row
            offset=int.from_bytes(hashlib.sha256(f"{source}|{i}|".encode() + raw).digest()[:7], "big"),
            key=None,
            payload_b64=base64.b64encode(raw).decode(),
            error=mask_pii(error)[:4000],
            received_at=datetime.now(UTC),
            source=source,
        )
        return Message(DEADLETTER, source.encode(), dl.model_dump_json().encode(), 0)


def _errors(i: int, e: ValidationError) -> list[dict[str, str]]:
    """Each validation error of item ``i`` with its field path: ``[3].value``."""
    return [
        {"loc": f"[{i}]" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]), "msg": err["msg"]}
        for err in e.errors(include_url=False)
    ]


def _zone(d: dict[str, Any], zone: ZoneInfo | None, source: str) -> str | None:
    """Make a naive ``occurred_at`` aware with the source's zone in place; why not, if it has none."""
    t = d.get("occurred_at")
    if not isinstance(t, str):
        return None  # the model says what is wrong
    try:
        at = datetime.fromisoformat(t)
    except ValueError:
        return None
    if at.tzinfo is not None:
        return None
    if zone is None:
        return (
            f"time {t!r} has no UTC offset and source {source} declares no time zone: "
            "send an offset (e.g. +08:00) or register the source with --tz"
        )
    d["occurred_at"] = at.replace(tzinfo=zone).isoformat()
    return None


def messages(kind: str, events: list[Event], gateway_id: str) -> list[Message]:
    """The Kafka messages of accepted events: sensor readings as per-entity ``sensor_batch``
    messages (≤ 500 readings), the rest one message each; keyed by entity_id."""
    if kind != "sensor":
        return [Message(e.topic, e.entity_id.encode(), e.model_dump_json().encode(), 1) for e in events]
    per: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        assert isinstance(e, SensorReading)
        per.setdefault(e.entity_id, []).append(
            {
                "event_id": e.event_id,
                "device_id": e.device_id,
                "channel": e.channel.value,
                "value": e.value,
                "unit": e.unit,
                "occurred_at": e.occurred_at.isoformat(),
            }
        )
    out = []
    for entity, rs in per.items():
        for at in range(0, len(rs), MAX_BATCH_READINGS):
            chunk = rs[at : at + MAX_BATCH_READINGS]
            value = orjson.dumps(
                {
                    "schema_version": 1,
                    "kind": "sensor_batch",
                    "entity_id": entity,
                    "gateway_id": gateway_id,
                    "readings": chunk,
                }
            )
            out.append(Message(SensorReading.topic, entity.encode(), value, len(chunk)))
    return out
