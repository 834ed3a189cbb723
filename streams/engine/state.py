"""Per-entity state: everything the pipeline remembers about one supervised entity.

One :class:`EntityState` per ``entity_id`` lives in a Faust table (changelog-backed, so a
restarted or newly assigned worker restores it) keyed like the input topics, so an entity's
events and its state are always in the same partition, on the same worker.

State is bounded: a fixed number of recent event ids, one small detector per sensor stream,
open alerts only (one per fingerprint), the inspection history (``detectors.inspection.EntityHistory``,
a fixed set of numbers), one rate-surge detector per rate signal (four floats each) and the risk
fusion state (``detectors.fusion.EntityRisk``: decayed signals, pruned when they fade). Entities
silent for ``entity_ttl_days`` (``last_seen``, event time) are evicted by the worker.

>>> s = EntityState()
>>> s.seen("ev-1", ("events.sensor", 0, 10))
False
>>> s.seen("ev-1", ("events.sensor", 0, 10))   # same message redelivered after a restart
True
>>> s2 = EntityState.loads(s.dumps())
>>> s2.seen("ev-1", ("events.sensor", 0, 11))  # same event_id at another offset: a duplicate
True
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass, field, fields
from typing import Any

from detectors.device_health import DeviceHealth, health_from_data, health_to_data
from detectors.fusion import EntityRisk
from detectors.inspection import EntityHistory
from detectors.rates import RateSurprise
from detectors.sensor import SensorAnomaly
from riskwatch.domain.lifecycle import AlertLifecycle, Transition, setstate_with_defaults
from riskwatch.domain.planning import InspectionTask
from streams.engine.codec import (
    HEADER,
    MAGIC,
    READS,
    READS_TEXT,
    StateFormatError,
    checked,
    from_le_bytes,
    le_bytes,
    number,
    pack,
    unpack,
)
from streams.engine.evidence import Draft
from streams.engine.legacy_state import LegacyStateError, is_pickle, load_pickled

RECENT_IDS = 64


Where = tuple[str, int, int]  # (topic, partition, offset) of a message
# what an entity keeps of a complaint / video detection for later evidence bundles (evidence.py)
ComplaintRecord = tuple[float, str, str, str, str]  # (time, event_id, channel, category, masked text)
VideoRecord = tuple[float, str, str, str, float, str]  # (time, event_id, camera, class, confidence, ref)


_last_h: tuple[str | None, int] = (None, 0)  # (event_id, its hash): one entry, replaced atomically


def _h(event_id: str) -> int:
    global _last_h
    last = _last_h  # the processor asks first_delivery() and then seen() about the same id
    if last[0] is event_id:
        return last[1]
    h = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)
    _last_h = (event_id, h)
    return h


@dataclass(slots=True)
class OpenAlert:
    """The part of an alert the pipeline needs to update it (the full alert lives in ClickHouse)."""

    alert_id: str
    fingerprint: str
    rule: str
    item_id: int | None
    level: str
    status: str
    revision: int
    first_seen: float
    last_seen: float
    title: str
    departments: tuple[str, ...]
    hits: int = 1
    ok_streak: int = 0
    score: float = 0.0
    # status, deadlines, feedback, history (keyword-only: a required field in its pickled position)
    lc: AlertLifecycle = field(kw_only=True)
    evidence: Draft | None = None  # the evidence bundle (hash; readings after the trigger)
    chain: str = ""  # hash of the alert's last alert_history row (the audit chain's head)

    def __setstate__(self, state: Any) -> None:  # states pickled before a field was added
        setstate_with_defaults(self, state)

    def to_data(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _ALERT_FIELDS}
        d["lc"] = self.lc.to_data()
        d["evidence"] = None if self.evidence is None else self.evidence.to_data()
        return d

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> OpenAlert:
        if type(d) is not dict:
            raise ValueError("open alert: not a dict")
        known = {k: v for k, v in d.items() if k in _ALERT_FIELDS}
        known["departments"] = tuple(checked(d.get("departments", []), list))
        known["lc"] = AlertLifecycle.from_data(checked(d.get("lc"), dict))
        ev = d.get("evidence")
        known["evidence"] = None if ev is None else Draft.from_data(ev)
        return cls(**known)


@dataclass(slots=True)
class OrderItem:
    """One required action of a rectification order (整改事项): from one finding."""

    code: str
    severity: str
    description: str
    action: str
    due: float  # unix seconds

    def to_data(self) -> list[Any]:
        return [self.code, self.severity, self.description, self.action, self.due]

    @classmethod
    def from_data(cls, d: list[Any]) -> OrderItem:
        code, sev, desc, action, due = checked(d, list)
        return cls(str(code), str(sev), str(desc), str(action), number(due))


@dataclass(slots=True)
class OrderStep:
    """One step of an order's life cycle (the full history is in alert_history)."""

    at: float
    status: str
    actor: str
    comment: str

    def to_data(self) -> list[Any]:
        return [self.at, self.status, self.actor, self.comment]

    @classmethod
    def from_data(cls, d: list[Any]) -> OrderStep:
        at, status, actor, comment = checked(d, list)
        return cls(number(at), str(status), str(actor), str(comment))


