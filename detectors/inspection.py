"""Online inspection-outcome model: P(the NEXT inspection of an entity finds a serious/critical violation).

Two pieces, split so that they can live in different places of the streaming pipeline:

* :class:`EntityHistory` — small, picklable per-entity state (one per licence / entity id, kept in a
  Faust table).  It is updated by events (``on_licence``, ``on_inspection``, ``on_complaint``,
  ``on_signal``) and turns the history into a flat feature dict with :meth:`EntityHistory.features`.
  Its state is bounded (a fixed number of numbers, ≤ 6 signal kinds, ≤ 6 short categorical
  attributes): ≈ 300 bytes pickled on average, ≤ 500 bytes on the Chicago replay.
* :class:`InspectionOutcomeModel` — the shared online classifier (River).  ``predict_proba_one(x)``
  before the visit, ``learn_one(x, outcome)`` once the inspection result arrives.  String-valued
  features are categorical: they are target-encoded online (decaying violation rate per value, e.g.
  per inspector team, area code, chain name) and, for a few low-cardinality groups, one-hot encoded
  over a bounded vocabulary; numeric features are standardised online; then a River logistic
  regression.

Times are days as floats (e.g. days since the Unix epoch); :func:`to_days` converts dates/datetimes.

Context features that are not about the entity itself (the inspector team assigned, the recent
weather, the density of complaints in the neighbourhood from a spatial index) are supplied by the
caller in ``context`` to :meth:`EntityHistory.features`; ``EntityHistory`` just merges them in.
"""

from __future__ import annotations

import datetime as _dt
import math
import operator
from collections.abc import Mapping
from typing import SupportsFloat, cast

from river import linear_model, optim, preprocessing

__all__ = [
    "EntityHistory",
    "InspectionOutcomeModel",
    "ComplaintGrid",
    "to_days",
    "LICENCE_FLAGS",
]

_EPOCH = _dt.date(1970, 1, 1)

#: Licence-type flags worth remembering (the city's model used liquor/tobacco related flags).
LICENCE_FLAGS: tuple[str, ...] = (
    "tavern",
    "caterers_liquor_license",
    "consumption_on_premises_incidental_activity",
    "tobacco",
    "package_goods",
    "outdoor_patio",
    "public_place_of_amusement",
    "limited_business_license",
    "childrens_services_facility_license",
    "regulated_business_license",
    "filling_station",
    "mobile_food_license",
)


def to_days(t: float | int | _dt.date | _dt.datetime) -> float:
    """Days since 1970-01-01 as a float (numbers are passed through unchanged).

    >>> to_days(_dt.date(1970, 1, 11))
    10.0
    >>> to_days(12.5)
    12.5
    """
    if isinstance(t, _dt.datetime):
        if t.tzinfo is not None:
            t = t.astimezone(_dt.UTC).replace(tzinfo=None)
        return (t - _dt.datetime(1970, 1, 1)).total_seconds() / 86400.0
    if isinstance(t, _dt.date):
        return float((t - _EPOCH).days)
    return float(t)


def _decay(value: float, last: float, now: float, tau: float) -> float:
    if value == 0.0:
        return 0.0
    dt = now - last
    return value * math.exp(-dt / tau) if dt > 0 else value


def normalise_kind(kind: str | None) -> str:
    """Map a free-text facility type / product kind to a small vocabulary (bounded one-hot)."""
    if not kind:
        return "unknown"
    k = str(kind).strip().lower()
    for key, name in (
        ("restaurant", "restaurant"),
        ("school", "school"),
        ("grocery", "grocery"),
        ("bakery", "bakery"),
        ("daycare", "daycare"),
        ("children", "daycare"),
        ("cater", "catering"),
        ("long term", "care"),
        ("hospital", "care"),
        ("golden diner", "golden_diner"),
        ("liquor", "liquor"),
        ("tavern", "liquor"),
        ("mobile", "mobile"),
    ):
        if key in k:
            return name
    return "other"


