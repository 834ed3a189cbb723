"""The events riskwatch consumes and produces, one pydantic model each (JSON on the wire).

Every input event carries ``schema_version``, a unique ``event_id`` (idempotency key),
``entity_id`` (the Kafka key), a timezone-aware ``occurred_at`` (a timestamp without zone is read
as Asia/Shanghai, the county's local time) and ``source``. Codes that the catalog owns (entity
kind, department) are checked against the catalog passed as validation context::

    >>> from riskwatch.domain.catalog import load_catalog
    >>> raw = b'{"event_id":"e1","entity_id":"E1","occurred_at":"2026-11-27T08:00:00",'\\
    ...       b'"source":"iot","device_id":"d1","channel":"cold_chain_temp","value":9.5,"unit":"C"}'
    >>> r = SensorReading.model_validate_json(raw, context={"catalog": load_catalog()})
    >>> r.occurred_at.isoformat()
    '2026-11-27T08:00:00+08:00'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, ClassVar, Literal, NotRequired
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import TypedDict

from schemas.vocabulary import AlertStatus, Level  # defined there with their labels; re-exported here

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)
_EARLIEST_TS = EARLIEST.timestamp()


_future_bound = [0.0, 0.0]  # [wall-clock second it was computed, bound as unix time]


def _implausible(v: datetime) -> str | None:
    """Why an (aware) event time is not plausible: before 2000 or more than a day in the future."""
    ts = v.timestamp()
    now = time.time()
    if now - _future_bound[0] > 1.0:  # the bound moves once a second, not per event
        _future_bound[0], _future_bound[1] = now, now + MAX_CLOCK_SKEW.total_seconds()
    if ts < _EARLIEST_TS:
        return f"timestamp {v.isoformat()} is before {EARLIEST.date()}: not a plausible event time"
    if ts > _future_bound[1]:
        return f"timestamp {v.isoformat()} is more than {MAX_CLOCK_SKEW.days} day in the future: check the device clock"
    return None


def _plausible(v: datetime) -> datetime:
    """Naive → Asia/Shanghai; refuse times before 2000 or more than a day in the future."""
    if v.tzinfo is None:
        v = v.replace(tzinfo=LOCAL_TZ)
    why = _implausible(v)
    if why is not None:
        raise ValueError(why)
    return v


EventTime = Annotated[datetime, AfterValidator(_plausible)]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]
ShortText = Annotated[str, Field(max_length=200)]


def _catalog_code(kind: str) -> Callable[[str, ValidationInfo], str]:
    """Validator factory: the value must be a code in the catalog given as validation context."""

    def check(v: str, info: ValidationInfo) -> str:
        cat = (info.context or {}).get("catalog")
        if cat is not None:
            known = cat.entity_kinds if kind == "entity kind" else cat.departments
            if v not in known:
                raise ValueError(f"unknown {kind} {v!r}; known: {', '.join(known)}")
        return v

    return check


class Event(BaseModel):
    """Fields every input event carries."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)
    topic: ClassVar[str]

    schema_version: Literal[1] = Field(1, description="Version of this contract; bumped on breaking change")
    event_id: Id = Field(description="Unique id of this event, the idempotency key (a UUID is a good choice)")
    entity_id: Id = Field(description="Supervised entity (名录库 id); the Kafka message key")
    occurred_at: EventTime = Field(description="When it happened, ISO 8601; without zone = Asia/Shanghai")
    source: ShortText = Field(min_length=1, description="Producing system, e.g. iot-gateway-3, 12315, video-ai")


# --- 名录库: supervised-entity registry -------------------------------------------------------------
class EntityAction(StrEnum):
    registered = "registered"
    updated = "updated"
    closed = "closed"


class EntityEvent(Event):
    """An entity registered in, updated in or closed from the supervised-entity registry (名录库)."""

    topic: ClassVar[str] = "events.registry"
    action: EntityAction
    name: str = Field(min_length=1, max_length=200, description="Registered name (Chinese)")
    kind: str = Field(description="Entity kind code from the catalog, e.g. food_producer")
    township: str = Field(min_length=1, max_length=50, description="Township (乡镇) name, e.g. 舞泉镇")
    address: str = Field("", max_length=300)
    licence: str = Field("", max_length=64, description="Licence number, if licensed")
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)

    _kind = field_validator("kind")(_catalog_code("entity kind"))


