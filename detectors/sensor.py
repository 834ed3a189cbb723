"""Single-channel streaming anomaly detector: the production detector of every sensor channel."""

from __future__ import annotations

import math
from array import array

__all__ = ["SensorAnomaly"]

_INF = float("inf")
_DAY = 86400.0


class SensorAnomaly:
    """Robust, bounded-state anomaly detector for one sensor stream (River style).

    Placeholder.
    """

    __slots__ = (
        "warmup", "alpha_fast", "alpha_slow", "alpha_scale", "alpha_season", "clip", "z0",
        "threshold", "suppress", "bins", "peak_decay", "season_gain",
        "n", "fast", "slow", "dev_fast", "dev_slow", "last_x", "last_t", "since_alert", "peak",
        "s_mean", "s_cnt", "err_ns", "err_s", "dev_s", "t_first",
        "alpha_lik", "alpha_avg", "u0", "lm", "lv", "am", "av", "avg",
    )

    def __init__(
        self,
        warmup: int = 150,
        alpha_fast: float = 0.3,
        alpha_slow: float = 0.02,
        alpha_scale: float = 0.02,
        alpha_season: float = 0.1,
        clip: float = 4.0,
        z0: float = 4.0,
        threshold: float = 0.7,
        suppress: int = 200,
        bins: int = 48,
        peak_decay: float = 0.99,
        season_gain: float = 0.8,
        alpha_lik: float = 0.002,
        alpha_avg: float = 0.15,
        u0: float = 3.0,
    ):
        self.warmup = int(warmup)
        self.alpha_fast = float(alpha_fast)
        self.alpha_slow = float(alpha_slow)
        self.alpha_scale = float(alpha_scale)
        self.alpha_season = float(alpha_season)
        self.clip = float(clip)
        self.z0 = float(z0)
        self.threshold = float(threshold)
        self.suppress = int(suppress)
        self.bins = int(bins)
        self.peak_decay = float(peak_decay)
        self.season_gain = float(season_gain)
        self.n = 0
        self.fast = self.slow = self.dev_fast = self.dev_slow = 0.0
        self.last_x = 0.0
        self.last_t = -_INF
        self.t_first = _INF
        self.since_alert = 1 << 30
        self.peak = 0.0
        self.s_mean = array("f", [0.0] * self.bins)
        self.s_cnt = array("B", [0] * self.bins)
        self.err_ns = self.err_s = self.dev_s = 0.0
        self.alpha_lik = float(alpha_lik)
        self.alpha_avg = float(alpha_avg)
        self.u0 = float(u0)
        self.lm = self.am = 0.0
        self.lv = self.av = 1.0
        self.avg = 0.0

    # ------------------------------------------------------------------ internals
    def _bin(self, t: float) -> int:
        if t != t or t in (_INF, -_INF):
            return -1
        return int((t % _DAY) / _DAY * self.bins) % self.bins

    def _season_ready(self, b: int) -> bool:
        return b >= 0 and self.s_cnt[b] >= 2 and self.err_s < self.season_gain * self.err_ns

    def _z(self, x: float, t: float) -> float:
        fl = 1e-9 + 1e-6 * abs(self.slow)
        z1 = abs(x - self.fast) / (self.dev_fast + fl)
        z2 = abs(x - self.slow) / (self.dev_slow + fl)
        z = max(z1, 0.5 * z2)
        b = self._bin(t)
        if self._season_ready(b):
            zs = abs(x - self.s_mean[b]) / (self.dev_s + fl)
            z = min(z, zs)
        return z

    # ------------------------------------------------------------------ API
    def score_one(self, x: float, t: float = float("nan")) -> float:
        try:
            x = float(x)
            t = float(t)
        except (TypeError, ValueError):
            return 0.0
        if x != x:
            return 0.0
        if x in (_INF, -_INF):
            return 1.0
        if self.n < 2:
            return 0.0
        z = self._z(x, t)
        if z != z or z == _INF:
            return 1.0
        u = self._u(z)
        if u <= 0.0:
            return 0.0
        return u / (u + self.u0)

    def _u(self, z: float) -> float:
        l = math.log1p(z)
        avg = self.avg + self.alpha_avg * (l - self.avg)
        u1 = (l - self.lm) / math.sqrt(self.lv + 1e-12)
        u2 = (avg - self.am) / math.sqrt(self.av + 1e-12)
        return u1 if u1 > u2 else u2

    def learn_one(self, x: float, t: float = float("nan")) -> None:
        try:
            x = float(x)
            t = float(t)
        except (TypeError, ValueError):
            return
        if x != x or x in (_INF, -_INF):
            return
        if self.n == 0:
            self.fast = self.slow = self.last_x = x
            self.n = 1
            return
        fl = 1e-9 + 1e-6 * abs(self.slow)
        warm = self.n > 10
        lim_f = self.clip * (self.dev_fast + fl) if warm else _INF
        lim_s = self.clip * (self.dev_slow + fl) if warm else _INF
        rf = x - self.fast
        rs = x - self.slow
        if rf in (_INF, -_INF) or rs in (_INF, -_INF):
            return
        # raw z for the novelty peak (before learning)
        z = self._z(x, t)
        rf = max(-lim_f, min(lim_f, rf))
        rs = max(-lim_s, min(lim_s, rs))
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
                lim = self.clip * (self.dev_s + fl) if self.dev_s > 0 else _INF
                r = max(-lim, min(lim, x - m))
                if c >= 2:
                    self.err_s += a * (abs(r) - self.err_s)
                    self.dev_s += a * (abs(r) - self.dev_s)
                else:
                    self.err_s = self.err_s or abs(r)
                    self.dev_s = self.dev_s or abs(r)
                self.s_mean[b] = m + max(self.alpha_season, 1.0 / (c + 1)) * r
                if c < 255:
                    self.s_cnt[b] = c + 1
        self.fast += self.alpha_fast * rf
        self.slow += (self.alpha_slow if self.n > 50 else 1.0 / (self.n + 1)) * rs
        self.last_x = x
        self.n += 1
        if z == z and z != _INF:
            l = math.log1p(z)
            self.avg += self.alpha_avg * (l - self.avg)
            al = self.alpha_lik if self.n > 1.0 / self.alpha_lik else 1.0 / self.n
            # winsorised long-run stats of the raw surprise and of its short average
            sd = math.sqrt(self.lv)
            lc = min(l, self.lm + 3.0 * sd) if self.n > 30 else l
            d = lc - self.lm
            self.lm += al * d
            self.lv = (1.0 - al) * (self.lv + al * d * d)
            sd = math.sqrt(self.av)
            ac = min(self.avg, self.am + 3.0 * sd) if self.n > 30 else self.avg
            d = ac - self.am
            self.am += al * d
            self.av = (1.0 - al) * (self.av + al * d * d)

    def update(self, x: float, t: float = float("nan")) -> tuple[float, bool]:
        s = self.score_one(x, t)
        self.learn_one(x, t)
        self.since_alert += 1
        alert = False
        if self.n > self.warmup and s >= self.threshold and self.since_alert > self.suppress:
            alert = True
            self.since_alert = 0
        return s, alert