class EntityHistory:
    """Per-entity history state (picklable, bounded) producing features for the next inspection.

    Events:

    * ``on_licence(t, kind=..., risk=..., licence_start=..., flags=...)`` — entity attributes
      (facility/product kind, risk category, licence start date, licence-type flags).
    * ``on_inspection(t, critical, serious, minor=0, failed=None)`` — an inspection result.
    * ``on_complaint(t, n=1)`` — a complaint about / at the entity.
    * ``on_signal(t, kind, n=1)`` — generic signal counts (sensor / video anomalies, ...);
      at most ``MAX_SIGNAL_KINDS`` kinds are tracked (further kinds are folded into ``"other"``).

    Counters of complaints and signals decay exponentially with time constants of 30 and 90 days.

    >>> h = EntityHistory()
    >>> h.on_licence(0.0, kind="Restaurant", risk="Risk 1 (High)", licence_start=-3650.0, flags=("tavern",))
    >>> h.on_inspection(10.0, critical=1, serious=2, minor=3, failed=True)
    >>> h.on_complaint(40.0)
    >>> h.on_signal(41.0, "temperature", 2)
    >>> f = h.features(50.0, {"inspector": "blue"})
    >>> f["past_critical"], f["past_serious"], f["first_record"], round(f["days_since_last"], 3)
    (1.0, 1.0, 0.0, 0.11)
    >>> f["kind"], f["risk"], f["flag_tavern"], f["inspector"]
    ('restaurant', '1', 1.0, 'blue')
    >>> round(f["complaints_30d"], 2), round(f["signal_temperature_30d"], 2)
    (0.72, 0.91)
    >>> import pickle
    >>> len(pickle.dumps(h)) < 1024
    True
    """

    MAX_SIGNAL_KINDS = 6
    MAX_ATTRS = 6
    TAU_SHORT = 30.0
    TAU_LONG = 90.0
    EW_ALPHA = 0.4  # weight of the newest inspection in the EW averages of outcomes

    __slots__ = (
        "kind",
        "risk",
        "licence_start",
        "flags",
        "attrs",
        "n_insp",
        "n_crit",
        "n_serious",
        "last_t",
        "last_crit",
        "last_serious",
        "last_minor",
        "last_failed",
        "ew_crit",
        "ew_serious",
        "ew_minor",
        "c_t",
        "c_short",
        "c_long",
        "signals",
    )

    def __init__(self) -> None:
        self.kind: str = "unknown"
        self.risk: int = 0  # 1 high .. 3 low, 0 unknown
        self.licence_start: float | None = None
        self.flags: tuple[str, ...] = ()
        # small categorical attributes (area code, ward, chain/brand name, ...): name -> str
        self.attrs: dict[str, str] = {}
        self.n_insp = 0
        self.n_crit = 0
        self.n_serious = 0
        self.last_t: float | None = None
        self.last_crit = 0
        self.last_serious = 0
        self.last_minor = 0
        self.last_failed = 0
        self.ew_crit = 0.0
        self.ew_serious = 0.0
        self.ew_minor = 0.0
        self.c_t = 0.0
        self.c_short = 0.0
        self.c_long = 0.0
        # kind -> [last_t, short, long]
        self.signals: dict[str, list[float]] = {}

    # -- pickling: compact tuple, no per-instance __dict__ ------------------------------------
    def __getstate__(self):
        return _HISTORY_SLOTS(self)

    def __setstate__(self, state):
        for s, v in zip(self.__slots__, state, strict=True):
            setattr(self, s, v)

    def to_data(self) -> list:
        """Data-only state (the entity-state changelog): the slots as one flat list."""
        v = list(_HISTORY_SLOTS(self))
        v[3] = list(v[3])  # flags
        return v

    @classmethod
    def from_data(cls, data: list) -> EntityHistory:
        """
        >>> h = EntityHistory(); h.on_licence(0.0, kind="Restaurant", flags=("tavern",))
        >>> EntityHistory.from_data(h.to_data()).flags
        ('tavern',)
        """
        if type(data) is not list or len(data) != len(cls.__slots__):
            raise ValueError("inspection history: not a list of its slots")
        kind, _, _, flags, attrs = data[:5]
        signals = data[-1]
        if type(kind) is not str or type(flags) is not list or type(attrs) is not dict or type(signals) is not dict:
            raise ValueError("inspection history: wrong types")
        for v in signals.values():
            if type(v) is not list or len(v) != 3:
                raise ValueError("inspection history: a signal is not [last_t, short, long]")
        h = cls.__new__(cls)
        for s, v in zip(cls.__slots__, data, strict=True):
            setattr(h, s, v)
        h.flags = tuple(flags)
        return h

    # -- events -------------------------------------------------------------------------------
    def on_licence(
        self,
        t: float,
        kind: str | None = None,
        risk: str | int | None = None,
        licence_start: float | _dt.date | None = None,
        flags: tuple[str, ...] | list[str] | Mapping[str, object] = (),
        attrs: Mapping[str, object] | None = None,
    ) -> None:
        """Licence / registration facts (the latest known facts replace older ones).

        ``attrs`` are extra categorical attributes (e.g. ``{"zip": "60609", "name": "subway"}``);
        at most ``MAX_ATTRS`` are kept, values truncated to 32 characters.  They become string
        valued features, which :class:`InspectionOutcomeModel` target-encodes online.
        """
        if kind is not None:
            self.kind = normalise_kind(kind)
        if risk is not None:
            if isinstance(risk, str):
                digits = [c for c in risk if c.isdigit()]
                self.risk = int(digits[0]) if digits else 0
            else:
                self.risk = int(risk)
        if licence_start is not None:
            self.licence_start = to_days(licence_start)
        if isinstance(flags, Mapping):
            flags = [k for k, v in flags.items() if v]
        if flags:
            self.flags = tuple(sorted(f for f in flags if f in LICENCE_FLAGS))
        if attrs:
            for k, v in attrs.items():
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    continue
                k = str(k)[:16]
                if k in self.attrs or len(self.attrs) < self.MAX_ATTRS:
                    self.attrs[k] = str(v)[:32]

    def on_inspection(
        self, t: float, critical: int, serious: int = 0, minor: int = 0, failed: bool | None = None
    ) -> None:
        """An inspection result (violation counts) arrived."""
        t = to_days(t)
        crit = 1.0 if critical > 0 else 0.0
        ser = 1.0 if serious > 0 else 0.0
        a = self.EW_ALPHA
        if self.n_insp == 0:
            self.ew_crit, self.ew_serious, self.ew_minor = crit, ser, float(minor)
        else:
            self.ew_crit += a * (crit - self.ew_crit)
            self.ew_serious += a * (ser - self.ew_serious)
            self.ew_minor += a * (minor - self.ew_minor)
        self.n_insp += 1
        self.n_crit += int(crit)
        self.n_serious += int(ser)
        self.last_t = t
        self.last_crit = int(critical)
        self.last_serious = int(serious)
        self.last_minor = int(minor)
        self.last_failed = int(bool(failed)) if failed is not None else int(critical > 0)

    def on_complaint(self, t: float, n: float = 1.0) -> None:
        """A complaint at / about the entity."""
        t = to_days(t)
        self.c_short = _decay(self.c_short, self.c_t, t, self.TAU_SHORT) + n
        self.c_long = _decay(self.c_long, self.c_t, t, self.TAU_LONG) + n
        self.c_t = max(self.c_t, t)

    def on_signal(self, t: float, kind: str, n: float = 1.0) -> None:
        """Generic anomaly counts (sensor, video, ...) attributed to the entity."""
        t = to_days(t)
        kind = str(kind)[:16]
        if kind not in self.signals and len(self.signals) >= self.MAX_SIGNAL_KINDS - 1:
            kind = "other"  # the first MAX_SIGNAL_KINDS - 1 kinds are kept, the rest pooled
        s = self.signals.get(kind)
        if s is None:
            self.signals[kind] = [t, float(n), float(n)]
            return
        s[1] = _decay(s[1], s[0], t, self.TAU_SHORT) + n
        s[2] = _decay(s[2], s[0], t, self.TAU_LONG) + n
        s[0] = max(s[0], t)

    # -- features -----------------------------------------------------------------------------
    def features(self, t: float, context: Mapping[str, object] | None = None) -> dict[str, object]:
        """Features for an inspection at time ``t`` (days), merged with caller ``context``."""
        t = to_days(t)
        first = self.n_insp == 0
        f: dict[str, object] = {
            "first_record": 1.0 if first else 0.0,
            "past_critical": 1.0 if self.last_crit > 0 else 0.0,
            "past_serious": 1.0 if self.last_serious > 0 else 0.0,
            "past_failed": float(self.last_failed),
            "last_critical_n": math.log1p(self.last_crit),
            "last_serious_n": math.log1p(self.last_serious),
            "last_minor_n": math.log1p(self.last_minor),
            "ew_critical": self.ew_crit,
            "ew_serious": self.ew_serious,
            "ew_minor": math.log1p(self.ew_minor),
            # shrunk historical rates (prior 1 inspection at rate 0.15)
            "rate_critical": (self.n_crit + 0.15) / (self.n_insp + 1.0),
            "rate_serious": (self.n_serious + 0.3) / (self.n_insp + 1.0),
            "n_inspections": math.log1p(self.n_insp),
            # years since the last inspection; 2 years if never inspected (as the city's model)
            "days_since_last": min((t - self.last_t) / 365.0, 5.0) if self.last_t is not None else 2.0,
            "complaints_30d": _decay(self.c_short, self.c_t, t, self.TAU_SHORT),
            "complaints_90d": _decay(self.c_long, self.c_t, t, self.TAU_LONG),
            "kind": self.kind,
            "risk": str(self.risk),
        }
        if self.licence_start is not None:
            f["licence_age"] = min(max((t - self.licence_start) / 365.0, 0.0), 40.0)
            f["licence_known"] = 1.0
        else:
            f["licence_age"] = 0.0
            f["licence_known"] = 0.0
        for flag in self.flags:
            f[f"flag_{flag}"] = 1.0
        for k, v in self.attrs.items():
            f[f"attr_{k}"] = v
        for kind, (st, short, long_) in self.signals.items():
            f[f"signal_{kind}_30d"] = math.log1p(_decay(short, st, t, self.TAU_SHORT))
            f[f"signal_{kind}_90d"] = math.log1p(_decay(long_, st, t, self.TAU_LONG))
        if context:
            f.update(context)
        return f