# --- IoT sensors ----------------------------------------------------------------------------------
class SensorChannel(StrEnum):
    cold_chain_temp = "cold_chain_temp"  # °C, cold storage / refrigerated transport
    boiler_pressure = "boiler_pressure"  # MPa
    boiler_temp = "boiler_temp"  # °C
    vessel_pressure = "vessel_pressure"  # MPa, pressure vessel
    elevator_fault = "elevator_fault"  # fault code (0 = none)
    elevator_door_cycles = "elevator_door_cycles"  # per hour
    pump_vibration = "pump_vibration"  # mm/s
    storage_humidity = "storage_humidity"  # %RH, drug storage
    storage_temp = "storage_temp"  # °C, drug storage


class SensorReading(Event):
    """One reading of one IoT sensor channel."""

    topic: ClassVar[str] = "events.sensor"
    device_id: Id
    channel: SensorChannel
    value: float = Field(ge=-1e6, le=1e6, allow_inf_nan=False, description="Reading in `unit`; finite")
    unit: str = Field(max_length=16)


MAX_BATCH_READINGS = 500


class BatchReading(TypedDict):
    """One reading inside a gateway batch: a :class:`SensorReading` without the fields the batch
    carries once (``entity_id``; ``source`` is the batch's ``gateway_id`` unless given). A typed
    dict, not a model: validating a batch builds no object per reading (2.4 µs instead of 5.9)."""

    __pydantic_config__ = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[misc]

    event_id: Annotated[Id, Field(description="Unique id of this reading, the idempotency key")]
    device_id: Id
    channel: SensorChannel
    value: Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False, description="Reading in `unit`; finite")]
    unit: Annotated[str, Field(max_length=16)]
    # parsed here, made aware and checked for plausibility by SensorBatch.events() (a Python
    # validator called per reading from the Rust validator cost 1.8 µs, 40 % of a reading's validation)
    occurred_at: Annotated[datetime, Field(description="When it was measured, ISO 8601; without zone = Asia/Shanghai")]
    source: NotRequired[Annotated[ShortText, Field(description="Producing system; default: the batch's gateway_id")]]