@dataclass(slots=True)
class Order:
    """A rectification order (整改令) of the entity: streams/engine/orders.py runs its life cycle."""

    order_id: str
    alert_id: str  # the alert whose outcome ordered it ("" for an inspection's own order)
    source: str  # the inspection or alert id it came from
    department: str  # responsible (the lead department): gets its 复查 task
    item_id: int | None
    reason: str
    items: list[OrderItem]
    status: str  # issued | claimed | reopened | escalated | closed (orders.STATUS_ZH)
    issued_at: float
    deadline: float
    remind_due: float  # next 督促 / escalation at the deadline (lifecycle.yaml reminders)
    reminders: int = 0
    failed: int = 0  # failed 复查 so far
    claimed_at: float = 0.0
    evidence: str = ""  # sha256 of the claim's attachment
    recheck_task: str = ""  # task id of the pending 复查
    revision: int = 0  # steps so far (= the audit chain's seq)
    chain: str = ""  # hash of the order's last alert_history row
    updated_at: float = 0.0
    history: list[OrderStep] = field(default_factory=list)

    def to_data(self) -> dict[str, Any]:
        d = {name: getattr(self, name) for name in _ORDER_FIELDS}
        d["items"] = [i.to_data() for i in self.items]
        d["history"] = [h.to_data() for h in self.history]
        return d

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> Order:
        if type(d) is not dict:
            raise ValueError("order: not a dict")
        known = {k: v for k, v in d.items() if k in _ORDER_FIELDS}
        known["items"] = [OrderItem.from_data(i) for i in checked(d.get("items", []), list)]
        known["history"] = [OrderStep.from_data(h) for h in checked(d.get("history", []), list)]
        return cls(**known)


@dataclass(slots=True)
class Device:
    """A registered device of the entity (设备台账, from ``events.device``): what its readings are
    judged against — its unit (for readings that give none) and its ratings (``None``: the county
    default of ``rules.yaml``)."""

    device_id: str
    channels: tuple[str, ...] = ()
    unit: str = ""
    rated_pressure_mpa: float | None = None
    rated_temp_c: float | None = None
    rated_load_kg: float | None = None
    set_point_min_c: float | None = None
    set_point_max_c: float | None = None
    medium: str = ""
    interval_s: int = 60
    calibrated_on: str = ""  # ISO date or ""
    owner: str = ""
    registered_at: float = 0.0  # event time of its latest registry event
    channel_intervals: dict[str, int] = field(default_factory=dict)  # channel -> its own interval, seconds

    def interval(self, channel: str) -> int:
        """The channel's expected reporting interval: its own, else the device's."""
        return self.channel_intervals.get(channel, self.interval_s)

    def rating(self, name: str) -> float | None:
        """A rating by its ``DeviceEvent`` field name (``rated_pressure_mpa`` ...), None when not registered."""
        v = getattr(self, name, None) if name in _RATINGS else None
        return v if isinstance(v, float) else None

    def to_data(self) -> list[Any]:
        return [getattr(self, n) for n in _DEVICE_FIELDS]

    @classmethod
    def from_data(cls, d: Any) -> Device:
        if type(d) is not list or len(d) > len(_DEVICE_FIELDS) or not d or type(d[0]) is not str:
            raise ValueError("device: not a list of its fields")
        dev = cls(*d)
        dev.channels = tuple(checked(list(dev.channels), list))
        dev.channel_intervals = {str(k): int(v) for k, v in checked(dev.channel_intervals, dict).items()}
        return dev


_RATINGS = frozenset(("rated_pressure_mpa", "rated_temp_c", "rated_load_kg", "set_point_min_c", "set_point_max_c"))


