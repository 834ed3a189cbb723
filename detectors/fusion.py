"""Risk fusion: one entity's signals → a risk score 0–100, a warning level, a credit-risk tier.

Weights, half-lives, level thresholds and tiers are data (``riskwatch/data/fusion.yaml``, see its
header for the formula). :class:`FusionConfig` is the validated, shared configuration;
:class:`EntityRisk` is the small per-entity state (kept in ``EntityState``):

* ``learn_one(t, signal, value, cfg)`` — a signal was observed (``"rule.sensor.boiler_pressure"``,
  ``"anomaly.cold_chain_temp"``, ``"rate.complaint"``, ``"inspection.p"``), value in [0, 1];
* ``score_one(t, cfg, item_id)`` → :class:`RiskScore`: score 0–100 (noisy-OR of the decayed,
  weighted signal values) and the contributions, largest first, with Chinese ``detail``;
* ``update(t, cfg, item_id)`` — score, then move the warning level with enter/exit hysteresis
  and update the credit tier; returns the score and whether the level changed.

Signals decay with their kind's half-life since they were last raised, so the risk of a quiet
entity falls back (and the level steps down once the score is below the level's ``exit``).

>>> from riskwatch.domain.county import load_county
>>> cfg = load_county().fusion
>>> r = EntityRisk()
>>> r.learn_one(0.0, "rule.sensor.boiler_pressure", 1.0, cfg)
>>> s = r.update(0.0, cfg, item_id=8)
>>> s.score, s.level, r.tier(cfg), s.changed
(100.0, 'red', 'D', True)
>>> s.top[0].signal, s.top[0].detail
('rule.sensor.boiler_pressure', '规则触发(rule.sensor.boiler_pressure)强度1.00,贡献100分')
>>> [(h, r.update(h * 3600.0, cfg, 8).level) for h in (12, 24, 30, 48, 96)]   # quiet: it decays
[(12, 'orange'), (24, 'yellow'), (30, 'yellow'), (48, 'blue'), (96, '')]
>>> round(r.score_one(30 * 3600.0, cfg, 8)[0])  # below yellow's enter (45), above its exit (35)
42
>>> r.tier(cfg)               # but the credit tier remembers for months
'D'
>>> import pickle; len(pickle.dumps(r)) < 300
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.events import Contribution
from schemas.vocabulary import LEVELS as VOCABULARY_LEVELS

__all__ = ["FusionConfig", "EntityRisk", "RiskScore", "load_fusion", "LEVELS"]

LEVELS = ("", *(lv.value for lv in VOCABULARY_LEVELS))  # "" = below blue, then the vocabulary's order
_LN2 = math.log(2.0)
_PRUNE = 1e-3


class _Level(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    enter: float = Field(ge=0, le=100)
    exit: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> _Level:
        if self.exit > self.enter:
            raise ValueError(f"exit ({self.exit}) must not be above enter ({self.enter})")
        return self


class _Signal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    half_life_hours: float = Field(gt=0)
    weight: float = Field(1.0, ge=0, le=5)
    mode: Literal["max", "sum"] = "max"
    floor: float = Field(0.0, ge=0, le=1)
    scale: float = Field(1.0, gt=0)


class _Rate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    window_days: float = Field(1.0, gt=0)
    half_life_days: float = Field(60.0, gt=0)
    prior_days: float = Field(30.0, gt=0)
    l_max: float = Field(6.0, gt=0)
    per_kind: dict[str, float] = Field(default_factory=dict)
    default: float = Field(0.01, gt=0)


class _Credit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    half_life_days: float = Field(90.0, gt=0)
    tiers: dict[Literal["A", "B", "C", "D"], float]


class FusionConfig(BaseModel):
    """``riskwatch/data/fusion.yaml``, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    levels: dict[str, _Level]  # exactly blue, yellow, orange and red (checked below)
    alert_min_level: Literal["blue", "yellow", "orange", "red"] = "orange"
    emit_min_delta: float = Field(5.0, ge=0)
    sensor_model_alerts: bool = False
    inspection_min_seen: int = Field(200, ge=0)
    signals: dict[str, _Signal]
    items: dict[int, dict[str, float]] = Field(default_factory=dict)
    credit: _Credit
    rates: dict[str, _Rate] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> FusionConfig:
        if set(self.levels) != {"blue", "yellow", "orange", "red"}:
            raise ValueError("levels needs blue, yellow, orange and red")
        enters = [self.levels[x].enter for x in LEVELS[1:]]
        if enters != sorted(enters):
            raise ValueError(f"level enter thresholds must increase blue → red, got {enters}")
        for item, ws in self.items.items():
            for k in ws:
                if k not in self.signals:
                    raise ValueError(f"items.{item}: unknown signal kind {k!r}; known: {', '.join(self.signals)}")
        return self

    # --- lookups (cheap; used per event) -----------------------------------------------------
    def kind_of(self, signal: str) -> str:
        k = signal.split(".", 1)[0]
        return k if k in self.signals else "rule"

    def weight(self, kind: str, item_id: int | None) -> float:
        w = self.items.get(item_id or 0, {}).get(kind)
        return self.signals[kind].weight if w is None else w

    def label(self, signal: str) -> str:
        best = ""
        for k in self.labels:
            if (signal == k or signal.startswith(k + ".")) and len(k) > len(best):
                best = k
        return self.labels.get(best, signal)

    def level_for(self, score: float, current: str) -> str:
        """The level after ``score`` given the ``current`` one (enter/exit hysteresis)."""
        i = LEVELS.index(current)
        while i > 0 and score < self.levels[LEVELS[i]].exit:
            i -= 1
        while i < 4 and score >= self.levels[LEVELS[i + 1]].enter:
            i += 1
        return LEVELS[i]