class SensorBatch(BaseModel):
    """A gateway's upload: up to 500 readings of one entity in one message on ``events.sensor``,
    keyed by ``entity_id``. Each reading is validated, deduplicated and processed on its own; a bad
    reading goes to the dead-letter topic with its index (``readings[i]``), the others are processed.
    The envelope itself must be valid (else the whole message is a dead letter)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)
    topic: ClassVar[str] = "events.sensor"

    schema_version: Literal[1] = Field(1, description="Version of this contract; bumped on breaking change")
    kind: Literal["sensor_batch"] = Field(description="Marks a gateway batch (a single reading has no `kind`)")
    entity_id: Id = Field(description="Supervised entity (名录库 id) of every reading; the Kafka message key")
    gateway_id: ShortText = Field(min_length=1, description="Uploading gateway, the readings' `source`")
    readings: list[BatchReading] = Field(
        min_length=1, max_length=MAX_BATCH_READINGS, description="The readings, each with its own event_id (≤ 500)"
    )

    def events(self) -> tuple[list[SensorReading], dict[int, str]]:
        """The readings as :class:`SensorReading` events (already validated: no second validation),
        and ``{index: reason}`` for the readings whose time is not plausible (left out), checked as
        a single reading's ``occurred_at`` is (naive = Asia/Shanghai).

        Built as ``model_construct`` would, without its per-field default handling (every field is
        given): a third of the cost of a reading in a batch went there."""
        eid, gw = self.entity_id, self.gateway_id
        new, setattr_ = object.__new__, object.__setattr__
        out = []
        bad: dict[int, str] = {}
        for i, r in enumerate(self.readings):
            at = r["occurred_at"]
            if at.tzinfo is None:
                at = at.replace(tzinfo=LOCAL_TZ)
            why = _implausible(at)
            if why is not None:
                bad[i] = f"1 validation error\n  occurred_at: Value error, {why} (got {r['occurred_at']!r})"
                continue
            ev = new(SensorReading)
            setattr_(
                ev,
                "__dict__",
                {
                    "schema_version": 1,
                    "event_id": r["event_id"],
                    "entity_id": eid,
                    "occurred_at": at,
                    "source": r.get("source") or gw,
                    "device_id": r["device_id"],
                    "channel": r["channel"],
                    "value": r["value"],
                    "unit": r["unit"],
                },
            )
            # a set of its own, as pydantic builds it: model_copy() updates it in place (a shared frozenset crashed it)
            setattr_(ev, "__pydantic_fields_set__", set(_READING_FIELDS))
            setattr_(ev, "__pydantic_extra__", None)
            setattr_(ev, "__pydantic_private__", None)
            out.append(ev)
        return out, bad


_READING_FIELDS = frozenset(SensorReading.model_fields)


# --- 设备台账: the device registry ------------------------------------------------------------------
class DeviceAction(StrEnum):
    registered = "registered"
    updated = "updated"
    removed = "removed"


class DeviceEvent(Event):
    """A device registered, updated or removed: its channels, unit, ratings and reporting interval.

    Keyed by ``entity_id`` (the device's entity) on ``events.device``, so the worker holding the
    entity's state holds its devices. ``source`` is who registered it (the transport's identity);
    ``owner`` is the source (vendor) whose platform sends its readings and who is told of its faults.
    A rating left empty means the county default of ``rules.yaml`` applies."""

    topic: ClassVar[str] = "events.device"
    action: DeviceAction
    device_id: Id
    channels: list[SensorChannel] = Field(min_length=1, max_length=16, description="Channels it reports")
    unit: str = Field("", max_length=16, description="Unit of its readings when a reading gives none, e.g. MPa, ℃")
    rated_pressure_mpa: float | None = Field(None, gt=0, le=100, description="额定/设计压力, MPa (boilers, vessels)")
    rated_temp_c: float | None = Field(None, gt=-100, le=1000, description="额定温度, ℃ (boilers)")
    rated_load_kg: float | None = Field(None, gt=0, le=100000, description="额定载重量, kg (elevators)")
    set_point_min_c: float | None = Field(None, ge=-100, le=100, description="设定温度下限, ℃ (cold stores)")
    set_point_max_c: float | None = Field(None, ge=-100, le=100, description="设定温度上限, ℃ (cold stores)")
    medium: str = Field("", max_length=32, description="介质, e.g. 水, 蒸汽, 液氨")
    interval_s: int = Field(60, ge=1, le=86400, description="Expected reporting interval, seconds")
    channel_intervals_s: dict[SensorChannel, Annotated[int, Field(ge=1, le=86400)]] = Field(
        default_factory=dict,
        description="Per channel, where its channels report at different paces (an elevator's fault code every "
        "minute, its door cycles hourly); the others report every interval_s",
    )
    installed_on: date | None = None
    calibrated_on: date | None = Field(None, description="Last calibration (检定/校准)")
    owner: ShortText = Field("", description="The source (vendor platform) that sends its readings")


# --- 联合信用监管: official credit tiers and lists ---------------------------------------------------
class CreditKind(StrEnum):
    tier = "tier"  # 信用风险分类结果 (A–D)
    abnormal_list = "abnormal_list"  # 经营异常名录
    serious_list = "serious_list"  # 严重违法失信名单


class CreditRecord(Event):
    """An official credit record of an entity: its credit-risk tier (信用风险分类, A–D) as determined on
    ``listed_on``, or a listing in the 经营异常名录 / 严重违法失信名单 from ``listed_on``; ``removed_on`` set
    (with ``reason`` the 移出原因) ends the listing (信用修复). One listing is ``(entity_id, kind, listed_on)``:
    a later record of it (a repair) replaces the earlier one in the ``credit`` table."""

    topic: ClassVar[str] = "events.credit"
    kind: CreditKind
    tier: Literal["", "A", "B", "C", "D"] = Field("", description="分类等级 (kind tier only)")
    listed_on: date = Field(description="认定日期 (tier) or 列入日期 (lists)")
    removed_on: date | None = Field(None, description="移出日期: the listing ended (信用修复)")
    reason: str = Field("", max_length=300, description="列入原因, or 移出原因 once removed")
    listed_reason: str = Field("", max_length=300, description="列入原因 kept when the record is a removal")
    authority: str = Field("", max_length=100, description="认定机关 / 作出决定机关")
    name: str = Field("", max_length=200, description="主体名称 as the export gives it")
    match: Match | None = None

    @model_validator(mode="after")
    def _shape(self) -> CreditRecord:
        if (self.kind == CreditKind.tier) != bool(self.tier):
            raise ValueError("tier is given exactly for kind tier")
        if self.removed_on is not None and self.removed_on < self.listed_on:
            raise ValueError("removed_on is before listed_on")
        return self


# --- AI video -------------------------------------------------------------------------------------
class VideoClass(StrEnum):
    no_mask = "no_mask"
    no_hat = "no_hat"
    rodent = "rodent"
    smoking = "smoking"
    fire_exit_blocked = "fire_exit_blocked"
    phone_use = "phone_use"
    no_uniform = "no_uniform"


class VideoDetection(Event):
    """An AI video detection (明厨亮灶 and site cameras)."""

    topic: ClassVar[str] = "events.video"
    camera_id: Id
    cls: VideoClass = Field(description="Detected class")
    confidence: float = Field(ge=0.0, le=1.0)
    evidence_ref: str = Field("", max_length=500, description="URI of the stored clip or frame")


# --- Complaints -----------------------------------------------------------------------------------
class ComplaintChannel(StrEnum):
    hotline_12315 = "12315"
    hotline_12345 = "12345"
    online = "online"
    walk_in = "walk_in"


class ComplaintCategory(StrEnum):
    food_poisoning = "food_poisoning"  # 食物中毒: always opens a case
    food_quality = "food_quality"
    hygiene = "hygiene"
    counterfeit_drug = "counterfeit_drug"  # 假药: always opens a case
    drug_sales = "drug_sales"
    medical_beauty_injury = "medical_beauty_injury"  # always opens a case
    product_quality = "product_quality"
    equipment_safety = "equipment_safety"  # e.g. trapped in an elevator: always opens a case
    pricing = "pricing"
    other = "other"


# --- Entity matching (edge/matching.py) -----------------------------------------------------------
class MatchMethod(StrEnum):
    credit_code = "credit_code"  # 统一社会信用代码, exact (check digit valid)
    licence = "licence"  # licence number, exact
    name_address = "name_address"  # fuzzy name + address (+ township) against the registry
    alias = "alias"  # a name + address the office resolved before (match_aliases)
    office = "office"  # chosen by the task-force office in the workbench
    township = "township"  # names no business, only a township: the township's pseudo-entity


class Match(BaseModel):
    """How an imported or posted event found its ``entity_id``, and how sure that is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: MatchMethod
    confidence: float = Field(ge=0.0, le=1.0, description="1.0 for exact identifiers and office choices")


class MatchCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    entity_id: str
    name: str = ""
    address: str = ""
    township: str = ""
    score: float = Field(ge=0.0, le=1.0)


class MatchQueueItem(BaseModel):
    """An event whose entity could not be matched with confidence (``events.unmatched``, keyed by
    ``queue_id``), and later its resolution by the office (same ``queue_id``, ``status=resolved``,
    higher ``version``). ``event`` is the original event's JSON without ``entity_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: ClassVar[str] = "events.unmatched"
    schema_version: Literal[1] = 1
    queue_id: Id = Field(description="The original event's event_id")
    version: int = Field(ge=0, description="Epoch milliseconds of this record: the latest wins")
    status: Literal["pending", "resolved"] = "pending"
    event_topic: str = Field(description="Topic of the original event, e.g. events.complaint")
    event: str = Field(max_length=20000, description="The original event as JSON, without entity_id")
    name: str = Field("", max_length=200)
    address: str = Field("", max_length=300)
    township: str = Field("", max_length=50)
    credit_code: str = Field("", max_length=32)
    licence: str = Field("", max_length=64)
    alias_key: str = Field("", max_length=600, description="Normalised name|address remembered on resolution")
    candidates: list[MatchCandidate] = Field(default_factory=list, max_length=10)
    reason: str = Field("", max_length=500)
    source: ShortText = ""
    resolved_entity_id: str = ""
    resolved_by: str = ""
    at: datetime


class Complaint(Event):
    """A citizen's complaint. Its ``entity_id`` is the matched entity (``match`` says how), or the
    township's pseudo-entity ``township:<slug>`` when it names only a township (edge/matching.py)."""

    topic: ClassVar[str] = "events.complaint"
    channel: ComplaintChannel
    category: ComplaintCategory
    text: str = Field("", max_length=2000, description="Free text; phone and ID numbers are masked before storage")
    township: str = Field("", max_length=50)
    location: str = Field("", max_length=300)
    match: Match | None = Field(None, description="How entity_id was found (imports, gateway); None: given")


# --- Inspections ----------------------------------------------------------------------------------
class Severity(StrEnum):
    minor = "minor"
    serious = "serious"
    critical = "critical"