OutboxRecord = tuple[str, "bytes | None", bytes]  # topic name, key, value: one output record to send


def outbox_record(r: Any) -> OutboxRecord:
    """An outbox record read back from plain data (shape checked)."""
    topic, key, value = checked(r, list)
    return (checked(topic, str), None if key is None else checked(key, bytes), checked(value, bytes))


@dataclass(slots=True)
class EntityState:
    name: str = ""
    kind: str = ""
    township: str = ""
    registered: bool = False
    closed: bool = False
    last_seen: float = 0.0
    # the last RECENT_IDS event ids as 64-bit hashes (a ring), with where each was first seen
    # packed as offset<<20 | partition<<8 | topic index; plus the highest offset per topic
    recent: array[int] = field(default_factory=lambda: array("q"))
    recent_at: array[int] = field(default_factory=lambda: array("q"))
    topics: list[str] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)
    # "<device_id>:<channel>" -> the device channel's stream detector
    sensors: dict[str, SensorAnomaly] = field(default_factory=dict)
    # fingerprint -> OpenAlert (open or recently resolved, until closed)
    alerts: dict[str, OpenAlert] = field(default_factory=dict)
    # fingerprint -> number of episodes so far (makes alert ids of later incidents distinct)
    episodes: dict[str, int] = field(default_factory=dict)
    # inspection history: features for the shared inspection-outcome model
    history: EntityHistory = field(default_factory=EntityHistory)
    # "complaint" | "video" -> its rate-surge detector
    rates: dict[str, RateSurprise] = field(default_factory=dict)
    # "<rule>:<device>" -> recent hit times of a rule that needs confirmation (bounded by its `confirm`)
    confirm: dict[str, list[float]] = field(default_factory=dict)
    # risk fusion state: decayed signals, warning level, credit peak
    risk: EntityRisk = field(default_factory=EntityRisk)
    # pending inspection tasks: task_id -> task (done by an inspection)
    tasks: dict[str, InspectionTask] = field(default_factory=dict)
    # inspection plans already published (ids, the last few)
    plans: list[str] = field(default_factory=list)
    # evidence (streams/engine/evidence.py): "<device_id>:<channel>" -> array('d') [t0, v0, t1, v1, ...]
    # (the last `max_points` readings), and the last few complaints and video detections
    readings: dict[str, array[float]] = field(default_factory=dict)
    complaints: list[ComplaintRecord] = field(default_factory=list)
    videos: list[VideoRecord] = field(default_factory=list)
    licensed: bool = True  # the registry shows a licence number (行刑衔接: unlicensed equipment)
    # audit chain heads not yet anchored: alert_id -> (seq, hash) (streams/runtime/anchors.py)
    unanchored: dict[str, tuple[int, str]] = field(default_factory=dict)
    # rectification orders (整改令) until closed: order_id -> order (streams/engine/orders.py)
    orders: dict[str, Order] = field(default_factory=dict)
    # registered devices (events.device): device_id -> Device; an entity holding any is never evicted
    devices: dict[str, Device] = field(default_factory=dict)

    # device health (detectors/device_health.py, streams/engine/health.py): "<device_id>:<channel>" -> its record
    health: dict[str, DeviceHealth] = field(default_factory=dict)
    # a timer's outputs waiting for the commit of this state (streams/runtime/outbox.py), and the entity's
    # later outputs behind them (its order): sent once the changelog holds them, then dropped from here
    outbox: list[OutboxRecord] = field(default_factory=list)
    # not persisted: pickled sensor detectors from the last dumps(), and the detectors changed
    # since (the processor marks them) — dumps() re-pickles only those
    _blobs: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    _dirty: set[str] = field(default_factory=set, repr=False, compare=False)

    def touch_sensor(self, key: str) -> None:
        self._dirty.add(key)

    def seen(self, event_id: str, where: Where, keep: int = RECENT_IDS, checked: bool = False) -> bool:
        """Record an event id; True if it was processed before (redelivery or duplicate).
        The ring keeps the last ``keep`` ids (a gateway batch's readings pass more than
        ``RECENT_IDS``: the ring then holds the whole batch, and shrinks back on later events).
        ``checked``: the caller just asked :meth:`first_delivery` (None): not asked again."""
        if not checked and self.first_delivery(event_id, where) is not None:
            return True
        topic, partition, offset = where
        if topic not in self.topics:
            self.topics.append(topic)
        packed = (offset << 20) | (partition << 8) | self.topics.index(topic)
        if len(self.recent) >= keep:
            drop = len(self.recent) - keep + 1
            del self.recent[:drop]
            del self.recent_at[:drop]
        self.recent.append(_h(event_id))
        self.recent_at.append(packed)
        if offset > self.offsets.get(topic, -1):
            self.offsets[topic] = offset
        return False

    def first_delivery(self, event_id: str, where: Where | None = None) -> Where | None:
        """Where this event id was first processed (from the ring of the last RECENT_IDS ids), else None.

        Not inferred from offsets: Faust can skip a message around a rebalance and process later
        ones of the partition first, so "at or below the highest offset processed" does not mean
        processed; after the restart that redelivers it, it must be processed, not dropped."""
        h = _h(event_id)
        recent = self.recent
        if h in recent:  # a scan in C; the common answer is "no"
            for i in range(len(recent) - 1, -1, -1):
                if recent[i] == h:
                    p = self.recent_at[i]
                    return (self.topics[p & 0xFF], (p >> 8) & 0xFFF, p >> 20)
        return None

    # --- the changelog's data-only format -----------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        """The state as plain data (field name -> dicts, lists, numbers, strings, bytes): what
        :meth:`dumps` packs. Each detector and record gives its own ``to_data()``; the sensor
        detectors are kept packed (``_blobs``) and re-packed only when changed since the last call."""
        blobs = self._blobs
        sensors = self.sensors
        for k, det in sensors.items():
            if k in self._dirty or k not in blobs:
                blobs[k] = pack(det.to_data())
        self._dirty.clear()
        if len(blobs) != len(sensors):
            self._blobs = blobs = {k: blobs[k] for k in sensors}
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "township": self.township,
            "registered": self.registered,
            "closed": self.closed,
            "last_seen": self.last_seen,
            # the event-id ring and the evidence windows as raw little-endian int64 / float64 bytes
            "recent": le_bytes(self.recent),
            "recent_at": le_bytes(self.recent_at),
            "topics": self.topics,
            "offsets": self.offsets,
            "sensors": blobs,
            "alerts": {k: a.to_data() for k, a in self.alerts.items()} if self.alerts else {},
            "episodes": self.episodes,
            "history": self.history.to_data(),
            "rates": {k: r.to_data() for k, r in self.rates.items()} if self.rates else {},
            "confirm": self.confirm,
            "risk": self.risk.to_data(),
            "tasks": {k: t.to_data() for k, t in self.tasks.items()} if self.tasks else {},
            "plans": self.plans,
            "readings": {k: le_bytes(a) for k, a in self.readings.items()} if self.readings else {},
            "complaints": self.complaints,
            "videos": self.videos,
            "licensed": self.licensed,
            "unanchored": self.unanchored,
            "devices": {k: v.to_data() for k, v in self.devices.items()} if self.devices else {},
            "health": health_to_data(self.health) if self.health else {},
        }
        if self.outbox:  # usually empty: only between a timer's decision and its commit
            d["outbox"] = [list(r) for r in self.outbox]
        if self.orders:  # no key without orders: states that never had one stay byte for byte as they were
            d["orders"] = {k: o.to_data() for k, o in self.orders.items()}
        return d

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> EntityState:
        """The state of :meth:`to_data`'s dict: plain data into constructors, shapes checked
        (ValueError / TypeError otherwise). Fields it lacks (written by an older version) start empty;
        keys it does not know are ignored."""
        if type(d) is not dict:
            raise ValueError("entity state: not a dict")
        g = d.get
        st = cls.__new__(cls)
        st.name, st.kind, st.township = (
            checked(g("name", ""), str),
            checked(g("kind", ""), str),
            checked(g("township", ""), str),
        )
        st.registered, st.closed = checked(g("registered", False), bool), checked(g("closed", False), bool)
        st.licensed = checked(g("licensed", True), bool)
        st.last_seen = number(g("last_seen", 0.0))
        st.recent = from_le_bytes(checked(g("recent", b""), bytes))
        st.recent_at = from_le_bytes(checked(g("recent_at", b""), bytes))
        if len(st.recent) != len(st.recent_at):
            raise ValueError("entity state: event-id ring and positions differ in length")
        st.topics = checked(g("topics", []), list)
        st.offsets = checked(g("offsets", {}), dict)
        st.sensors, st._blobs, st._dirty = {}, {}, set()
        for k, v in checked(g("sensors", {}), dict).items():
            if type(v) is bytes:  # packed on its own (the usual case): kept packed until it changes
                st.sensors[k] = SensorAnomaly.from_data(unpack(v))
                st._blobs[k] = v
            else:  # its list (a migrated pickle)
                st.sensors[k] = SensorAnomaly.from_data(v)
        st.alerts = {k: OpenAlert.from_data(a) for k, a in checked(g("alerts", {}), dict).items()}
        st.episodes = checked(g("episodes", {}), dict)
        h, r = g("history"), g("risk")
        st.history = EntityHistory() if h is None else EntityHistory.from_data(h)
        st.risk = EntityRisk() if r is None else EntityRisk.from_data(r)
        st.rates = {k: RateSurprise.from_data(v) for k, v in checked(g("rates", {}), dict).items()}
        st.confirm = checked(g("confirm", {}), dict)
        st.tasks = {k: InspectionTask.from_data(t) for k, t in checked(g("tasks", {}), dict).items()}
        st.plans = checked(g("plans", []), list)
        st.readings = {k: from_le_bytes(checked(b, bytes), "d") for k, b in checked(g("readings", {}), dict).items()}
        st.complaints = [tuple(c) for c in checked(g("complaints", []), list)]
        st.videos = [tuple(v) for v in checked(g("videos", []), list)]
        st.unanchored = {k: (int(v[0]), str(v[1])) for k, v in checked(g("unanchored", {}), dict).items()}
        st.orders = {k: Order.from_data(o) for k, o in checked(g("orders", {}), dict).items()}
        st.devices = {k: Device.from_data(v) for k, v in checked(g("devices", {}), dict).items()}

        st.health = health_from_data(g("health", {}))
        st.outbox = [outbox_record(r) for r in checked(g("outbox", []), list)]
        return st

    def __getstate__(self) -> dict[str, Any]:  # an in-process copy (pickle, deepcopy): the same plain data
        return self.to_data()

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = EntityState.from_data(state)
        for name in _SLOTS:
            setattr(self, name, getattr(other, name))

    def dumps(self) -> bytes:
        """The state for the changelog and the local store: :data:`HEADER` + msgpack of :meth:`to_data`."""
        packed: bytes = pack(self.to_data())
        return HEADER + packed

    @staticmethod
    def loads(raw: bytes | None) -> EntityState:
        """The state of :meth:`dumps`' bytes; also reads a state pickled by an older version, as data
        (``streams/engine/legacy_state.py``: no code runs). :class:`StateFormatError` if it can't be read:
        an unknown format version, malformed bytes, or a pickle naming anything but state classes.

        >>> EntityState.loads(b"RW\\x09...")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        streams.engine.codec.StateFormatError: entity state format 9 is not known here (reads 1, 2, 3, 4)...
        """
        if not raw:
            return EntityState()
        if raw[:2] == MAGIC:
            version = raw[2] if len(raw) > 2 else -1
            if version not in READS:
                raise StateFormatError(
                    f"entity state format {version} is not known here (reads {READS_TEXT}): newer riskwatch?"
                )
            try:
                return EntityState.from_data(unpack(memoryview(raw)[len(HEADER) :]))
            except Exception as e:  # any shape error: the record is not a state this version wrote
                raise StateFormatError(f"malformed entity state ({type(e).__name__}: {e})") from None
        if is_pickle(raw):
            try:
                return EntityState.from_data(load_pickled(raw, _LEGACY_NAMES))
            except LegacyStateError as e:
                raise StateFormatError(f"pickled entity state not read: {e}") from None
            except Exception as e:
                raise StateFormatError(f"malformed pickled entity state ({type(e).__name__}: {e})") from None
        raise StateFormatError(f"not an entity state (starts {bytes(raw[:4])!r})")


_ALERT_FIELDS = frozenset(f.name for f in fields(OpenAlert))
_ORDER_FIELDS = frozenset(f.name for f in fields(Order)) - {"items", "history"}
_DEVICE_FIELDS = tuple(f.name for f in fields(Device))
# field names, in order, of the dataclasses a pickled state may hold (pickled as lists of values)
_LEGACY_NAMES = {
    c.__name__: tuple(f.name for f in fields(c))
    for c in (EntityState, OpenAlert, AlertLifecycle, Transition, InspectionTask, Draft)
}
# the slots __setstate__ copies (all fields: the caches start empty)
_SLOTS = tuple(f.name for f in fields(EntityState))