@dataclass(slots=True)
class RiskScore:
    score: float
    level: str  # "" below blue
    previous: str
    raw: list[tuple[float, str, float]] = field(default_factory=list)  # (contribution, signal, value), largest first
    cfg: FusionConfig | None = None

    @property
    def changed(self) -> bool:
        return self.level != self.previous

    @property
    def top(self) -> list[Contribution]:
        """The top contributions with a Chinese ``detail`` (built on demand: not per reading)."""
        return _explain(self.raw, self.cfg)


def _explain(raw: list[tuple[float, str, float]], cfg: FusionConfig | None) -> list[Contribution]:
    label = cfg.label if cfg is not None else str
    return [
        Contribution(signal=sig, value=round(v, 4), detail=f"{label(sig)}({sig})强度{v:.2f},贡献{100 * c:.0f}分")
        for c, sig, v in raw
    ]


class EntityRisk:
    """Per-entity fusion state: decayed signal values, current level, decayed peak for credit.

    ``signals``: code → ``[value, t]`` (``value`` already the max / accumulated raw value at ``t``).
    Bounded: signals that decayed below 0.001 are dropped when scored.

    ``discount``: signal kind → a factor in (0, 1] this entity's contributions of that kind are
    multiplied by, learnt from the departments' 误报 labels (:meth:`discount_kinds`): a contribution is
    ``min(1, weight × discount × value)``. An entity whose cold store always runs warm stops raising
    fused-risk alerts on that alone, while every other entity keeps the county's weights.
    """

    __slots__ = ("signals", "level", "peak", "peak_t", "emitted", "discount")

    def __init__(self) -> None:
        self.signals: dict[str, list[float]] = {}
        self.level = ""
        self.peak = 0.0
        self.peak_t = 0.0
        self.emitted = -1.0  # last score written to risk_scores
        self.discount: dict[str, float] = {}

    def __getstate__(self):
        return (self.signals, self.level, self.peak, self.peak_t, self.emitted, self.discount)

    def __setstate__(self, s):
        self.signals, self.level, self.peak, self.peak_t, self.emitted = s[:5]
        self.discount = s[5] if len(s) > 5 else {}

    def discount_kinds(self, kinds: list[str], step: float, floor: float) -> dict[str, float]:
        """A 误报 on this entity's fused-risk alert: each of ``kinds`` counts ``step`` times less, never
        below ``floor``. Returns the new factors.

        >>> r = EntityRisk(); r.discount_kinds(["sensor_anomaly"], 0.7, 0.4)
        {'sensor_anomaly': 0.7}
        >>> r.discount_kinds(["sensor_anomaly"], 0.7, 0.4)["sensor_anomaly"]
        0.49
        >>> r.discount_kinds(["sensor_anomaly"], 0.7, 0.4)["sensor_anomaly"]
        0.4
        """
        for k in kinds:
            self.discount[k] = round(max(floor, self.discount.get(k, 1.0) * step), 4)
        return {k: self.discount[k] for k in kinds}

    def to_data(self) -> list:
        """Data-only state (the entity-state changelog): ``[signals, level, peak, peak_t, emitted]``, and
        ``discount`` as a sixth element once an entity has learnt one (older states have five)."""
        base = [self.signals, self.level, self.peak, self.peak_t, self.emitted]
        return [*base, self.discount] if self.discount else base

    @classmethod
    def from_data(cls, data: list) -> EntityRisk:
        """
        >>> r = EntityRisk(); r.signals["complaint"] = [0.5, 10.0]
        >>> EntityRisk.from_data(r.to_data()).signals
        {'complaint': [0.5, 10.0]}
        """
        if type(data) is not list or len(data) not in (5, 6) or type(data[0]) is not dict or type(data[1]) is not str:
            raise ValueError("fusion state: not [signals, level, peak, peak_t, emitted(, discount)]")
        discount = data[5] if len(data) == 6 else {}
        if type(discount) is not dict or not all(type(v) is float and 0.0 < v <= 1.0 for v in discount.values()):
            raise ValueError("fusion state: discount is not {kind: factor in (0, 1]}")
        for v in data[0].values():
            if type(v) is not list or len(v) != 2 or not _NUM.issuperset((type(v[0]), type(v[1]))):
                raise ValueError("fusion state: a signal is not [value, t]")
        r = cls.__new__(cls)
        r.signals, r.level, r.peak, r.peak_t, r.emitted = data[:5]
        r.discount = discount
        return r

    @staticmethod
    def _decayed(v: float, t0: float, t: float, half_life_h: float) -> float:
        dt = t - t0
        return v * math.exp(-_LN2 * dt / (half_life_h * 3600.0)) if dt > 0 else v

    def learn_one(self, t: float, signal: str, value: float, cfg: FusionConfig) -> None:
        """Signal ``signal`` observed at ``t`` (epoch seconds) with ``value`` in [0, 1]."""
        spec = cfg.signals[cfg.kind_of(signal)]
        value = min(max(float(value), 0.0), 1.0)
        if spec.mode == "sum":
            value = max(0.0, value - spec.floor)
            if value <= 0.0:
                return
        cur = self.signals.get(signal)
        if cur is None:
            self.signals[signal] = [value, t]
            return
        old = self._decayed(cur[0], cur[1], t, spec.half_life_hours)
        cur[0] = old + value if spec.mode == "sum" else max(old, value)
        cur[1] = max(cur[1], t)

    def set_one(self, t: float, signal: str, value: float) -> None:
        """Replace a signal's value (e.g. the inspection-outcome probability, which can also fall)."""
        self.signals[signal] = [min(max(float(value), 0.0), 1.0), t]

    def value(self, signal: str, t: float, cfg: FusionConfig) -> float:
        """Current value in [0, 1] of one signal."""
        cur = self.signals.get(signal)
        if cur is None:
            return 0.0
        spec = cfg.signals[cfg.kind_of(signal)]
        v = self._decayed(cur[0], cur[1], t, spec.half_life_hours)
        return 1.0 - math.exp(-v / spec.scale) if spec.mode == "sum" else v

    def score_one(
        self, t: float, cfg: FusionConfig, item_id: int | None = None, top: int = 3
    ) -> tuple[float, list[Contribution]]:
        """Risk score 0–100 at ``t`` and the ``top`` contributions (no level change)."""
        score, raw = self._score(t, cfg, item_id, top)
        return score, _explain(raw, cfg)

    def _score(
        self, t: float, cfg: FusionConfig, item_id: int | None, top: int = 3
    ) -> tuple[float, list[tuple[float, str, float]]]:
        keep = 1.0
        contribs = []
        for sig in list(self.signals):
            v = self.value(sig, t, cfg)
            if v < _PRUNE:
                del self.signals[sig]
                continue
            kind = cfg.kind_of(sig)
            c = min(1.0, cfg.weight(kind, item_id) * self.discount.get(kind, 1.0) * v)
            keep *= 1.0 - c
            contribs.append((c, sig, v))
        score = round(100.0 * (1.0 - keep), 2)
        contribs.sort(reverse=True)
        return score, contribs[:top]

    def top_kinds(self, t: float, cfg: FusionConfig, item_id: int | None = None) -> list[str]:
        """The signal kinds of the top contributions to the score at ``t`` (what a fused alert stood on)."""
        _, raw = self._score(t, cfg, item_id)
        return sorted({cfg.kind_of(sig) for c, sig, _ in raw if c > 0.0})

    def update(self, t: float, cfg: FusionConfig, item_id: int | None = None) -> RiskScore:
        """Score at ``t``, move the level with hysteresis, update the credit peak."""
        score, raw = self._score(t, cfg, item_id)
        prev = self.level
        self.level = cfg.level_for(score, prev)
        if score >= self._peak(t, cfg):
            self.peak, self.peak_t = score, t
        return RiskScore(score, self.level, prev, raw, cfg)

    def _peak(self, t: float, cfg: FusionConfig) -> float:
        return self._decayed(self.peak, self.peak_t, t, cfg.credit.half_life_days * 24.0)

    def tier(self, cfg: FusionConfig, t: float | None = None) -> str:
        """Credit-risk tier A (lowest risk) … D from the decayed peak risk."""
        p = self.peak if t is None else self._peak(t, cfg)
        best = "A"
        for name, lo in sorted(cfg.credit.tiers.items(), key=lambda kv: kv[1]):
            if p >= lo:
                best = name
        return best


def load_fusion(path: Path | str) -> FusionConfig:
    path = Path(path)
    try:
        return FusionConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as e:
        lines = [f"  {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ValueError(f"invalid fusion file {path}:\n" + "\n".join(lines)) from None


_NUM = frozenset((int, float))  # EntityRisk.from_data: a signal's value and time
