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
import io
import operator
import pickle
import sys
from array import array
from dataclasses import dataclass, field, fields
from typing import Any

from detectors.fusion import EntityRisk
from detectors.inspection import EntityHistory
from detectors.rates import RateSurprise
from detectors.sensor import SensorAnomaly
from riskwatch.domain.lifecycle import AlertLifecycle, setstate_with_defaults
from riskwatch.domain.planning import InspectionTask
from streams.engine.evidence import Draft

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

    def __getstate__(self) -> dict[str, Any]:
        state = dict(zip(_PERSISTED, _get_persisted(self)))
        blobs = self._blobs
        for k, det in self.sensors.items():
            if k in self._dirty or k not in blobs:
                blobs[k] = pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL)
        self._dirty.clear()
        state["sensors"] = {k: blobs[k] for k in self.sensors}
        # the event-id ring as raw little-endian int64 bytes (an array pickles ~10x slower)
        state["recent"], state["recent_at"] = _le_bytes(self.recent), _le_bytes(self.recent_at)
        if self.readings:  # evidence windows: raw float64 bytes too
            state["readings"] = {k: _le_bytes(a) for k, a in self.readings.items()}
        # the inspection history and the fusion state as their plain tuples: pickling an object of
        # a class costs ~3 µs more than its tuple (copyreg's reduce), in every changelog write
        state["history"] = self.history.__getstate__()  # type: ignore[no-untyped-call]  # detectors/: not strict
        state["risk"] = self.risk.__getstate__()  # type: ignore[no-untyped-call]
        return state

    def __setstate__(self, state: Any) -> None:
        # a state pickled by an older version lacks the newer fields: they start empty
        if isinstance(state, tuple | list):  # dataclass(slots=True) default pickling
            state = dict(zip([f.name for f in fields(self)], state))
        sensors = state.get("sensors") or {}
        if sensors and isinstance(next(iter(sensors.values())), bytes):
            state = {**state, "sensors": {k: pickle.loads(b) for k, b in sensors.items()}}
            self._blobs = dict(sensors)
        else:
            self._blobs = {}
        self._dirty = set()
        for f in _PERSISTED_FIELDS:
            if f.name in state:
                setattr(self, f.name, state[f.name])
            else:
                setattr(self, f.name, f.default_factory() if callable(f.default_factory) else f.default)
        for name in ("recent", "recent_at"):  # bytes since the ring is pickled raw; arrays before
            v = getattr(self, name)
            if not isinstance(v, array):
                setattr(self, name, _from_le_bytes(v))
        if self.readings:
            raw: dict[str, Any] = self.readings  # bytes since the windows are pickled raw
            self.readings = {k: _from_le_bytes(b, "d") for k, b in raw.items()}
        for name, cls in (("history", EntityHistory), ("risk", EntityRisk)):
            v = getattr(self, name)
            if type(v) is tuple:  # pickled as its tuple (objects before)
                obj: Any = cls.__new__(cls)
                obj.__setstate__(v)
                setattr(self, name, obj)

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(raw: bytes | None) -> EntityState:
        if not raw:
            return EntityState()
        try:
            st: EntityState = pickle.loads(raw)
        except (ModuleNotFoundError, AttributeError):  # pickled before the engine had its own package
            st = _Renamed(io.BytesIO(raw)).load()
        return st


class _Renamed(pickle.Unpickler):
    """Reads states pickled when these classes lived in ``streams.state`` / ``streams.evidence``
    (changelogs and RocksDB stores written before the engine/runtime split); the next store rewrites them."""

    MOVED = {"streams.state": "streams.engine.state", "streams.evidence": "streams.engine.evidence"}

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(self.MOVED.get(module, module), name)


def _le_bytes(a: array[Any]) -> bytes:
    if sys.byteorder != "little":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _from_le_bytes(b: bytes, typecode: str = "q") -> array[Any]:
    a: array[Any] = array(typecode)
    a.frombytes(b)
    if sys.byteorder != "little":
        a.byteswap()
    return a


# the fields that are pickled (``_blobs`` and ``_dirty`` are not), looked up once
_PERSISTED_FIELDS = tuple(f for f in fields(EntityState) if not f.name.startswith("_"))
_PERSISTED = tuple(f.name for f in _PERSISTED_FIELDS)
_get_persisted = operator.attrgetter(*_PERSISTED)
