"""What an entity state costs to write and read: ``riskwatch bench-state``.

The states are those of the simulated county (``riskwatch eval simulated``'s simulator and processor,
seed 7), after ``days`` of events. Each is written and read in

* **data** — the changelog's format (``EntityState.dumps`` / ``loads``: b"RW", version, msgpack of
  plain data), cold (every sensor detector packed) and as a commit writes it (one sensor detector
  changed since the last write, the others kept packed);
* **pickle** — the format before it (the old ``__getstate__`` / ``__setstate__``, kept here as the
  baseline: plain ``pickle.loads``, i.e. code named by the bytes runs);
* **migration** — an old pickle read by the restricted unpickler (``streams/engine/legacy_state.py``),
  once per state after the upgrade.

Each state is timed in every format one after the other (a busy neighbour on the shared machine slows
them alike), each time the least of ``rounds`` timings; the mean and the median µs per state over the
states, and the sizes, are printed as JSON. The whole pipeline's cost is measured by
``riskwatch bench`` (ratio to the Faust floor in one run).

>>> r = run(days=0.05, scale=0.05, rounds=1, quiet=True)
>>> r["states"] > 0 and r["data"]["loads_us"] > 0 and r["pickle"]["bytes_median"] > 0
True
"""

from __future__ import annotations

import copyreg
import io
import json
import pickle
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields
from datetime import timedelta
from typing import Any

from streams.engine.codec import from_le_bytes as _from_le_bytes
from streams.engine.codec import le_bytes as _le_bytes
from streams.engine.state import EntityState

REPEAT = 5  # calls per timing
# fields added after the data-only format: an old pickle never held them (nor their classes)
_NEWER = frozenset({"devices", "health", "orders"})
_PERSISTED = tuple(f.name for f in fields(EntityState) if not f.name.startswith("_") and f.name not in _NEWER)


class PickledState(EntityState):
    """The state as the old format pickled it (the baseline only; never on a changelog)."""

    __slots__ = ()

    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in _PERSISTED}
        blobs = self._blobs
        for k, det in self.sensors.items():
            if k in self._dirty or k not in blobs:
                blobs[k] = pickle.dumps(det, protocol=pickle.HIGHEST_PROTOCOL)
        self._dirty.clear()
        state["sensors"] = {k: blobs[k] for k in self.sensors}
        state["recent"], state["recent_at"] = _le_bytes(self.recent), _le_bytes(self.recent_at)
        if self.readings:
            state["readings"] = {k: _le_bytes(a) for k, a in self.readings.items()}
        state["history"] = self.history.__getstate__()
        state["risk"] = self.risk.__getstate__()
        return state

    def __setstate__(self, state: Any) -> None:
        from detectors.fusion import EntityRisk
        from detectors.inspection import EntityHistory

        sensors = state.get("sensors") or {}
        state = {**state, "sensors": {k: pickle.loads(b) for k, b in sensors.items()}}
        self._blobs = dict(sensors)
        self._dirty = set()
        for name in _PERSISTED:
            setattr(self, name, state[name])
        self.recent, self.recent_at = _from_le_bytes(state["recent"]), _from_le_bytes(state["recent_at"])
        if self.readings:
            self.readings = {k: _from_le_bytes(b, "d") for k, b in state["readings"].items()}
        for name, cls in (("history", EntityHistory), ("risk", EntityRisk)):
            obj: Any = cls.__new__(cls)
            obj.__setstate__(state[name])
            setattr(self, name, obj)


def _as(cls: type[Any], st: EntityState) -> Any:
    obj = object.__new__(cls)
    for f in fields(EntityState):
        setattr(obj, f.name, getattr(st, f.name))
    obj._blobs, obj._dirty = {}, set()
    return obj


