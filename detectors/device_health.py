"""Device health checks: is a sensor offline, stuck, out of its physical range, jumping impossibly,
or is its source's clock skewed? Small pure checks on event time; the engine keeps the per-device
record they read (``streams/engine/health.py``) and the thresholds are data (``riskwatch/data/devices.yaml``).

Why: risk fusion decays with silence, so without these a dead sensor made its entity look *safer*
the longer it was dead. Every check is on event time (``occurred_at``) — never the wall clock —
so a late pipeline (a broker restart, a worker catching up) is never taken for a silent device.

Checks (``interval`` = expected reporting interval, registered or learnt by :class:`IntervalEstimate`):

- **Offline**: ``progress − last_reading > k × interval``, ``progress`` = the event time the
  device's partition has reached (:func:`offline`).
- **Stuck**: the same value (``|v − v_prev| ≤ eps``) for longer than ``max_stuck_s`` (:class:`StuckCheck`).
- **Range**: ``v ∉ [lo, hi]``, the sensor's physical range (:func:`out_of_range`).
- **Step**: ``|v − v_prev| > max_step`` between consecutive readings (:func:`impossible_step`).
- **Skew**: ``|occurred_at − record timestamp| > bound`` (:func:`skewed`), counted per source.

>>> est = IntervalEstimate()
>>> for t in (0, 60, 120, 181, 240, 300):
...     est.add(t)
>>> est.interval(min_readings=5)
60.0
>>> offline(last_t=300, progress=300 + 3 * 60 + 1, interval=60, k=3.0)
True
>>> s = StuckCheck()
>>> [s.update(t, 4.0, eps=1e-9) for t in (0.0, 600.0, 1200.0)]
[0.0, 600.0, 1200.0]
>>> out_of_range(120.0, -60, 60), impossible_step(4.0, 30.0, 15.0), skewed(1000.0, 1400.0, 300.0)
(True, True, True)
>>> cfg = load_health(); cfg.channel("cold_chain_temp").safety_critical, cfg.level("offline", True)
(True, 'orange')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from statistics import median
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "riskwatch" / "data" / "devices.yaml"


# --- the checks ----------------------------------------------------------------------------------
def offline(last_t: float, progress: float, interval: float, k: float) -> bool:
    """No reading for more than ``k × interval`` seconds of the partition's event-time progress."""
    return interval > 0.0 and progress - last_t > k * interval


def out_of_range(v: float, lo: float, hi: float) -> bool:
    """A value the sensor cannot physically produce (a broken probe, a wrong unit)."""
    return v < lo or v > hi


def impossible_step(prev: float, v: float, max_step: float) -> bool:
    """A jump between consecutive readings larger than the process can make."""
    return abs(v - prev) > max_step


def skewed(occurred_at: float, record_ts: float, bound_s: float) -> bool:
    """The source's clock disagrees with the broker's timestamp by more than ``bound_s``."""
    return abs(occurred_at - record_ts) > bound_s


@dataclass(slots=True)
class IntervalEstimate:
    """A device's reporting interval learnt from its readings: the median of its last gaps
    (robust to one gateway outage or a burst of re-sent readings)."""

    last_t: float = 0.0
    n: int = 0
    gaps: list[float] = field(default_factory=list)

    def add(self, t: float, window: int = 9) -> None:
        if self.n and t > self.last_t:
            self.gaps.append(t - self.last_t)
            if len(self.gaps) > window:
                del self.gaps[0]
        if t > self.last_t or not self.n:
            self.last_t = t
        self.n += 1

    def interval(self, min_readings: int = 5) -> float:
        """The learnt interval (seconds), 0.0 until ``min_readings`` readings came."""
        return float(median(self.gaps)) if self.n >= min_readings and self.gaps else 0.0


@dataclass(slots=True)
class StuckCheck:
    """How long a device has repeated the same value: ``update`` returns the seconds since it last changed."""

    since: float = 0.0
    value: float = float("nan")

    def update(self, t: float, v: float, eps: float) -> float:
        if not abs(v - self.value) <= eps:  # changed (or the first reading: NaN compares false)
            self.since, self.value = t, v
        return t - self.since


def _num(v: object) -> float:
    if type(v) is not float and type(v) is not int:
        raise ValueError(f"device health: expected a number, found {type(v).__name__}")
    return float(v)


def _typed(v: object, typ: type) -> Any:
    if type(v) is not typ:
        raise ValueError(f"device health: expected {typ.__name__}, found {type(v).__name__}")
    return v


