"""Entity states pickled by older versions, read once as plain data (never as code).

Before the data-only format (``streams/engine/state.py``), entity states went to the changelog
and the local store as pickles. A pickle names callables that the unpickler imports and calls, so
whoever can write the changelog could run code in every worker that restores from it. This module
reads such a record with :class:`RestrictedUnpickler`:

* ``find_class`` answers only the project's state classes, under their current and their old
  module names (``streams.state`` / ``streams.evidence``, before the engine/runtime split), and
  ``array.array`` / ``array._array_reconstructor``; everything else (``os.system``,
  ``builtins.eval``, ``subprocess``, ``copyreg`` …) raises :class:`LegacyStateError` before it is
  called;
* even the allowed classes are not constructed: each is answered by a :class:`_Record` stand-in
  that only keeps the arguments and the state handed to it. No ``__setstate__`` or ``__reduce__``
  of the project runs (the old ``EntityState.__setstate__`` unpickled nested sensor blobs with the
  plain unpickler: here they go through this class too);
* :func:`load_pickled` turns the records into the data that
  :meth:`streams.engine.state.EntityState.from_data` reads, which then builds the objects.

The next commit of the entity writes it in the new format; a restricted read costs about as much
as the old unpickle, once per state.

>>> import os, pickle
>>> class Attack:
...     def __reduce__(self):
...         return (os.system, ("echo pwned",))
>>> load_pickled(pickle.dumps(Attack()))
Traceback (most recent call last):
streams.engine.legacy_state.LegacyStateError: refused: posix.system is not a state class
"""

from __future__ import annotations

import io
import pickle
import sys
from array import array
from collections.abc import Mapping
from typing import Any

PICKLE_PROTOCOLS = frozenset(range(2, 6))  # a pickle of protocol >= 2 starts with b"\x80" and this byte


class LegacyStateError(ValueError):
    """A pickled state that cannot be read as data (refused or malformed)."""


class _Record:
    """Stands in for an allowed class: keeps its constructor arguments and its pickled state."""

    __slots__ = ("args", "state")
    kind = ""
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any) -> _Record:
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any) -> None:  # REDUCE of the class itself: already done by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