class Violation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(min_length=1, max_length=32)
    severity: Severity
    description: str = Field("", max_length=500)
    suspected_crime: bool = Field(
        False,
        description="The inspector marks the finding as a suspected crime (涉嫌犯罪): "
        "the alert is transferred to the police (行刑衔接)",
    )


class InspectionOutcome(StrEnum):
    passed = "pass"
    pass_with_conditions = "pass_with_conditions"
    fail = "fail"


class InspectionResult(Event):
    """Result of one (possibly joint) inspection."""

    topic: ClassVar[str] = "events.inspection"
    inspection_id: Id
    item_id: int = Field(ge=1, description="Key supervision item id from the catalog")
    departments: list[str] = Field(min_length=1, max_length=20)
    inspectors: list[str] = Field(default_factory=list, max_length=20)
    checklist: dict[str, bool] = Field(default_factory=dict, description="Checklist point → compliant")
    violations: list[Violation] = Field(default_factory=list, max_length=200)
    outcome: InspectionOutcome
    order_id: str = Field(
        "",
        max_length=64,
        description="A 复查 (re-inspection) of this rectification order (RO-…): pass closes it, otherwise it re-opens",
    )
    match: Match | None = Field(None, description="How entity_id was found (imports, gateway); None: given")

    @field_validator("departments")
    @classmethod
    def _depts(cls, v: list[str], info: ValidationInfo) -> list[str]:
        check = _catalog_code("department")
        return [check(d, info) for d in v]

    @field_validator("item_id")
    @classmethod
    def _item(cls, v: int, info: ValidationInfo) -> int:
        cat = (info.context or {}).get("catalog")
        if cat is not None and v not in cat.items:
            raise ValueError(f"unknown supervision item {v}; known: {sorted(cat.items)}")
        return v

    @property
    def worst(self) -> Severity | None:
        order = {Severity.minor: 0, Severity.serious: 1, Severity.critical: 2}
        return max((x.severity for x in self.violations), key=order.__getitem__, default=None)


# --- Disposal feedback ----------------------------------------------------------------------------
class FeedbackStatus(StrEnum):
    # the task-force office's decision (专班研判改派), e.g. after a not_ours: ``assign_to`` become
    # receivers, departments that answered not_ours are released; only the office may send it
    reassign = "reassign"
    # the office merged a clue (an unmatched complaint, a low-confidence alert, a dispute …) into this alert
    # (专班研判合并): recorded on the alert, its receivers told; the clue and the reason in ``comment``
    merged = "merged"
    # a receiving department's answers (督促反馈)
    acknowledged = "acknowledged"
    in_progress = "in_progress"
    disposed = "disposed"
    not_ours = "not_ours"
    # a case transfer's receiver (县公安局) answers (行刑衔接)
    accepted = "accepted"  # 受理 / 立案
    declined = "declined"  # 不予受理, with the reason in ``comment``: the case returns to the lead department
    # the responsible department reports a rectification order done (整改完成, evidence in
    # ``attachment_sha256``): ``alert_id`` carries the order id (RO-…); a 复查 task follows
    rectified = "rectified"


class Verdict(StrEnum):
    """What the on-site check found (核查结果), given with 已处置."""

    confirmed = "confirmed"  # 属实
    not_confirmed = "not_confirmed"  # 不属实: the risk was not found on site
    false_alarm = "false_alarm"  # 误报: the alert itself was wrong (reason code required)


class Measure(StrEnum):
    """A measure taken on a confirmed alert (处置措施)."""

    rectify = "rectify"  # 责令整改 (the order's items and deadlines: the 整改 order)
    case = "case"  # 立案 (case_number)
    fine = "fine"  # 罚款 (fine_yuan)
    suspend = "suspend"  # 停业整顿
    transfer = "transfer"  # 移送 (transfer_to)