_HISTORY_SLOTS = operator.attrgetter(*EntityHistory.__slots__)  # __getstate__: one flat tuple


class ComplaintGrid:
    """Cheap spatial index of recent complaints: cells of ~``cell_km`` km keyed by rounded lat/lon.

    ``count(lat, lon, t, days)`` counts complaints in the 3×3 block of cells around the point
    with a creation time in ``(t - days, t]``.  Entries older than ``horizon_days`` are pruned.

    >>> g = ComplaintGrid()
    >>> g.add(41.88, -87.63, 100.0); g.add(41.881, -87.631, 120.0); g.add(42.5, -87.0, 120.0)
    >>> g.count(41.88, -87.63, 125.0, 30.0), g.count(41.88, -87.63, 125.0, 10.0)
    (2, 1)
    """

    def __init__(self, cell_km: float = 0.5, horizon_days: float = 90.0) -> None:
        self.dlat = cell_km / 111.0
        self.dlon = cell_km / 83.0  # ~ km per degree of longitude at 42°N
        self.horizon = horizon_days
        self.cells: dict[tuple[int, int], list[float]] = {}
        self._n_added = 0

    def _key(self, lat: float, lon: float) -> tuple[int, int]:
        return (int(math.floor(lat / self.dlat)), int(math.floor(lon / self.dlon)))

    def add(self, lat: float, lon: float, t: float) -> None:
        if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
            return
        self.cells.setdefault(self._key(lat, lon), []).append(t)
        self._n_added += 1
        if self._n_added % 20000 == 0:
            self.prune(t)

    def prune(self, now: float) -> None:
        cutoff = now - self.horizon
        for k in list(self.cells):
            v = [x for x in self.cells[k] if x > cutoff]
            if v:
                self.cells[k] = v
            else:
                del self.cells[k]

    def count(self, lat: float, lon: float, t: float, days: float, radius_cells: int = 1) -> int:
        if lat is None or lon is None or math.isnan(lat) or math.isnan(lon):
            return 0
        i, j = self._key(lat, lon)
        lo = t - days
        n = 0
        for di in range(-radius_cells, radius_cells + 1):
            for dj in range(-radius_cells, radius_cells + 1):
                v = self.cells.get((i + di, j + dj))
                if v:
                    n += sum(1 for x in v if lo < x <= t)
        return n


