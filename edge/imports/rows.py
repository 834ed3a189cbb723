"""One row of an export → an event ready to send, an event queued for the office (its entity not
matched with confidence), or a refusal with the reason in Chinese.

The ``event_id`` is a uuid5 of the layout and the row's identity (工单编号, 检查编号, 统一社会信用代码 +
更新时间, 设备编号 + the row's content): importing the same file again produces the same events, which the
stores deduplicate. A device row's ratings are converted to the contract's units (``1600kPa`` → 1.6 MPa)
and its 单位 must fit every channel, both through :mod:`riskwatch.domain.units`.
``source`` is given by the caller (the transport's identity: ``import:<layout>:<operator>``).

    >>> from riskwatch.domain.catalog import load_catalog
    >>> from edge.imports.layout import load_layout
    >>> from edge.matching import Matcher
    >>> conv = RowConverter(load_layout("complaints"), load_catalog(), Matcher([]), "import:12345:op")
    >>> r = conv.convert(2, {"工单编号": "GD1", "来电时间": "2026-11-27 08:00", "诉求内容": "饭菜有异味",
    ...                      "被反映单位": "", "问题分类": "食品安全", "所属乡镇": "舞泉镇"})
    >>> r.event.entity_id, r.event.match.method.value, r.topic
    ('township:wuquan', 'township', 'events.complaint')
    >>> conv.convert(3, {"工单编号": "GD2", "来电时间": "昨天", "问题分类": "食品安全"}).reason
    '来电时间「昨天」不是有效的日期时间'
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from edge.imports.layout import Layout
from edge.matching import BadIdentifier, Candidates, Matcher, Subject, check_credit_code, queue_item
from riskwatch.domain.catalog import Catalog
from riskwatch.domain.units import CANONICAL, UnitError, affine, display, known
from schemas.events import (
    LOCAL_TZ,
    Complaint,
    CreditRecord,
    DeviceEvent,
    EntityEvent,
    Event,
    InspectionResult,
    Match,
    MatchQueueItem,
    SensorChannel,
)
from schemas.vocabulary import SENSOR_CHANNEL_ZH

NAMESPACE = uuid.UUID("6f1c2a52-3d1e-5b7a-9c41-2a7e0b5d8e10")  # riskwatch imports
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
_SPLIT = re.compile(r"[、,，;；/\s]+")
_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%Y年%m月%d日 %H:%M:%S",
    "%Y年%m月%d日 %H:%M",
    "%Y年%m月%d日",
    "%Y%m%d",
)
BASE_TOPIC = {
    "registry": EntityEvent.topic,
    "complaints": Complaint.topic,
    "inspections": InspectionResult.topic,
    "credit": CreditRecord.topic,
    "devices": DeviceEvent.topic,
}
CREDIT_LISTS = {"tier": "tier", "abnormal": "abnormal_list", "serious": "serious_list"}  # --list of the CLI
# devices: a 监测通道 word naming a quantity is the channel of the device's category measuring it (canonical unit)
QUANTITIES = {"pressure": "MPa", "temperature": "degC", "humidity": "percent", "vibration": "mm/s"}
# devices: the channel whose canonical unit a rating is converted to (through riskwatch/domain/units.py)
RATING_CHANNEL = {
    "rated_pressure_mpa": "vessel_pressure",
    "rated_temp_c": "boiler_temp",
    "set_point_min_c": "cold_chain_temp",
    "set_point_max_c": "cold_chain_temp",
}
MASS_KG = {"kg": 1.0, "KG": 1.0, "Kg": 1.0, "千克": 1.0, "公斤": 1.0, "t": 1000.0, "吨": 1000.0}  # no channel weighs
SECONDS = {"": 1, "s": 1, "秒": 1, "min": 60, "分": 60, "分钟": 60, "h": 3600, "小时": 3600}
_NUMBER = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*(\S*)$")
_CHANNEL_OF_ZH = {zh: code for code, zh in SENSOR_CHANNEL_ZH.items()}


class RowError(ValueError):
    """Why a row is refused (Chinese, shown in the report)."""


@dataclass(frozen=True, slots=True)
class Ready:
    row: int
    event: Event
    topic: str  # unprefixed, e.g. events.complaint, events.inspection.amr
    match: Match | None = None  # how its entity was found (also for events whose contract has no match field)


@dataclass(frozen=True, slots=True)
class Queued:
    row: int
    item: MatchQueueItem


@dataclass(frozen=True, slots=True)
class Refusal:
    row: int
    identity: str
    reason: str
    cells: Mapping[str, Any]


Outcome = Ready | Queued | Refusal


def parse_time(header: str, v: Any) -> datetime:
    """A cell as an aware time (naive = Asia/Shanghai); :class:`RowError` naming the header if not one."""
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=LOCAL_TZ)
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day, tzinfo=LOCAL_TZ)
    s = str(v or "").strip()
    if s:
        try:
            d = datetime.fromisoformat(s)
            return d if d.tzinfo else d.replace(tzinfo=LOCAL_TZ)
        except ValueError:
            pass
        for f in _FORMATS:
            try:
                return datetime.strptime(s, f).replace(tzinfo=LOCAL_TZ)
            except ValueError:
                continue
    raise RowError(f"{header}「{s}」不是有效的日期时间")


def _reason(e: ValidationError, layout: Layout) -> str:
    parts = []
    for err in e.errors():
        f = str(err["loc"][0]) if err["loc"] else ""
        parts.append(f"{layout.columns.get(f, f)}: {err['msg']}")
    return ";".join(parts)


class RowConverter:
    def __init__(
        self,
        layout: Layout,
        catalog: Catalog,
        matcher: Matcher,
        source: str,
        credit_list: str | None = None,
        now: datetime | None = None,
    ):
        self.layout, self.catalog, self.matcher, self.source = layout, catalog, matcher, source
        self.credit_list = credit_list  # credit: the kind of a file without 名单类型 (tier|abnormal_list|serious_list)
        self.now = now or datetime.now(LOCAL_TZ).replace(microsecond=0)  # devices: a row without 更新时间
        self._depts = {d.name: code for code, d in catalog.departments.items()}

    def _get(self, cells: Mapping[str, Any], field: str) -> Any:
        h = self.layout.columns.get(field)
        return cells.get(h, "") if h else ""

    def _text(self, cells: Mapping[str, Any], field: str) -> str:
        v = self._get(cells, field)
        return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime | date) else str(v or "").strip()

    def _code(self, cells: Mapping[str, Any], field: str, default: str | None = None) -> str:
        raw = self._text(cells, field)
        if not raw and default is not None:
            return default
        mapping = self.layout.values.get(field, {})
        if raw in mapping:
            return mapping[raw]
        known = "、".join(list(mapping)[:12])
        raise RowError(
            f"{self.layout.columns[field]}「{raw}」不在映射中(riskwatch/data/imports/{self.layout.kind}.yaml;可用:{known})"
        )

    def identity(self, cells: Mapping[str, Any]) -> str:
        def s(v: Any) -> str:
            return v.isoformat() if isinstance(v, datetime | date) else str(v or "").strip()

        return "|".join(s(cells.get(h, "")) for h in self.layout.identity)

    def event_id(self, identity: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.layout.name}:{identity}"))

    def convert(self, row: int, cells: Mapping[str, Any]) -> Outcome:
        ident = self.identity(cells)
        try:
            if not ident.replace("|", "").strip():
                raise RowError(f"缺少标识({'、'.join(self.layout.identity)})")
            build = {
                "registry": self._registry,
                "complaints": self._complaint,
                "inspections": self._inspection,
                "credit": self._credit,
                "devices": self._device,
            }
            return build[self.layout.kind](row, cells, ident)
        except RowError as e:
            return Refusal(row, ident, str(e), dict(cells))
        except BadIdentifier as e:
            return Refusal(row, ident, str(e), dict(cells))
        except ValidationError as e:
            return Refusal(row, ident, _reason(e, self.layout), dict(cells))

    # --- per kind ---------------------------------------------------------------------------------
    def _registry(self, row: int, cells: Mapping[str, Any], ident: str) -> Outcome:
        code = check_credit_code(self._text(cells, "credit_code"))
        at = parse_time(self.layout.columns["updated_at"], self._get(cells, "updated_at"))
        fields: dict[str, Any] = {
            "action": self._code(cells, "status", default="registered"),
            "name": self._text(cells, "name"),
            "kind": self._code(cells, "kind"),
            "township": self._text(cells, "township"),
            "address": self._text(cells, "address"),
            "licence": self._text(cells, "licence"),
        }
        for f in ("lat", "lon"):
            raw = self._text(cells, f)
            try:
                fields[f] = float(raw) if raw else None
            except ValueError:
                raise RowError(f"{self.layout.columns[f]}「{raw}」不是数字") from None
        digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        ev = EntityEvent.model_validate(
            {
                "event_id": self.event_id(f"{ident}|{digest}"),
                "entity_id": code,
                "occurred_at": at,
                "source": self.source,
                **fields,
            },
            context={"catalog": self.catalog},
        )
        return Ready(row, ev, EntityEvent.topic)

    def _complaint(self, row: int, cells: Mapping[str, Any], ident: str) -> Outcome:
        at = parse_time(self.layout.columns["occurred_at"], self._get(cells, "occurred_at"))
        fields = {
            "event_id": self.event_id(ident),
            "occurred_at": at,
            "source": self.source,
            "channel": self.layout.static.get("channel", "12345"),
            "category": self._code(cells, "category"),
            "text": self._text(cells, "text"),
            "township": self._text(cells, "township"),
            "location": self._text(cells, "address"),
        }
        return self._matched(row, cells, Complaint, fields, Complaint.topic)

    def _inspection(self, row: int, cells: Mapping[str, Any], ident: str) -> Outcome:
        at = parse_time(self.layout.columns["occurred_at"], self._get(cells, "occurred_at"))
        raw_id = self._text(cells, "inspection_id")
        depts = []
        for d in _SPLIT.split(self._text(cells, "department")):
            if not d:
                continue
            code = self.layout.values.get("department", {}).get(d) or self._depts.get(d) or d
            if code not in self.catalog.departments:
                raise RowError(f"检查部门「{d}」不是目录中的部门")
            depts.append(code)
        if not depts:
            raise RowError("缺少检查部门")
        item = self._text(cells, "item_id")
        if not item.isdigit():
            raise RowError(f"监管事项编号「{item}」不是数字")
        violations = []
        if self._text(cells, "violation"):
            violations.append(
                {
                    "code": self._text(cells, "violation_code") or "import",
                    "severity": self._code(cells, "severity", default="minor"),
                    "description": self._text(cells, "violation"),
                }
            )
        fields = {
            "event_id": self.event_id(ident),
            "occurred_at": at,
            "source": self.source,
            "inspection_id": raw_id if _ID.match(raw_id) else "imp-" + self.event_id(ident)[:18],
            "item_id": int(item),
            "departments": depts,
            "inspectors": [x for x in _SPLIT.split(self._text(cells, "inspectors")) if x],
            "violations": violations,
            "outcome": self._code(cells, "outcome"),
        }
        return self._matched(row, cells, InspectionResult, fields, f"{InspectionResult.topic}.{depts[0]}")

    def _credit(self, row: int, cells: Mapping[str, Any], ident: str) -> Outcome:
        code = self._text(cells, "credit_code")
        if not code:
            raise RowError("缺少统一社会信用代码")
        check_credit_code(code)  # a bad check digit is refused here, before any matching
        kind = self._code(cells, "list_kind") if self._text(cells, "list_kind") else self.credit_list
        if kind is None:
            kind = "tier" if self._text(cells, "tier") else ""
        if not kind:
            raise RowError(
                "无法确定名单类型:请在文件中加「名单类型」列(上传页面),或用命令 riskwatch import credit --list "
                "tier|abnormal|serious 指定"
            )
        cols = self.layout.columns
        if kind == "tier":
            tier = self._code(cells, "tier")
            on = parse_time(cols["tier_on"], self._get(cells, "tier_on")).date()
            authority, reason, listed_reason, removed = self._text(cells, "tier_authority"), "", "", None
        else:
            tier = ""
            on = parse_time(cols["listed_on"], self._get(cells, "listed_on")).date()
            authority, reason, listed_reason = self._text(cells, "authority"), self._text(cells, "reason"), ""
            removed = None
            if self._text(cells, "removed_on"):
                removed = parse_time(cols["removed_on"], self._get(cells, "removed_on")).date()
                reason, listed_reason = self._text(cells, "removed_reason"), reason
                if not reason:
                    raise RowError("有移出日期但缺少移出原因")
        last = removed or on
        fields = {
            "event_id": self.event_id(f"{kind}|{ident}"),
            "occurred_at": datetime(last.year, last.month, last.day, tzinfo=LOCAL_TZ),
            "source": self.source,
            "kind": kind,
            "tier": tier,
            "listed_on": on,
            "removed_on": removed,
            "reason": reason,
            "listed_reason": listed_reason,
            "authority": authority,
            "name": self._text(cells, "name"),
        }
        return self._matched(row, cells, CreditRecord, fields, CreditRecord.topic)

    def _device(self, row: int, cells: Mapping[str, Any], ident: str) -> Outcome:
        cols = self.layout.columns
        device_id = self._text(cells, "device_id")
        if not _ID.match(device_id):
            raise RowError(f"设备编号「{device_id}」只能由字母、数字和 _ . : - 组成(须与设备上报数据中的编号一致)")
        channels = self._device_channels(cells)
        unit = self._text(cells, "unit")
        if unit:
            for c in channels:
                if known(c, unit) is not None:
                    more = "(测多个量的设备请留空,读数自带单位)" if len(channels) > 1 else ""
                    raise RowError(
                        f"{cols['unit']}「{unit}」不适用于监测通道「{SENSOR_CHANNEL_ZH[c]}」({display(c)}){more}"
                    )
        fields: dict[str, Any] = {
            "action": self._code(cells, "status", default="registered"),
            "device_id": device_id,
            "channels": channels,
            "unit": unit,
            **{f: self._rating(cells, f) for f in (*RATING_CHANNEL, "rated_load_kg")},
            "medium": self._text(cells, "medium"),
            "installed_on": self._date(cells, "installed_on"),
            "calibrated_on": self._date(cells, "calibrated_on"),
            "owner": self.layout.values.get("owner", {}).get(self._text(cells, "owner"), self._text(cells, "owner")),
        }
        interval = self._interval(cells)
        if interval is not None:
            fields["interval_s"] = interval
        digest = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:16]
        at = self.now
        if self._text(cells, "updated_at"):
            at = parse_time(cols["updated_at"], self._get(cells, "updated_at"))
        fields.update(event_id=self.event_id(f"{ident}|{digest}"), occurred_at=at, source=self.source)
        return self._matched(row, cells, DeviceEvent, fields, DeviceEvent.topic)

    def _device_channels(self, cells: Mapping[str, Any]) -> list[str]:
        """监测通道 as channel codes; empty: the channels of its 设备类别."""
        category = self._text(cells, "category")
        of_category = self.layout.values.get("category", {}).get(category, "")
        words = [w for w in _SPLIT.split(self._text(cells, "channels")) if w]
        if not words:
            return [c for c in self._code(cells, "category").split(",") if c]
        out: list[str] = []
        for w in words:
            code = self.layout.values.get("channels", {}).get(w) or _CHANNEL_OF_ZH.get(w) or w
            if code in QUANTITIES:
                fits = [c for c in of_category.split(",") if c and CANONICAL.get(c) == QUANTITIES[code]]
                if not fits:
                    raise RowError(
                        f"监测通道「{w}」无法确定:设备类别「{category}」没有测{w}的通道,请写明通道(如 锅炉压力)"
                    )
                code = fits[0]
            if code not in SensorChannel.__members__:
                known_words = "、".join(list(self.layout.values.get("channels", {}))[:12])
                raise RowError(f"监测通道「{w}」不在映射中(riskwatch/data/imports/devices.yaml;可用:{known_words})")
            if code not in out:
                out.append(code)
        return out

    def _rating(self, cells: Mapping[str, Any], field: str) -> float | None:
        """A rating cell in the rating's unit: a bare number is in the layout's unit, ``1600kPa`` is converted."""
        raw = self._text(cells, field)
        if not raw:
            return None
        header = self.layout.columns[field]
        m = _NUMBER.match(raw)
        if m is None:
            raise RowError(f"{header}「{raw}」不是数值")
        value, unit = float(m[1]), m[2] or self.layout.units.get(field, "")
        if field == "rated_load_kg":
            if unit not in MASS_KG:
                raise RowError(f"{header}「{raw}」的单位「{unit}」无法换算为 kg")
            return round(value * MASS_KG[unit], 6)
        channel = RATING_CHANNEL[field]
        try:
            a, b = affine(channel, unit)
        except UnitError:
            raise RowError(f"{header}「{raw}」的单位「{unit}」无法换算为 {display(channel)}") from None
        return round(a * value + b, 6)

    def _interval(self, cells: Mapping[str, Any]) -> int | None:
        raw = self._text(cells, "interval_s")
        if not raw:
            return None
        m = _NUMBER.match(raw)
        if m is None or m[2] not in SECONDS:
            raise RowError(f"{self.layout.columns['interval_s']}「{raw}」不是秒数")
        return round(float(m[1]) * SECONDS[m[2]])

    def _date(self, cells: Mapping[str, Any], field: str) -> date | None:
        if not self._text(cells, field):
            return None
        return parse_time(self.layout.columns[field], self._get(cells, field)).date()

    def _matched(
        self, row: int, cells: Mapping[str, Any], model: type[Event], fields: dict[str, Any], topic: str
    ) -> Outcome:
        ctx = {"catalog": self.catalog}
        name, address = self._text(cells, "name"), self._text(cells, "address")
        township, code, licence = self._text(cells, "township"), self._text(cells, "credit_code"), ""
        if "licence" in self.layout.columns:
            licence = self._text(cells, "licence")
        model.model_validate({**fields, "entity_id": "queued"}, context=ctx)  # refuse bad fields before matching
        m = self.matcher.match(name, address, code, licence, township)
        if isinstance(m, Candidates):
            subject = Subject(name, address, code, licence, township)
            return Queued(row, queue_item(fields, topic, m, subject, self.source))
        matched = {"match": m.match} if "match" in model.model_fields else {}  # DeviceEvent has none
        ev = model.model_validate({**fields, "entity_id": m.entity_id, **matched}, context=ctx)
        return Ready(row, ev, topic, m.match)


def resolve(item: MatchQueueItem, entity_id: str, catalog: Catalog) -> Event:
    """The queued event with the office's chosen entity (``match.method = office``)."""
    from schemas.events import EVENT_MODELS, MatchMethod
    from streams.engine.identity import kind_of

    model = EVENT_MODELS[kind_of(item.event_topic)]
    fields = orjson.loads(item.event)
    fields["entity_id"] = entity_id
    if "match" in model.model_fields:  # a device event's contract has no match
        fields["match"] = Match(method=MatchMethod.office, confidence=1.0)
    return model.model_validate(fields, context={"catalog": catalog})
