"""Single-channel streaming anomaly detector: the production detector of every sensor channel."""

from __future__ import annotations

import math
import operator
from array import array

__all__ = ["SensorAnomaly"]

_INF = float("inf")
_DAY = 86400.0
_SQ2 = math.sqrt(2.0)
_LN10 = math.log(10.0)
_LN_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG = [0.0] + [math.log(k) for k in range(1, 256)]  # log of histogram counts (<= 255)


def _neg_log10_tail(u: float) -> float:
    """``-log10 Q(u)`` of the standard normal upper tail ``Q``, finite and increasing for u > 0."""
    if u < 5.0:
        return -math.log10(0.5 * math.erfc(u / _SQ2))
    # asymptotic expansion, Q(u) ~ phi(u) / u * (1 - 1/u^2): no underflow for large u
    return (0.5 * u * u + math.log(u) + _LN_SQRT_2PI - math.log1p(-1.0 / (u * u))) / _LN10


class SensorAnomaly:
    """Robust, bounded-state anomaly detector for one sensor stream (River style).

    Online, one pass, O(1) time and < 2 KB of pickled state.  Components:

    1. **Raw surprise** ``z`` of a value under the best-fitting of two baselines:
       a non-seasonal one, ``max(|x - fast| / dev_fast, 0.5 * |x - slow| / dev_slow)``
       (fast and slow exponentially weighted means with their mean absolute deviations),
       and a time-of-day one (``bins`` bucket means over the day, keyed on ``t``), used
       only once it explains the stream clearly better than the non-seasonal one
       (``season_gain``).  All baselines learn *winsorised* residuals (clipped at
       ``clip`` deviations), so a spike moves them by at most a few deviations.
    2. **Anomaly likelihood** (Numenta, Ahmad et al. 2017): the raw score
       ``r = z / (z + z0)`` in [0, 1) is averaged over a short EW window (``alpha_avg``,
       ~10 samples) and compared with the long-run EW mean and variance of that average
       (``alpha_lik``, floored at ``mean_floor`` / ``std_floor``).  The Gaussian tail
       probability ``Q`` of the short average gives ``L = -log10 Q``; the point score is
       ``L / (L + l0)`` (``l0 = 5``: 0.5 at NAB-HTM's ``Q = 1e-5`` alert level).  It fires
       when the *distribution* of surprises changes and goes quiet on stationary noise.
    3. **Spatial anomaly** (NAB's HTM detector): a value beyond the stream's learnt
       range ``[lo, hi]`` by more than ``spatial_tol`` of its width scores
       ``e / (e + spatial_tol)`` (``e`` = excess / width).  The range grows by at most
       ``range_clip`` widths per sample, so one glitch (1e12) cannot blow it up at once.
    4. **Relative entropy** (Wang et al. 2011, NAB's "relativeEntropy"): the histogram
       (``re_bins`` bins over the learnt range) of the last ``re_win`` values is tested
       against up to ``re_max`` remembered histograms ("hypotheses") with the statistic
       ``2 W KL`` against the chi-squared 0.99 point ``re_T``.  A window that matches no
       hypothesis (or one seen only once) is novel and adds ``w_re`` to the score of
       ``update``.  Counts live in ``array('B')`` / ``array('H')`` (a few hundred bytes).

    ``score_one`` is the point score (components 2 and 3); ``update`` adds the window
    component 4, then decides the production alert: after the warm-up (``warmup`` samples
    and ``warmup_time`` seconds of stream, i.e. one daily cycle, or ``warmup_max`` samples),
    ``score >= threshold`` and at most one alert per ``suppress`` samples (one notice per
    incident).  While an alert is being suppressed ``update`` reports ``damp * score``, so
    the reported score peaks at the start of an incident and one threshold can be swept.

    NaN / non-numeric values are ignored (score 0, no learning); ±inf scores 1 and is not
    learnt; a missing, duplicated or out-of-order timestamp only affects the seasonal layer.

    >>> import math, pickle
    >>> det = SensorAnomaly()
    >>> t0 = 1_700_000_000
    >>> alerts = []
    >>> for i in range(2000):                     # 5-minute cold-chain temperature
    ...     x = 4.0 + 0.5 * math.sin(2 * math.pi * i / 288) + 0.1 * math.sin(i * 1.7)
    ...     if i == 1500:
    ...         x = 12.0                          # door left open
    ...     score, alert = det.update(x, t0 + 300 * i)
    ...     if alert:
    ...         alerts.append(i)
    >>> alerts
    [1500]
    >>> 0.0 <= det.score_one(4.2, t0 + 300 * 2000) < det.score_one(40.0, t0 + 300 * 2000) < 1.0
    True
    >>> det.update(float("nan"), t0)[0], det.score_one(float("inf"), t0)
    (0.0, 1.0)
    >>> len(pickle.dumps(det)) <= 2048
    True
    >>> again = SensorAnomaly.from_data(det.to_data())   # the changelog's data-only state
    >>> again.score_one(40.0, t0 + 300 * 2000) == det.score_one(40.0, t0 + 300 * 2000)
    True
    >>> SensorAnomaly.from_data(["not", "a", "state"])
    Traceback (most recent call last):
    ValueError: sensor detector state: not a list of its slots
    """

    __slots__ = (
        # config
        "warmup",
        "warmup_time",
        "warmup_max",
        "alpha_fast",
        "alpha_slow",
        "alpha_scale",
        "alpha_season",
        "alpha_lik",
        "alpha_avg",
        "clip",
        "z0",
        "l0",
        "mean_floor",
        "std_floor",
        "spatial_tol",
        "range_clip",
        "w_re",
        "re_win",
        "re_bins",
        "re_max",
        "re_T",
        "threshold",
        "suppress",
        "damp",
        "bins",
        "season_gain",
        # state
        "n",
        "fast",
        "slow",
        "dev_fast",
        "dev_slow",
        "err_ns",
        "err_s",
        "dev_s",
        "s_mean",
        "s_cnt",
        "lm",
        "lv",
        "avg",
        "lo",
        "hi",
        "re_buf",
        "re_pos",
        "re_hist",
        "re_hyp",
        "re_cnt",
        "re_cur",
        "re_new",
        "since_alert",
        "t_first",
    )

    # Compact, fast pickling (the state is written to a Faust changelog after every batch): one
    # flat tuple of slot values, arrays as (typecode, bytes) — ~3x faster than slot-by-slot pickle.
    # A detector with the default configuration (every production stream) pickles its state
    # slots only; one with another configuration pickles all slots (the older format, still read).
    def __getstate__(self):
        v = _GET_SLOTS(self)
        state = [(x.typecode, x.tobytes()) if type(x) is array else x for x in v[_N_CONFIG:]]
        if v[:_N_CONFIG] != _DEFAULT_CONFIG:
            return tuple(v[:_N_CONFIG]) + tuple(state)
        return tuple(state)

    def __setstate__(self, state):
        slots = self.__slots__
        if len(state) < len(slots):  # state slots only: the default configuration
            for s, v in zip(slots, _DEFAULT_CONFIG, strict=False):  # the configuration slots only
                object.__setattr__(self, s, v)
            slots = slots[_N_CONFIG:]
        for s, v in zip(slots, state, strict=True):
            if type(v) is tuple:
                a = array(v[0])
                a.frombytes(v[1])
                v = a
            object.__setattr__(self, s, v)

    # Data-only state for the changelog (streams/engine/state.py packs it with msgpack): the same
    # flat list as the pickled tuple, arrays as [typecode, bytes]. ``from_data`` builds a detector
    # from such a list and checks its shape, so a corrupt record fails here, not in ``update``.
    def to_data(self) -> list:
        v = _GET_SLOTS(self)
        state = [[x.typecode, x.tobytes()] if type(x) is array else x for x in v[_N_CONFIG:]]
        if v[:_N_CONFIG] != _DEFAULT_CONFIG:
            return list(v[:_N_CONFIG]) + state
        return state

    @classmethod
    def from_data(cls, data: list) -> SensorAnomaly:
        """The detector of :meth:`to_data`'s list; ValueError if it is not one."""
        if type(data) is not list or (len(data) != _N_STATE and len(data) != len(_SLOTS)):
            raise ValueError("sensor detector state: not a list of its slots")
        values = [*_DEFAULT_CONFIG, *data] if len(data) == _N_STATE else list(data)  # _N_STATE: default config
        if not _PLAIN.issuperset(map(type, values)):
            raise ValueError("sensor detector state: a slot is not a number or an array")
        for i, tc in _ARRAY_AT:
            v = values[i]
            if type(v) is not list or len(v) != 2 or v[0] != tc or type(v[1]) is not bytes:
                raise ValueError(f"sensor detector state: {_SLOTS[i]} is not an array of {tc!r}")
            a = array(tc)
            a.frombytes(v[1])
            values[i] = a
        det = cls.__new__(cls)
        for set_slot, v in zip(_SETTERS, values, strict=True):
            set_slot(det, v)
        if (
            type(det.re_pos) is not int
            or type(det.re_cur) is not int
            or not (
                len(det.s_mean) == len(det.s_cnt) == det.bins
                and len(det.re_buf) == det.re_win
                and len(det.re_hist) == det.re_bins
                and len(det.re_hyp) == det.re_bins * len(det.re_cnt)
                and 0 <= det.re_pos < det.re_win
                and -1 <= det.re_cur < len(det.re_cnt)
            )
        ):
            raise ValueError("sensor detector state: array lengths do not match its configuration")
        return det

    def __init__(
        self,
        warmup: int = 150,
        warmup_time: float = _DAY,
        warmup_max: int = 750,
        alpha_fast: float = 0.1,
        alpha_slow: float = 0.02,
        alpha_scale: float = 0.02,
        alpha_season: float = 0.1,
        alpha_lik: float = 0.001,
        alpha_avg: float = 0.1,
        clip: float = 4.0,
        z0: float = 3.0,
        l0: float = 5.0,
        mean_floor: float = 0.03,
        std_floor: float = 0.0173,
        spatial_tol: float = 0.05,
        range_clip: float = 1.0,
        w_re: float = 0.3,
        re_win: int = 52,
        re_bins: int = 5,
        re_max: int = 24,
        re_T: float = 13.2767,  # scipy.stats.chi2.isf(0.01, re_bins - 1) for 5 bins
        threshold: float = 0.5,
        suppress: int = 30,
        damp: float = 0.5,
        bins: int = 48,
        season_gain: float = 0.8,
    ):
        self.warmup = int(warmup)
        self.warmup_time = float(warmup_time)
        self.warmup_max = int(warmup_max)
        self.alpha_fast = float(alpha_fast)
        self.alpha_slow = float(alpha_slow)
        self.alpha_scale = float(alpha_scale)
        self.alpha_season = float(alpha_season)
        self.alpha_lik = float(alpha_lik)
        self.alpha_avg = float(alpha_avg)
        self.clip = float(clip)
        self.z0 = float(z0)
        self.l0 = float(l0)
        self.mean_floor = float(mean_floor)
        self.std_floor = float(std_floor)
        self.spatial_tol = float(spatial_tol)
        self.range_clip = float(range_clip)
        self.w_re = float(w_re)
        self.re_win = max(2, min(255, int(re_win)))
        self.re_bins = max(2, min(254, int(re_bins)))
        self.re_max = max(1, int(re_max))
        self.re_T = float(re_T)
        self.threshold = float(threshold)
        self.suppress = int(suppress)
        self.damp = float(damp)
        self.bins = max(1, min(255, int(bins)))
        self.season_gain = float(season_gain)
        self.n = 0
        self.fast = self.slow = self.dev_fast = self.dev_slow = 0.0
        self.err_ns = self.err_s = self.dev_s = 0.0
        self.s_mean = array("f", [0.0] * self.bins)
        self.s_cnt = array("B", [0] * self.bins)
        self.lm = self.lv = self.avg = 0.0
        self.lo, self.hi = _INF, -_INF
        self.re_buf = array("B", [255] * self.re_win)  # 255 = empty slot
        self.re_pos = 0
        self.re_hist = array("B", [0] * self.re_bins)
        self.re_hyp = array("B")  # re_bins counts per hypothesis
        self.re_cnt = array("H")  # windows that agreed with each hypothesis
        self.re_cur = -1  # hypothesis the current window agrees with
        self.re_new = False  # the last learnt window was novel
        self.since_alert = 1 << 30
        self.t_first = float("nan")

    # ------------------------------------------------------------------ internals
    def _bin(self, t: float) -> int:
        if t != t or t in (_INF, -_INF):
            return -1
        return int((t % _DAY) / _DAY * self.bins) % self.bins

    def _z(self, x: float, t: float) -> float:
        fl = 1e-9 + 1e-6 * abs(self.slow)
        z = abs(x - self.fast) / (self.dev_fast + fl)
        z2 = 0.5 * abs(x - self.slow) / (self.dev_slow + fl)
        if z2 > z:
            z = z2
        b = self._bin(t)
        if b >= 0 and self.s_cnt[b] >= 2 and self.err_s < self.season_gain * self.err_ns:
            zs = abs(x - self.s_mean[b]) / (self.dev_s + fl)
            if zs < z:
                z = zs
        return z

    def _likelihood(self, r: float) -> float:
        """Point score of raw score ``r``: log tail probability of its short average."""
        avg = self.avg + self.alpha_avg * (r - self.avg)
        m = self.lm if self.lm > self.mean_floor else self.mean_floor
        sd = math.sqrt(self.lv)
        if sd < self.std_floor:
            sd = self.std_floor
        u = (avg - m) / sd
        if u <= 0.0:
            return 0.0
        lg = _neg_log10_tail(u)
        return lg / (lg + self.l0)

    def _spatial(self, x: float) -> float:
        width = self.hi - self.lo
        if not width > 0.0:
            return 0.0
        e = ((x - self.hi) if x > self.hi else (self.lo - x)) / width
        if e <= self.spatial_tol:
            return 0.0
        return e / (e + self.spatial_tol)

    def _kl2(self, j: int) -> float:
        """``2 W KL(current window || hypothesis j)`` from bin counts."""
        h, hyp, o = self.re_hist, self.re_hyp, j * self.re_bins
        kl = 0.0
        for k in range(self.re_bins):
            p = h[k]
            if p:
                q = hyp[o + k]
                if q == 0:
                    return _INF
                kl += p * (_LOG[p] - _LOG[q])
        return 2.0 * kl

    def _agree(self, j: int) -> bool:
        c = self.re_cnt[j]
        if c < 65535:
            self.re_cnt[j] = c + 1
        return c + 1 <= 1  # novel unless the hypothesis was seen before

    def _re_learn(self, x: float) -> bool:
        """Slide the window by ``x``; True if the window is novel (relative entropy)."""
        nb = self.re_bins
        width = self.hi - self.lo
        f = (x - self.lo) / width * nb if width > 0.0 else 0.0
        b = 0 if not f > 0.0 else (nb - 1 if f >= nb else int(f))  # NaN / ±inf safe
        old = self.re_buf[self.re_pos]
        self.re_buf[self.re_pos] = b
        self.re_pos = (self.re_pos + 1) % self.re_win
        h = self.re_hist
        h[b] += 1
        if old == 255:
            return False  # window not full yet
        h[old] -= 1
        j = self.re_cur
        nh = len(self.re_cnt)
        if old == b and j >= 0:  # same histogram: agrees with the same hypothesis
            return self._agree(j)
        if 0 <= j < nh and self.re_cnt[j] > 1 and self._kl2(j) < self.re_T:
            return self._agree(j)  # still within the current hypothesis
        best, best_v = -1, self.re_T
        for i in range(nh):
            v = self._kl2(i)
            if v < best_v:
                best, best_v = i, v
        if best >= 0:
            self.re_cur = best
            return self._agree(best)
        if nh < self.re_max:  # new hypothesis
            self.re_hyp.extend(h)
            self.re_cnt.append(1)
            self.re_cur = nh
        else:  # replace the least supported one
            j = min(range(nh), key=self.re_cnt.__getitem__)
            self.re_hyp[j * nb : (j + 1) * nb] = array("B", h)
            self.re_cnt[j] = 1
            self.re_cur = j
        return True

    @staticmethod
    def _floats(x, t) -> tuple[float, float] | None:
        try:
            return float(x), float(t)
        except (TypeError, ValueError, OverflowError):
            return None

    # ------------------------------------------------------------------ API
    def score_one(self, x: float, t: float = float("nan")) -> float:
        """Point anomaly score in [0, 1] of value ``x`` at unix time ``t``; no state change."""
        xt = self._floats(x, t)
        if xt is None:
            return 0.0
        return self._score(*xt, None)

    def _score(self, x: float, t: float, z: float | None) -> float:
        """:meth:`score_one` of floats; ``z``: ``_z(x, t)`` if the caller has it already."""
        if x != x:
            return 0.0
        if x in (_INF, -_INF):
            return 1.0
        if self.n < 2:
            return 0.0
        if z is None:
            z = self._z(x, t)
        if z != z or z == _INF:
            return 1.0
        s = self._likelihood(z / (z + self.z0))
        sp = self._spatial(x)
        if sp > s:
            s = sp
        return s if s < 1.0 else 1.0

    def learn_one(self, x: float, t: float = float("nan")) -> None:
        """Update the baselines with ``x`` (winsorised) observed at unix time ``t``."""
        self.re_new = False
        xt = self._floats(x, t)
        if xt is not None:
            self._learn(*xt, None)

    def _learn(self, x: float, t: float, z: float | None) -> None:
        """:meth:`learn_one` of floats; ``z``: ``_z(x, t)`` of the state before it, if known."""
        if x != x or x in (_INF, -_INF):
            return
        if self.n == 0:
            self.t_first = t if abs(t) < _INF else float("nan")
            self.fast = self.slow = self.lo = self.hi = x
            self.n = 1
            return
        rf = x - self.fast
        rs = x - self.slow
        if rf in (_INF, -_INF) or rs in (_INF, -_INF):
            return  # overflow of a huge value against the baseline: do not learn it
        if z is None:
            z = self._z(x, t) if self.n >= 2 else 0.0
        fl = 1e-9 + 1e-6 * abs(self.slow)
        # relative entropy window and learnt range (winsorised far from the slow baseline)
        if self.w_re > 0.0:
            self.re_new = self._re_learn(x)
        xr = x
        lim = self.range_clip * (self.hi - self.lo)
        if self.n > 30 and lim > 0.0:  # the range grows by at most range_clip widths a sample
            xr = self.lo - lim if xr < self.lo - lim else (self.hi + lim if xr > self.hi + lim else xr)
        if xr < self.lo:
            self.lo = xr
        if xr > self.hi:
            self.hi = xr
        if self.n > 10:  # winsorise: a spike moves the baselines by at most clip deviations
            lim = self.clip * (self.dev_fast + fl)
            rf = -lim if rf < -lim else (lim if rf > lim else rf)
            lim = self.clip * (self.dev_slow + fl)
            rs = -lim if rs < -lim else (lim if rs > lim else rs)
        a = self.alpha_scale if self.n > 30 else 1.0 / (self.n + 1)
        self.dev_fast += a * (abs(rf) - self.dev_fast)
        self.dev_slow += a * (abs(rs) - self.dev_slow)
        self.err_ns += a * (abs(rf) - self.err_ns)
        b = self._bin(t)
        if b >= 0:
            c = self.s_cnt[b]
            m = self.s_mean[b]
            if c == 0:
                self.s_mean[b] = x
                self.s_cnt[b] = 1
            else:
                r = x - m
                if self.dev_s > 0.0:
                    lim = self.clip * (self.dev_s + fl)
                    r = -lim if r < -lim else (lim if r > lim else r)
                if c >= 2:
                    self.err_s += a * (abs(r) - self.err_s)
                    self.dev_s += a * (abs(r) - self.dev_s)
                elif self.dev_s == 0.0:
                    self.err_s = self.dev_s = abs(r)
                m += max(self.alpha_season, 1.0 / (c + 1)) * r
                if m == m and abs(m) < 3e38:  # stays representable in float32
                    self.s_mean[b] = m
                if c < 255:
                    self.s_cnt[b] = c + 1
        self.fast += self.alpha_fast * rf
        self.slow += (self.alpha_slow if self.n > 50 else 1.0 / (self.n + 1)) * rs
        self.n += 1
        if z == z and z != _INF:  # likelihood: short average and its long-run mean/variance
            self.avg += self.alpha_avg * (z / (z + self.z0) - self.avg)
            al = self.alpha_lik if self.n * self.alpha_lik > 1.0 else 1.0 / self.n
            d = self.avg - self.lm
            self.lm += al * d
            self.lv = (1.0 - al) * (self.lv + al * d * d)

    def warmed_up(self, t: float = float("nan")) -> bool:
        """Alerts are allowed after ``warmup`` samples covering ``warmup_time`` seconds of the
        stream (one day: the daily cycle has been seen once), or after ``warmup_max`` samples."""
        if self.n <= self.warmup:
            return False
        if self.n > self.warmup_max:
            return True
        try:
            return not (float(t) - self.t_first < self.warmup_time)  # NaN time: count only
        except (TypeError, ValueError, OverflowError):
            return True

    def update(self, x: float, t: float = float("nan")) -> tuple[float, bool]:
        """Score then learn; returns ``(score, alert)`` with the production alert decision."""
        self.re_new = False
        xt = self._floats(x, t)
        if xt is None:
            s = 0.0
        else:
            x, t = xt
            # scoring and learning need the same z of the state before this value: computed once
            z = self._z(x, t) if self.n >= 2 and x == x and x not in (_INF, -_INF) else None
            s = self._score(x, t, z)
            self._learn(x, t, z)
        if self.re_new:
            s = s + self.w_re
            if s > 1.0:
                s = 1.0
        self.since_alert += 1
        suppressed = self.since_alert <= self.suppress
        alert = False
        if s >= self.threshold and not suppressed and self.warmed_up(t):
            alert = True
            self.since_alert = 0
        return (s * self.damp if suppressed else s), alert


_GET_SLOTS = operator.attrgetter(*SensorAnomaly.__slots__)
_N_CONFIG = SensorAnomaly.__slots__.index("n")  # the configuration slots come first
_DEFAULT_CONFIG = _GET_SLOTS(SensorAnomaly())[:_N_CONFIG]
# from_data: the slots, where the arrays are (with their typecodes), the slots' setters, the plain types
_SLOTS: tuple[str, ...] = SensorAnomaly.__slots__
_N_STATE = len(_SLOTS) - _N_CONFIG
_ARRAY_AT = tuple((i, v.typecode) for i, v in enumerate(_GET_SLOTS(SensorAnomaly())) if type(v) is array)
_SETTERS = tuple(getattr(SensorAnomaly, s).__set__ for s in _SLOTS)
_PLAIN = frozenset((int, float, bool, list))