class InspectionOutcomeModel:
    """Shared online classifier: P(critical/serious violation at the next inspection).

    ``predict_proba_one(x)`` scores an entity feature dict (from :meth:`EntityHistory.features`),
    ``learn_one(x, outcome)`` learns once the result of that inspection is known.  Use the same
    ``x`` for both (the features as they were *before* the inspection).

    Preprocessing of ``x``:

    * string values are categorical (``{"inspector": "blue", "attr_zip": "60609"}``; a key
      ``"k=v"`` with a truthy number is read as ``{"k": "v"}`` too).  Every categorical is
      target-encoded online into ``te_<key>``: a smoothed, slowly decaying rate of violations per
      value (``te_prior_n`` pseudo-observations at the running global rate; counts decay by
      ``te_decay`` per update of the value, so a team's changing strictness is tracked).  Values
      of the groups in ``onehot`` are also one-hot encoded over a bounded vocabulary
      (``max_onehot_per_group``), so absent categories are explicit zeros.
    * numeric values are standardised online (River ``StandardScaler``).

    The classifier is a River logistic regression by default (``model=`` takes any River binary
    classifier).  State is bounded: the target-encoding table keeps at most ``max_te_keys`` values.

    >>> m = InspectionOutcomeModel()
    >>> import random
    >>> rng = random.Random(0)
    >>> for _ in range(400):
    ...     bad = rng.random() < 0.5
    ...     x = {"past_critical": float(bad), "noise": rng.random(), "inspector": rng.choice("ab")}
    ...     m.learn_one(x, bad and rng.random() < 0.8)
    >>> p_bad = m.predict_proba_one({"past_critical": 1.0, "noise": 0.5, "inspector": "a"})
    >>> p_good = m.predict_proba_one({"past_critical": 0.0, "noise": 0.5, "inspector": "a"})
    >>> 0.0 <= p_good < p_bad <= 1.0
    True
    """

    def __init__(
        self,
        lr: float = 0.003,
        l2: float = 1e-4,
        onehot: tuple[str, ...] = ("inspector", "kind", "risk"),
        te_prior_n: float = 10.0,
        te_decay: float = 0.97,
        max_onehot_per_group: int = 16,
        max_te_keys: int = 200_000,
        model=None,
    ) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.model = model if model is not None else linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
        self.onehot_groups = tuple(onehot)
        self.te_prior_n = te_prior_n
        self.te_decay = te_decay
        self.max_onehot_per_group = max_onehot_per_group
        self.max_te_keys = max_te_keys
        self.te: dict[tuple[str, str], list[float]] = {}  # (group, value) -> [sum_y, n]
        self.vocab: dict[str, dict[str, None]] = {}  # one-hot group -> values
        self.n_seen = 0
        self.n_pos = 0
        self.base_rate = 0.14  # running (EW) global rate, the target-encoding prior

    @staticmethod
    def _split(x: Mapping[str, object]) -> tuple[dict[str, float], dict[str, str]]:
        num: dict[str, float] = {}
        cat: dict[str, str] = {}
        for k, v in x.items():
            if isinstance(v, str):
                cat[k] = v
            elif "=" in k:
                if v:
                    g, val = k.split("=", 1)
                    cat[g] = val
            elif v is not None:
                v = float(cast("SupportsFloat", v))  # numbers of any kind (numpy's too)
                if not math.isnan(v):
                    num[k] = v
        return num, cat

    def _features(self, num: dict[str, float], cat: dict[str, str]) -> dict[str, float]:
        prior, m = self.base_rate, self.te_prior_n
        for g, v in cat.items():
            st = self.te.get((g, v))
            num[f"te_{g}"] = (st[0] + m * prior) / (st[1] + m) if st else prior
        z = self.scaler.transform_one(num) if self.n_seen else dict.fromkeys(num, 0.0)
        for g, vals in self.vocab.items():
            cv = cat.get(g)
            for v in vals:
                z[f"{g}={v}"] = 1.0 if cv == v else 0.0
        return z

    def predict_proba_one(self, x: Mapping[str, object]) -> float:
        """Probability that the inspection described by ``x`` finds a critical/serious violation."""
        if self.n_seen == 0:
            return self.base_rate
        num, cat = self._split(x)
        p = self.model.predict_proba_one(self._features(num, cat)).get(True, 0.0)
        return min(max(float(p), 0.0), 1.0)

    score_one = predict_proba_one

    def learn_one(self, x: Mapping[str, object], outcome: bool) -> None:
        """Learn the outcome of the inspection described by ``x`` (features from before the visit)."""
        y = 1.0 if outcome else 0.0
        num, cat = self._split(x)
        for g, v in cat.items():
            if g in self.onehot_groups:
                vals = self.vocab.setdefault(g, {})
                if v not in vals and len(vals) < self.max_onehot_per_group:
                    vals[v] = None
        self._features(num, cat)  # adds the te_* encodings to num
        self.scaler.learn_one(num)
        z = self._features(*self._split(x))
        self.model.learn_one(z, bool(outcome))
        # target encodings are updated after the model saw the pre-outcome encodings
        d = self.te_decay
        for g, v in cat.items():
            st = self.te.get((g, v))
            if st is None:
                if len(self.te) >= self.max_te_keys:
                    continue
                st = self.te[(g, v)] = [0.0, 0.0]
            st[0] = st[0] * d + y
            st[1] = st[1] * d + 1.0
        self.n_seen += 1
        self.n_pos += int(y)
        self.base_rate += 0.002 * (y - self.base_rate)