class DisposalOutcome(BaseModel):
    """The outcome of a disposal: the verdict and, when confirmed, the measures taken.

    A false alarm names a reason code of ``riskwatch/data/false_alarm_reasons.yaml`` (checked by the
    pipeline, which refuses an unknown code to the dead letters)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)
    verdict: Verdict
    measures: list[Measure] = Field(default_factory=list, max_length=5, description="verdict=confirmed: measures")
    rectify_note: str = Field("", max_length=500, description="measure rectify: what the entity must fix (note)")
    case_number: str = Field("", max_length=64, description="measure case: the case number (立案号)")
    fine_yuan: float | None = Field(None, gt=0, le=1e9, description="measure fine: the amount in yuan")
    transfer_to: str = Field("", max_length=100, description="measure transfer: to whom (移送对象)")
    reason: str = Field(
        "", pattern=r"^([a-z][a-z0-9_]{0,39})?$", description="verdict=false_alarm: reason code (false_alarm_reasons)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> DisposalOutcome:
        m = set(self.measures)
        if len(m) != len(self.measures):
            raise ValueError("measures: each measure once")
        if self.verdict != Verdict.confirmed and m:
            raise ValueError(f"measures are only for verdict=confirmed (got verdict={self.verdict})")
        if (self.verdict == Verdict.false_alarm) != bool(self.reason):
            raise ValueError("verdict=false_alarm needs a reason code, and only it has one")
        for code, value, name in (
            (Measure.case, self.case_number, "case_number"),
            (Measure.fine, self.fine_yuan, "fine_yuan"),
            (Measure.transfer, self.transfer_to, "transfer_to"),
        ):
            if (code in m) != bool(value):
                raise ValueError(f"measure {code.value} needs {name}, and {name} needs measure {code.value}")
        if self.rectify_note and Measure.rectify not in m:
            raise ValueError("rectify_note needs measure rectify")
        return self


class DisposalFeedback(Event):
    """A department's feedback on an alert it received (督促反馈), or the task-force office's
    decision who handles it (``status=reassign`` with ``assign_to`` and the reason in ``comment``)."""

    topic: ClassVar[str] = "events.feedback"
    alert_id: Id
    department: str
    status: FeedbackStatus
    comment: str = Field("", max_length=2000)
    result: str = Field("", max_length=2000, description="Disposal result when status=disposed")
    user: str = Field(
        "",
        max_length=64,
        description="Person who gave the feedback (the workbench fills it); "
        "alert_history records <department>/<user> as the actor",
    )
    attachment_sha256: str = Field(
        "",
        pattern=r"^([0-9a-f]{64})?$",
        description="SHA-256 of an attached file (content-addressed store of the workbench)",
    )
    assign_to: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="status=reassign: department codes the task-force office makes responsible",
    )
    outcome: DisposalOutcome | None = Field(
        None,
        description="status=disposed: the verdict and measures (required by the workbench and the simulated "
        "departments; a disposed message without one is accepted as outcome unknown in this release)",
    )

    _dept = field_validator("department")(_catalog_code("department"))

    @field_validator("assign_to")
    @classmethod
    def _assign_to(cls, v: list[str], info: ValidationInfo) -> list[str]:
        check = _catalog_code("department")
        return [check(d, info) for d in v]

    @model_validator(mode="after")
    def _reassign(self) -> DisposalFeedback:
        if self.status == FeedbackStatus.reassign:
            if not self.assign_to:
                raise ValueError("status=reassign needs assign_to (the responsible department codes)")
            if not self.comment:
                raise ValueError("status=reassign needs the reason in comment")
        elif self.assign_to:
            raise ValueError(f"assign_to is only for status=reassign (got status={self.status})")
        if self.outcome is not None and self.status != FeedbackStatus.disposed:
            raise ValueError(f"outcome is only for status=disposed (got status={self.status})")
        return self


# --- Inspection tasks (§二(四): joint inspections) --------------------------------------------------
class TaskSource(StrEnum):
    alert = "alert"
    plan = "plan"
    spot_check = "spot_check"
    recheck = "recheck"  # 复查 of a rectification order (ref = the order id)


class InspectionTask(Event):
    """A department's pending inspection of an entity: from a spot-check draw (双随机), a
    department's own plan, or another system. The worker merges an entity's tasks of several
    departments due within a window into one joint inspection (联合检查) on ``inspection.plans``."""

    topic: ClassVar[str] = "events.task"
    task_id: Id
    department: str
    due: AwareDatetime = Field(description="When the inspection should happen by (may be in the future)")
    item_id: int | None = Field(None, ge=1, description="Key supervision item, if any")
    kind: TaskSource = TaskSource.plan
    ref: ShortText = Field("", description="Spot-check id, plan id or alert id")
    note: ShortText = ""

    _dept = field_validator("department")(_catalog_code("department"))

    @field_validator("item_id")
    @classmethod
    def _item(cls, v: int | None, info: ValidationInfo) -> int | None:
        cat = (info.context or {}).get("catalog")
        if v is not None and cat is not None and v not in cat.items:
            raise ValueError(f"unknown supervision item {v}; known: {sorted(cat.items)}")
        return v


class InspectionPlan(BaseModel):
    """One planned visit on ``inspection.plans``: the merged tasks of one entity, led by the lead
    department of their item; ``joint`` when several departments take part."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    inspection_id: str
    entity_id: str
    entity_name: str = ""
    township: str = ""
    lead: str
    departments: list[str]
    item_ids: list[int]
    due: datetime
    joint: bool
    task_ids: list[str]
    sources: list[str] = Field(description="alert | plan | spot_check, per task")
    planned_at: datetime
    topic: ClassVar[str] = "inspection.plans"


