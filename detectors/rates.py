"""Event-rate surges: rare-event statistics for complaints and video violations per entity.

A count of rare events is not Gaussian: two complaints in a day at a shop that gets three a year is
a surge, two hundred no-mask detections a day at a busy kitchen with four cameras is not. So the
surprise of a recent count is a *tail probability* under a count model, not a z-score:

* the entity's recent count ``k`` is an exponentially decayed count with time constant ``window``
  (≈ "events in the last ``window`` days"; rounded to an integer for the test);
* its baseline rate ``λ`` is uncertain: Gamma(``α``, ``β``) — a **prior from its peers** (same
  entity kind: ``α = peer_rate · prior_days``, ``β = prior_days`` pseudo-days of exposure; empirical
  Bayes when the peer rate is estimated from the peer group by :class:`PeerRates`) updated with
  the entity's **own** exponentially decayed history (``half_life`` days): ``α += own count``,
  ``β += own exposure`` (events of the current window are left out of the baseline, so a surge is
  not explained away by itself);
* the count in a window of length ``w`` is then negative binomial (Poisson–Gamma mixture):
  ``k ~ NB(α, β / (β + w))``; ``p = P(K ≥ k)`` is the tail probability and the surprise is
  ``min(1, -log10 p / l_max)`` in [0, 1] (``l_max = 6``: one in a million saturates).

:class:`RateSurprise` is the per-entity state: four floats (last time, recent count, baseline
count, baseline exposure). The configuration (window, half-life, prior) lives in a shared
:class:`RateConfig` (from ``riskwatch/data/fusion.yaml`` per entity kind), not in the state.

Peer groups
-----------
:class:`PeerRates` estimates, per group (entity kind; or township, for the township view), the
group's rate per entity-day and the township's own surge. Its state is keyed by the group, not
by the entity, so in the pipeline it must **never** live in the entity agent (the entities of one
kind are spread over every partition and worker). How the Faust side feeds it (wired by the lead)::

    peer_topic = app.topic(tp("rates.peer"), key_type=bytes, value_type=bytes)   # internal
    peers = app.Table("peer_rates", partitions=settings.partitions, key_type=str, value_type=bytes)

    # 1. the entity agent, for every complaint / video detection it processes, also sends a tiny
    #    record keyed by entity (no state is shared): {"group": "kind:catering", "signal":
    #    "complaint", "t": ..., "n": 1} and one with "group": "town:舞泉镇"; on registration /
    #    closure {"group": ..., "entities": +1 / -1}.
    # 2. a second agent repartitions them by group (Faust writes them through an internal
    #    repartition topic, so every event of one group lands on one worker):
    @app.agent(peer_topic)
    async def peer_agent(stream):
        async for rec in stream.group_by(lambda r: r["group"], name="peer"):
            pr = PeerRates.loads(peers.get(rec["group"]))      # one PeerRates per group
            pr.learn_one(rec["group"], rec["t"], rec.get("n", 0), rec.get("entities", 0))
            peers[rec["group"]] = pr.dumps()
    # 3. a timer publishes ``pr.prior(group)`` per kind to a compacted ``rates.priors`` topic read
    #    by the entity agent as a GlobalTable (a few dozen keys), which replaces the per-kind prior
    #    from fusion.yaml; ``pr.score_one(group, t)`` for town groups goes to ``notices`` when high
    #    (a township-wide surge: many shops of one town at once, e.g. a contaminated supplier).

Until that agent is wired the per-entity processor uses the prior from data (``fusion.yaml``)
plus the entity's own history — the same formula, a fixed peer rate.

>>> cfg = RateConfig(prior_rate=0.01, prior_days=60.0, window=1.0, half_life=60.0)
>>> r = RateSurprise(t=0.0)
>>> day = 86400.0
>>> for d in range(1, 90, 30):        # a complaint a month: what the peers do
...     r.learn_one(d * day, cfg)
>>> round(r.score_one(95 * day, cfg), 3)   # quiet now
0.0
>>> for h in range(6):                # six complaints within six hours
...     r.learn_one(100 * day + h * 3600, cfg)
>>> r.score_one(100 * day + 6 * 3600, cfg) > 0.9
True
>>> r.score_one(110 * day, cfg) < 0.2    # ten days later the surge is over
True
>>> import pickle; len(pickle.dumps(r)) < 120
True
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass

import msgpack

__all__ = ["RateConfig", "RateSurprise", "PeerRates", "nb_tail"]

_DAY = 86400.0
_LN10 = math.log(10.0)


def nb_tail(k: int, alpha: float, beta: float, w: float) -> float:
    """``P(K >= k)`` for ``K`` ~ Poisson(λ w), λ ~ Gamma(alpha, rate=beta) (negative binomial).

    >>> round(nb_tail(0, 1.0, 1.0, 1.0), 6)
    1.0
    >>> round(nb_tail(1, 1.0, 1.0, 1.0), 6)   # geometric with p = 1/2
    0.5
    >>> nb_tail(3, 0.1, 10.0, 1.0) < 1e-4
    True
    """
    if k <= 0:
        return 1.0
    alpha = max(alpha, 1e-9)
    q = w / (beta + w)  # "failure" probability of the NB
    p = 1.0 - q
    # pmf(j) = Γ(j+α)/(Γ(α) j!) p^α q^j; sum the upper tail directly (no 1 - (1 - ε) cancellation)
    logpmf = math.lgamma(k + alpha) - math.lgamma(alpha) - math.lgamma(k + 1.0) + alpha * math.log(p) + k * math.log(q)
    term = math.exp(logpmf)
    total = term
    j = k
    while term > 1e-18 * total and j < k + 2000:
        term *= (j + alpha) / (j + 1.0) * q
        total += term
        j += 1
    return min(1.0, total)


@dataclass(frozen=True, slots=True)
class RateConfig:
    """Shared settings of one rate signal for one entity kind (data: ``fusion.yaml``).

    ``prior_rate`` events per entity-day (the peers' rate), ``prior_days`` pseudo-days of exposure
    (strength of the prior), ``window`` days (recent-count time constant), ``half_life`` days of
    the entity's own baseline, ``l_max`` the ``-log10 p`` at which the surprise saturates.
    """

    prior_rate: float = 0.01
    prior_days: float = 30.0
    window: float = 1.0
    half_life: float = 60.0
    l_max: float = 6.0
    min_count: int = 2  # one event is not a surge (and a rule may already have alerted on it)

    def with_prior(self, rate: float, days: float | None = None) -> RateConfig:
        """The same settings with a peer prior (e.g. from :meth:`PeerRates.prior`)."""
        return RateConfig(
            rate, self.prior_days if days is None else days, self.window, self.half_life, self.l_max, self.min_count
        )


class RateSurprise:
    """Per-entity rare-event surge detector (River style: ``learn_one`` / ``score_one``).

    State: ``t`` (seconds), ``recent`` (decayed count, time constant ``cfg.window``), ``base``
    (decayed count of events that left the window, half-life ``cfg.half_life``) and ``expo``
    (decayed exposure in days). ``t`` is the first time seen (registration or first event), so
    exposure counts quiet days too.
    """

    __slots__ = ("t", "recent", "base", "expo")

    def __init__(self, t: float | None = None) -> None:
        self.t = t
        self.recent = 0.0
        self.base = 0.0
        self.expo = 0.0

    def __getstate__(self):
        return (self.t, self.recent, self.base, self.expo)

    def __setstate__(self, s):
        self.t, self.recent, self.base, self.expo = s

    def to_data(self) -> list:
        """Data-only state (the entity-state changelog): ``[t, recent, base, expo]``."""
        return [self.t, self.recent, self.base, self.expo]

    @classmethod
    def from_data(cls, data: list) -> RateSurprise:
        """
        >>> RateSurprise.from_data(RateSurprise(5.0).to_data()).t
        5.0
        """
        if type(data) is not list or len(data) != 4 or not all(type(x) in (int, float) for x in data[1:]):
            raise ValueError("rate detector state: not [t, recent, base, expo]")
        if data[0] is not None and type(data[0]) not in (int, float):
            raise ValueError("rate detector state: t is not a number")
        r = cls.__new__(cls)
        r.t, r.recent, r.base, r.expo = data
        return r

    def _advance(self, t: float, cfg: RateConfig) -> None:
        if self.t is None:
            self.t = t
            return
        dt = (t - self.t) / _DAY
        if dt <= 0:
            return
        # events leave the recent window into the baseline; both decay with the baseline half-life
        keep = math.exp(-dt / cfg.window)
        lam = math.log(2.0) / cfg.half_life
        fade = math.exp(-lam * dt)
        left = self.recent * (1.0 - keep)
        self.base = self.base * fade + left
        self.expo = self.expo * fade + (1.0 - fade) / lam
        self.recent *= keep
        self.t = t

    def learn_one(self, t: float, cfg: RateConfig, n: float = 1.0) -> None:
        """``n`` events at time ``t`` (epoch seconds); ``n=0`` just advances time."""
        self._advance(t, cfg)
        self.recent += n

    def rate(self, cfg: RateConfig) -> float:
        """Posterior mean baseline rate (events per day)."""
        return (cfg.prior_rate * cfg.prior_days + self.base) / (cfg.prior_days + self.expo)

    def score_one(self, t: float, cfg: RateConfig) -> float:
        """Surprise in [0, 1] of the recent count at time ``t`` (no state change)."""
        if self.t is None or self.recent < 0.5:
            return 0.0
        dt = max(0.0, (t - self.t) / _DAY)
        k = int(self.recent * math.exp(-dt / cfg.window) + 0.5)
        if k < max(cfg.min_count, 1):
            return 0.0
        alpha = cfg.prior_rate * cfg.prior_days + self.base
        beta = cfg.prior_days + self.expo
        p = nb_tail(k, alpha, beta, cfg.window)
        return min(1.0, -math.log10(max(p, 1e-300)) / cfg.l_max)


class PeerRates:
    """Group-level rates (entity kind or township): the peers' prior and the group's own surge.

    Keyed by group, so in the pipeline it lives behind a ``group_by`` repartition (see the module
    docstring), never in the per-entity agent. Per group: the number of entities, a decayed event
    count, decayed entity-days of exposure, and a group-level :class:`RateSurprise` (township
    view: many entities of one town at once).

    >>> pr = PeerRates(half_life=30.0, window=1.0)
    >>> day = 86400.0
    >>> pr.learn_one("kind:catering", 0.0, entities=400)
    >>> for d in range(60):                         # 3.2 complaints a day county-wide
    ...     pr.learn_one("kind:catering", d * day, n=3.2)
    >>> round(pr.prior("kind:catering")[0], 3)      # per entity-day
    0.008
    >>> pr.score_one("kind:catering", 60 * day) < 0.5
    True
    >>> pr.learn_one("kind:catering", 60.2 * day, n=25)   # 25 at once: a county-wide surge
    >>> pr.score_one("kind:catering", 60.3 * day) > 0.9
    True
    >>> PeerRates.loads(pr.dumps()).prior("kind:catering") == pr.prior("kind:catering")
    True
    >>> import os; PeerRates.loads(pickle.dumps(os.getcwd))   # the peers changelog runs no code
    Traceback (most recent call last):
    ValueError: refused: posix.getcwd is not a peer-rates class
    """

    def __init__(
        self, half_life: float = 30.0, window: float = 1.0, prior_days: float = 30.0, default_rate: float = 0.01
    ) -> None:
        self.half_life = half_life
        self.window = window
        self.prior_days = prior_days
        self.default_rate = default_rate
        # group -> [entities, last_t, count, entity_days, RateSurprise]
        self.groups: dict[str, list] = {}

    def _cfg(self, g: list) -> RateConfig:
        rate = self._rate(g) * max(g[0], 1)
        return RateConfig(
            prior_rate=rate, prior_days=self.prior_days, window=self.window, half_life=self.half_life, min_count=1
        )

    def _rate(self, g: list) -> float:
        # shrink towards the default rate with prior_days entity-days of pseudo-exposure
        return (self.default_rate * self.prior_days + g[2]) / (self.prior_days + g[3])

    def learn_one(self, group: str, t: float, n: float = 0.0, entities: int = 0) -> None:
        """``n`` events of the group at ``t`` (seconds); ``entities`` joined (+) or left (−)."""
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = [0, t, 0.0, 0.0, RateSurprise(t)]
        dt = (t - g[1]) / _DAY
        if dt > 0:
            lam = math.log(2.0) / self.half_life
            fade = math.exp(-lam * dt)
            g[2] *= fade
            g[3] = g[3] * fade + max(g[0], 0) * (1.0 - fade) / lam
            g[1] = t
        # the group's surge detector: baseline = the group's own history at its current size
        g[4].learn_one(t, self._cfg(g), n)
        g[2] += n
        g[0] += entities

    def prior(self, group: str) -> tuple[float, float]:
        """``(rate per entity-day, prior_days)``: the Gamma prior for an entity of this group."""
        g = self.groups.get(group)
        return (self._rate(g) if g else self.default_rate, self.prior_days)

    def score_one(self, group: str, t: float) -> float:
        """Surprise in [0, 1] of the group's recent count (the township view)."""
        g = self.groups.get(group)
        return g[4].score_one(t, self._cfg(g)) if g else 0.0

    # --- the peers table's changelog: data only, like the entity state (streams/engine/state.py) ---
    def to_data(self) -> dict:
        """Plain data: the configuration, ``notified_at`` and per group ``[entities, last_t, count,
        entity_days, surge detector's data]``."""
        return {
            "half_life": self.half_life,
            "window": self.window,
            "prior_days": self.prior_days,
            "default_rate": self.default_rate,
            "notified_at": getattr(self, "notified_at", 0.0),
            "groups": {k: [g[0], g[1], g[2], g[3], g[4].to_data()] for k, g in self.groups.items()},
        }

    @classmethod
    def from_data(cls, d: dict) -> PeerRates:
        if type(d) is not dict or type(d.get("groups")) is not dict:
            raise ValueError("peer rates: not a dict with groups")
        conf = [d.get(k) for k in ("half_life", "window", "prior_days", "default_rate")]
        if not all(type(x) in (int, float) for x in conf):
            raise ValueError("peer rates: configuration is not numbers")
        pr = cls(*(float(x) for x in conf))  # type: ignore[arg-type]  # numbers, checked above
        groups = {}
        for k, g in d["groups"].items():
            if type(g) is not list or len(g) != 5 or not all(type(x) in (int, float) for x in g[:4]):
                raise ValueError(f"peer rates: group {k!r} is not [entities, last_t, count, entity_days, surge]")
            groups[k] = [*g[:4], RateSurprise.from_data(g[4])]
        pr.groups = groups
        notified = d.get("notified_at", 0.0)
        if notified:
            pr.notified_at = float(notified)  # type: ignore[attr-defined]  # set by the peers agent
        return pr

    def dumps(self) -> bytes:
        return _HEADER + msgpack.packb(self.to_data())

    @staticmethod
    def loads(raw: bytes | None, **kw) -> PeerRates:
        """The group state of :meth:`dumps`' bytes (or of an older version's pickle, read by an unpickler
        that allows only these two classes); ValueError if the bytes are neither."""
        if not raw:
            return PeerRates(**kw)
        try:
            if raw[:3] == _HEADER:
                return PeerRates.from_data(msgpack.unpackb(raw[3:]))
            if raw[:1] == b"\x80":  # pickled by an older version: read once, written as data next time
                old = _PeerUnpickler(io.BytesIO(raw)).load()
                if type(old) is not PeerRates:
                    raise ValueError(f"not peer rates: {type(old).__name__}")
                return PeerRates.from_data(old.to_data())
        except ValueError:
            raise
        except Exception as e:  # noqa: BLE001 - malformed bytes of any kind: one error
            raise ValueError(f"peer rates not read: {type(e).__name__}: {e}") from None
        raise ValueError(f"peer rates not read: unknown format {bytes(raw[:3])!r}")


_HEADER = b"RW\x01"  # format version 1 (the entity state's header, streams/engine/state.py)


class _PeerUnpickler(pickle.Unpickler):
    """Reads a PeerRates pickled by an older version: only this module's two classes, nothing else."""

    def find_class(self, module: str, name: str):
        if module == __name__ and name in ("PeerRates", "RateSurprise"):
            return globals()[name]
        raise ValueError(f"refused: {module}.{name} is not a peer-rates class")