# module -> names of the classes that pickled entity states hold (current and old module names)
ALLOWED: dict[str, tuple[str, ...]] = {
    "streams.engine.state": ("EntityState", "OpenAlert"),
    "streams.state": ("EntityState", "OpenAlert"),
    "streams.engine.evidence": ("Draft",),
    "streams.evidence": ("Draft",),
    "detectors.sensor": ("SensorAnomaly",),
    "detectors.rates": ("RateSurprise",),
    "detectors.inspection": ("EntityHistory",),
    "detectors.fusion": ("EntityRisk",),
    "riskwatch.domain.lifecycle": ("AlertLifecycle", "Transition"),
    "riskwatch.domain.planning": ("InspectionTask",),
}
_RECORDS: dict[tuple[str, str], type[_Record]] = {
    (module, name): type(name, (_Record,), {"__slots__": (), "kind": name})
    for module, names in ALLOWED.items()
    for name in names
}
# the only real callables a state pickle may name: arrays (the ring, the evidence windows, detectors)
_REAL = frozenset({("array", "array"), ("array", "_array_reconstructor")})


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` answers only state classes (as :class:`_Record` stand-ins)
    and arrays; anything else is refused before it is imported."""

    def find_class(self, module: str, name: str) -> Any:
        rec = _RECORDS.get((module, name))
        if rec is not None:
            return rec
        if (module, name) in _REAL:
            import array as array_module

            return getattr(array_module, name)
        raise LegacyStateError(f"refused: {module}.{name} is not a state class")

    def persistent_load(self, pid: Any) -> Any:
        raise LegacyStateError("refused: persistent ids")


def is_pickle(raw: bytes) -> bool:
    """True if ``raw`` starts with a pickle protocol header (protocol 2 to 5)."""
    return len(raw) > 2 and raw[0] == 0x80 and raw[1] in PICKLE_PROTOCOLS


def _unpickle(raw: bytes) -> Any:
    try:
        return RestrictedUnpickler(io.BytesIO(raw)).load()
    except LegacyStateError:
        raise
    except Exception as e:  # truncated, wrong opcodes, arguments an array refuses ...
        raise LegacyStateError(f"malformed pickle: {type(e).__name__}: {e}") from None


def load_pickled(raw: bytes, names: Mapping[str, tuple[str, ...]] = {}) -> dict[str, Any]:  # noqa: B006 - read only
    """The data of a pickled :class:`~streams.engine.state.EntityState` (the dict that ``from_data`` reads).
    ``names``: class name -> its dataclass field names in order (a slotted dataclass pickles its
    fields as a list; the state module passes them, this module imports none of the classes)."""
    rec = _unpickle(raw)
    if not isinstance(rec, _Record) or rec.kind != "EntityState":
        raise LegacyStateError(f"not an entity state: {type(rec).__name__}")
    return _entity(rec, names)


# --- records -> data -----------------------------------------------------------------------------
def _fields(rec: Any, kind: str, names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """A dataclass record's fields: pickled as a dict, as (None, slots dict), or as the list of field values."""
    if not isinstance(rec, _Record) or rec.kind != kind:
        raise LegacyStateError(f"expected a {kind}, found {type(rec).__name__}")
    state = rec.state
    if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
        state = {**(state[0] or {}), **(state[1] or {})}
    if isinstance(state, list | tuple):
        if kind not in names:
            raise LegacyStateError(f"{kind}: pickled as a list, field names unknown")
        state = dict(zip(names[kind], state, strict=False))
    if not isinstance(state, dict):
        raise LegacyStateError(f"{kind}: unexpected pickled state {type(state).__name__}")
    return state


def _slots(rec: Any, kind: str) -> list[Any]:
    """A detector record's state: the flat tuple its ``__getstate__`` returned."""
    if isinstance(rec, tuple | list) and kind in ("EntityHistory", "EntityRisk"):
        return [_plain(v) for v in rec]  # stored as its tuple already
    if not isinstance(rec, _Record) or rec.kind != kind or not isinstance(rec.state, tuple | list):
        raise LegacyStateError(f"expected a {kind}, found {type(rec).__name__}")
    if kind == "SensorAnomaly":  # arrays as (typecode, bytes) pairs, or arrays (older)
        return [[v.typecode, v.tobytes()] if isinstance(v, array) else _plain(v) for v in rec.state]
    return [_plain(v) for v in rec.state]


def _le_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, array):
        if sys.byteorder != "little":
            v = array(v.typecode, v)
            v.byteswap()
        out: bytes = v.tobytes()
        return out
    raise LegacyStateError(f"expected bytes or an array, found {type(v).__name__}")


def _plain(v: Any) -> Any:
    """Plain data as it is (tuples as lists); a record or an array where plain data belongs is refused
    (the fields that hold records are converted by the function that knows them)."""
    if v is None or isinstance(v, str | bytes | int | float):
        return v
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    raise LegacyStateError(f"unexpected {type(v).__name__} in a pickled state")


_SPECIAL = frozenset({"sensors", "recent", "recent_at", "readings", "history", "risk", "rates", "tasks", "alerts"})


def _entity(rec: _Record, names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    d = _fields(rec, "EntityState", names)
    d = {k: v if k in _SPECIAL else _plain(v) for k, v in d.items()}
    sensors = {}
    for k, v in (d.get("sensors") or {}).items():
        if isinstance(v, bytes):  # pickled separately (dumps() re-pickled only changed detectors)
            v = _unpickle(v)
        sensors[k] = _slots(v, "SensorAnomaly")
    d["sensors"] = sensors
    for name in ("recent", "recent_at"):
        if name in d:
            d[name] = _le_bytes(d[name])
    d["readings"] = {k: _le_bytes(v) for k, v in (d.get("readings") or {}).items()}
    for name in ("history", "risk"):
        if name in d:
            d[name] = _slots(d[name], "EntityHistory" if name == "history" else "EntityRisk")
    d["rates"] = {k: _slots(v, "RateSurprise") for k, v in (d.get("rates") or {}).items()}
    d["tasks"] = {k: _task(v, names) for k, v in (d.get("tasks") or {}).items()}
    d["alerts"] = {k: _alert(v, names) for k, v in (d.get("alerts") or {}).items()}
    return d


def _task(rec: Any, names: Mapping[str, tuple[str, ...]]) -> list[Any]:
    t = _plain(_fields(rec, "InspectionTask", names))
    return [t.get(n, "" if n in ("source", "ref", "note") else None) for n in names["InspectionTask"]]


def _alert(rec: Any, names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    a = _fields(rec, "OpenAlert", names)
    a = {k: v if k in ("lc", "evidence") else _plain(v) for k, v in a.items()}
    lc = _fields(a.get("lc"), "AlertLifecycle", names)
    lc = {k: v if k == "transitions" else _plain(v) for k, v in lc.items()}
    transitions = (_plain(_fields(x, "Transition", names)) for x in lc.get("transitions") or ())
    lc["transitions"] = [[t.get(n, "") for n in names["Transition"]] for t in transitions]
    a["lc"] = lc
    if a.get("evidence") is not None:
        a["evidence"] = _plain(_fields(a["evidence"], "Draft", names))
    return a