# --- Produced: alerts and dead letters ------------------------------------------------------------
# the codes of schemas.vocabulary.NoticeKind (a Literal keeps the exported JSON schema; tests/test_vocabulary.py
# checks that both list the same codes)
NotificationKind = Literal[
    "firing",
    "level_up",
    "resolved",
    "urge",
    "escalate",
    "flapping",
    "stable",
    "silence_expired",
    "receiver_added",
    "released",
    "not_ours",
    "case_transfer",
    "transfer_urge",
    "transfer_accepted",
    "transfer_returned",
    "merged",
]


class Contribution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    signal: str = Field(description="Signal code, e.g. sensor.cold_chain_temp")
    value: float
    detail: str = Field("", description="Chinese explanation")


class Alert(BaseModel):
    """An alert as published on ``alerts.<dept>`` and ``alerts.all`` (one message per revision).

    ``alert_id`` is stable for one incident (fingerprint of entity, item and rule plus the
    episode number); consumers keep the highest ``revision`` per ``alert_id``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    alert_id: str
    revision: int = Field(ge=1, description="Increases with every change of this alert")
    fingerprint: str = Field(description="entity|item|rule")
    entity_id: str
    entity_name: str = ""
    entity_kind: str = ""
    township: str = ""
    item_id: int | None = Field(
        None, description="None when no item covers the entity kind (task-force office decides)"
    )
    item_name: str = ""
    rule: str = Field(description="Detector or rule code that raised it")
    level: Level
    level_zh: str
    status: AlertStatus
    score: float = Field(ge=0, le=100)
    title: str = Field(description="Chinese one-line title")
    message: str = Field(description="Chinese text for the department")
    explanation: list[Contribution] = Field(default_factory=list)
    lead_department: str
    departments: list[str] = Field(description="Every receiving department code")
    first_seen: datetime
    last_seen: datetime
    updated_at: datetime
    source_event_id: str = Field(description="The event that caused this revision (or 'timer' for deadlines)")
    notification: NotificationKind | None = Field(
        None, description="Why this revision was sent to departments (None: a state update for alerts.all only)"
    )
    recipients: list[str] = Field(
        default_factory=list, description="Departments whose alerts.<dept> topic carries this revision"
    )
    ack_due: datetime | None = Field(None, description="Acknowledgement (签收) deadline while open")
    dispose_due: datetime | None = Field(None, description="Disposal (处置) deadline while open")
    flapping: bool = Field(False, description="Held as flapping: notifications paused until stable")
    evidence_hash: str = Field("", description="SHA-256 of the alert's latest evidence bundle (table evidence)")
    transfer: str = Field("", description="Case transfer (案件移送) state: '' | transferred | accepted | returned")
    url: str = Field(
        "", description="The alert's page in the workbench (RISKWATCH_WEB_PUBLIC_URL), for notifications to link to"
    )
    chain_seq: int = Field(
        0, ge=0, description="Head of the alert's audit chain at this revision: the last alert_history seq (0: none)"
    )
    chain_hash: str = Field(
        "", description="Hash of that alert_history row (schemas/audit.py); `riskwatch audit verify` checks it"
    )
    topic: ClassVar[str] = "alerts.all"


class AlertTransition(BaseModel):
    """One recorded change of an alert (the audit trail), as published on ``alerts.events``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    alert_id: str
    seq: int = Field(ge=1, description="Position in this alert's history (1, 2, ...)")
    entity_id: str
    at: datetime
    kind: str = Field(
        description="status | level | feedback | receivers | reminder | flapping | silence | notify | "
        "evidence | transfer"
    )
    from_status: str = ""
    to_status: str
    actor: str = Field(description="Department code, 'detector', 'system', 'router' or a user")
    comment: str = ""
    prev_hash: str = Field(
        "", description="Hash of the previous row of this alert's chain (seq 1: the evidence bundle hash)"
    )
    hash: str = Field("", description="SHA-256(prev_hash ‖ RFC 8785 JSON of the row): schemas/audit.py")
    topic: ClassVar[str] = "alerts.events"