def _old_pickle(st: EntityState) -> bytes:
    """The bytes the old worker wrote: class ``streams.engine.state.EntityState`` + the old state dict."""
    target, state = _as(EntityState, st), _as(PickledState, st).__getstate__()

    class Old(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if obj is target:
                return (copyreg.__newobj__, (EntityState,), state)  # type: ignore[attr-defined]  # not in typeshed
            return NotImplemented

    buf = io.BytesIO()
    Old(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(target)
    return buf.getvalue()


def simulated_states(days: float = 1.0, scale: float = 1.0, seed: int = 7) -> list[EntityState]:
    """The entity states after ``days`` of the simulated county (as ``riskwatch eval simulated``)."""
    from riskwatch.domain.county import load_county
    from riskwatch.tools.evals.simulated import START
    from riskwatch.tools.simulator import SimConfig, Simulator
    from schemas.events import Event
    from streams.engine.dispatch import Processor
    from streams.engine.ingest import Decoder

    cfg = SimConfig(seed=seed, days=days, scale=scale, bad_rate=0.0, start=START, now=START + timedelta(days=days))
    county = load_county()
    dec, now = Decoder(county.catalog), [START.timestamp()]
    proc = Processor.from_county(county, clock=lambda: now[0])
    states: dict[str, EntityState] = {}
    offsets: Counter[str] = Counter()
    for topic, key, value in Simulator(cfg).events():
        off = offsets[topic]
        offsets[topic] += 1
        ev = dec.decode(topic, 0, off, key, value)
        if not isinstance(ev, Event):  # a dead letter (none: bad_rate=0) or a gateway batch (none here)
            continue
        now[0] = ev.occurred_at.timestamp()
        proc.process(ev, states.setdefault(ev.entity_id, EntityState()), (topic, 0, off))
    return list(states.values())


def _touch_one(st: Any) -> Any:
    if st.sensors:
        st._dirty.add(next(iter(st.sensors)))
    return st


def run(days: float = 1.0, scale: float = 1.0, rounds: int = 5, quiet: bool = False) -> dict[str, Any]:
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    say(f"simulating {days:g} day(s) of the county at scale {scale:g} ...")
    states = simulated_states(days, scale)
    new = [_as(EntityState, s) for s in states]
    old = [_as(PickledState, s) for s in states]
    new_raw = [s.dumps() for s in new]
    old_raw = [pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL) for s in old]
    legacy = [_old_pickle(s) for s in states]

    def older(d: dict[str, Any]) -> dict[str, Any]:  # what an old pickle can hold
        return {k: v for k, v in d.items() if k not in _NEWER}

    assert all(older(EntityState.loads(r).to_data()) == older(s.to_data()) for r, s in zip(legacy, new, strict=True))

    def cold_new(s: EntityState) -> bytes:
        s._blobs.clear()
        return s.dumps()

    def cold_old(s: Any) -> bytes:
        s._blobs.clear()
        return pickle.dumps(s, protocol=pickle.HIGHEST_PROTOCOL)

    def commit_new(s: EntityState) -> bytes:
        return _touch_one(s).dumps()

    def commit_old(s: Any) -> bytes:
        return pickle.dumps(_touch_one(s), protocol=pickle.HIGHEST_PROTOCOL)

    cases: dict[tuple[str, str], tuple[Callable[[Any], Any], list[Any]]] = {
        ("data", "dumps_cold_us"): (cold_new, new),
        ("data", "dumps_us"): (commit_new, new),
        ("data", "loads_us"): (EntityState.loads, new_raw),
        ("pickle", "dumps_cold_us"): (cold_old, old),
        ("pickle", "dumps_us"): (commit_old, old),
        ("pickle", "loads_us"): (pickle.loads, old_raw),
        ("migration", "loads_us"): (EntityState.loads, legacy),
    }
    # per state, the cases one after the other (a noisy neighbour hits them alike), each the least of
    # `rounds` timings of REPEAT calls; then the mean and the median over the states
    per: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    clock = time.perf_counter
    for i in range(len(states)):
        for k, (fn, items) in cases.items():
            x, best = items[i], float("inf")
            for _ in range(rounds):
                t0 = clock()
                for _ in range(REPEAT):
                    fn(x)
                best = min(best, clock() - t0)
            per[k].append(best / REPEAT * 1e6)
        if (i + 1) % 250 == 0:
            say(f"  {i + 1}/{len(states)} states")
    result: dict[str, Any] = {"states": len(states), "rounds": rounds, "repeat": REPEAT, "days": days, "scale": scale}
    for (fmt, what), xs in per.items():
        result.setdefault(fmt, {})[what] = round(statistics.fmean(xs), 2)
        result[fmt][what.replace("_us", "_median_us")] = round(statistics.median(xs), 2)
    for fmt, raws in (("data", new_raw), ("pickle", old_raw), ("migration", legacy)):
        sizes = [len(b) for b in raws]
        result[fmt]["bytes_median"] = statistics.median(sizes)
        result[fmt]["bytes_max"] = max(sizes)
    d, p = result["data"], result["pickle"]
    result["ratio_data_over_pickle"] = {
        k: round(d[k] / p[k], 2) for k in ("dumps_us", "dumps_cold_us", "loads_us", "bytes_median") if p[k]
    }
    sensors = [len(b) for s in new for b in s._blobs.values()]
    result["data"]["sensor_bytes_median"] = statistics.median(sensors) if sensors else 0
    if not quiet:
        print(json.dumps(result, indent=2))
    return result