class DeviceHealth:
    """What the engine remembers of one device channel's health (``EntityState.health``): a few numbers.

    >>> rec = DeviceHealth("cold_chain_temp", "iot-gw-01"); rec.est.add(60.0)
    >>> DeviceHealth.from_data(rec.to_data()).to_data() == rec.to_data()
    True
    """

    __slots__ = (
        "channel",
        "source",
        "est",
        "stuck",
        "last_v",
        "faults",
        "silent_n",
        "seen_n",
        "seen_t",
        "heard_t",
        "lagging",
    )

    def __init__(self, channel: str, source: str) -> None:
        self.channel = channel
        self.source = source  # who sends its readings (the owner when the registry has none)
        self.est = IntervalEstimate()  # last reading time, count, recent gaps
        self.stuck = StuckCheck()
        self.last_v = math.nan
        self.faults: list[str] = []  # open fault kinds: offline, stuck, range, step
        self.silent_n = 0  # steps of silence already learnt into the risk
        self.seen_n = 0  # readings counted at the last offline scan
        self.seen_t = 0.0  # the last reading's time at the last offline scan
        self.lagging = False  # the last scan that found readings found them more than an interval behind
        self.heard_t = 0.0  # progress of the last scan that found readings stamped well behind it (a clock behind)

    @property
    def alive_t(self) -> float:
        """Since when the device counts as heard from: its last reading's time, or the partition progress at
        which readings stamped earlier than that progress arrived (a gateway clock behind is not silence)."""
        return max(self.est.last_t, self.heard_t)

    @property
    def last_t(self) -> float:
        return self.est.last_t

    def to_data(self) -> list[Any]:
        e, s = self.est, self.stuck
        return [self.channel, self.source, e.last_t, e.n, e.gaps, s.since, s.value, self.last_v, self.faults,
                self.silent_n, self.seen_n, self.seen_t, self.heard_t, self.lagging]  # fmt: skip

    @classmethod
    def from_data(cls, d: Any) -> DeviceHealth:
        v = _typed(d, list)
        rec = cls(_typed(v[0], str), _typed(v[1], str))
        rec.est = IntervalEstimate(_num(v[2]), int(v[3]), [_num(g) for g in _typed(v[4], list)])
        rec.stuck = StuckCheck(_num(v[5]), _num(v[6]))
        rec.last_v = _num(v[7])
        rec.faults = [_typed(f, str) for f in _typed(v[8], list)]
        rec.silent_n = int(v[9])
        if len(v) > 13:  # states written before the clock-skew fields have none
            rec.seen_n, rec.seen_t, rec.heard_t = int(v[10]), _num(v[11]), _num(v[12])
            rec.lagging = bool(v[13])
        return rec


def health_from_data(d: Any) -> dict[str, DeviceHealth]:
    return {_typed(k, str): DeviceHealth.from_data(v) for k, v in _typed(d, dict).items()}


def health_to_data(h: dict[str, DeviceHealth]) -> dict[str, Any]:
    return {k: rec.to_data() for k, rec in h.items()}


# --- the thresholds, as data ---------------------------------------------------------------------
class ChannelHealth(BaseModel):
    """One channel's health thresholds (``devices.yaml`` ``channels``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    offline_k: float = Field(3.0, gt=1.0)
    max_stuck_min: float | None = Field(360.0, gt=0)
    range: tuple[float, float] = (-1e6, 1e6)
    max_step: float = Field(1e6, gt=0)
    safety_critical: bool = False


class SourceHealth(BaseModel):
    """Per-source bounds (clock skew, silence, garbage): metrics and Prometheus rules, not entity alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    clock_skew_s: float = Field(300.0, gt=0)
    silent_minutes: float = Field(30.0, gt=0)
    garbage_window_minutes: float = Field(15.0, gt=0)
    garbage_ratio: float = Field(0.2, gt=0, le=1)


class SilenceRisk(BaseModel):
    """The fused-risk value of a safety-critical channel's silence, ``h`` hours past the offline
    threshold: ``min(cap, base + per_hour × h)`` (re-learnt every ``step_minutes``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: float = Field(0.3, ge=0, le=1)
    per_hour: float = Field(0.05, ge=0, le=1)
    cap: float = Field(0.7, ge=0, le=1)
    step_minutes: float = Field(10.0, gt=0)

    def value(self, hours: float) -> float:
        return min(self.cap, self.base + self.per_hour * max(0.0, hours))


class HealthConfig(BaseModel):
    """``riskwatch/data/devices.yaml``, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min_readings: int = Field(5, ge=2)
    min_interval_s: float = Field(60.0, ge=0)
    gap_window: int = Field(9, ge=1)
    stuck_eps: float = Field(1e-9, ge=0)
    silence: SilenceRisk = SilenceRisk()
    levels: dict[str, str]
    sources: SourceHealth = SourceHealth()
    defaults: ChannelHealth = ChannelHealth()
    channels: dict[str, ChannelHealth] = Field(default_factory=dict)

    def learnt(self, est: IntervalEstimate) -> float:
        """A learnt interval, never below ``min_interval_s`` (a burst of re-sent readings is not a rate)."""
        iv = est.interval(self.min_readings)
        return max(iv, self.min_interval_s) if iv > 0.0 else 0.0

    def channel(self, name: str) -> ChannelHealth:
        return self.channels.get(name, self.defaults)

    def level(self, check: str, safety_critical: bool = False) -> str:
        if safety_critical and f"{check}_safety_critical" in self.levels:
            return self.levels[f"{check}_safety_critical"]
        return self.levels.get(check, "blue")


@cache
def load_health(path: Path | str = DEFAULT_PATH) -> HealthConfig:
    """The device-health thresholds (read once per path)."""
    return HealthConfig.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