class SilenceSpec(BaseModel):
    """A silence / maintenance window (静默期) on ``control.silences``, keyed by ``silence_id``.

    Alerts matching every given matcher still change state and are recorded, but send no
    notification until ``ends_at``; then, if still open, one ``silence_expired`` notice."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    silence_id: Id
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    entity_id: Id | None = Field(None, description="Only this entity (None: any)")
    item_id: int | None = Field(None, ge=1, description="Only alerts of this supervision item (None: any)")
    rule: str | None = Field(None, max_length=200, description="Glob on the detector/rule code, e.g. rule.sensor.*")
    created_by: str = Field(..., min_length=1, max_length=64, description="Who set it (department code or user)")
    comment: str = Field("", max_length=500)
    topic: ClassVar[str] = "control.silences"

    @model_validator(mode="after")
    def _window(self) -> SilenceSpec:
        if self.ends_at <= self.starts_at:
            raise ValueError(
                f"ends_at ({self.ends_at.isoformat()}) must be after starts_at ({self.starts_at.isoformat()})"
            )
        if self.entity_id is None and self.item_id is None and self.rule is None:
            raise ValueError(
                "a silence needs at least one matcher (entity_id, item_id or rule): silencing everything is refused"
            )
        return self


class DeadLetter(BaseModel):
    """A message refused at the edge, with its original bytes and the reason.

    One dead letter per refused message, always. A gateway batch (``kind: sensor_batch``) with bad
    readings is one dead letter too: its payload once, every bad reading's position in ``indexes``
    and its reason in ``reasons`` (parallel lists, ascending positions), and ``error`` saying how many
    were refused followed by those reasons. This shape keeps the contract "original bytes + why" in
    one self-contained record: a consumer of the ``deadletter`` topic or of ClickHouse's
    ``dead_letters`` needs no join to find the bytes of a refusal, replaying a fixed batch is
    re-sending one payload, and a 256 KiB batch with 100 bad readings is stored once, not 100 times.
    ``indexes`` is empty for a message refused as a whole (a single reading, a bad envelope).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="Original key, UTF-8 with replacement, or None")
    payload_b64: str = Field(description="Original message bytes, base64 (a gateway batch: the whole batch, once)")
    error: str = Field(
        description="Why it was refused: which field of which message was wrong "
        "(a gateway batch: how many readings were refused, then each reading's reason on its own line)"
    )
    indexes: list[int] = Field(
        default_factory=list,
        description="In a gateway batch: the positions of the refused readings (`readings[i]`), ascending; "
        "empty when the whole message was refused",
    )
    reasons: list[str] = Field(
        default_factory=list, description="In a gateway batch: why each reading of `indexes` was refused (parallel)"
    )
    index: int | None = Field(
        None,
        description="Deprecated (older workers wrote one dead letter per bad reading with its position here); "
        "read `indexes`",
    )
    received_at: datetime
    source: str = Field(
        "",
        description="Who sent it, from the transport: the gateway's source name, the MQTT device's login, the "
        "importing operator's file; empty when the sender is only known as the topic's Kafka principal",
    )

    @model_validator(mode="after")
    def _parallel(self) -> DeadLetter:
        if len(self.indexes) != len(self.reasons):
            raise ValueError(f"indexes ({len(self.indexes)}) and reasons ({len(self.reasons)}) must be parallel")
        return self

    def refused(self) -> list[tuple[int | None, str]]:
        """(position, reason) of each refusal: one per bad reading of a batch, else (None, error);
        an older per-reading dead letter gives its one position."""
        if self.indexes:
            return list(zip(self.indexes, self.reasons, strict=True))
        return [(self.index, self.error)]


EVENT_MODELS: dict[str, type[Event]] = {
    m.topic: m
    for m in (
        EntityEvent,
        SensorReading,
        VideoDetection,
        Complaint,
        InspectionResult,
        DisposalFeedback,
        InspectionTask,
        DeviceEvent,
        CreditRecord,
    )
}
