"""Device anomaly over several channels of one device (e.g. boiler pressure + temperature)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from detectors.sensor import SensorAnomaly

__all__ = ["DeviceAnomaly"]

_INF = float("inf")


class DeviceAnomaly:
    """Multi-channel device detector: one :class:`SensorAnomaly` per channel plus a
    cross-channel "coupling" detector.

    Each channel keeps its own production sensor detector.  The coupling detector is one
    more ``SensorAnomaly`` that watches the spread (standard deviation) of the channels'
    standardised deviations from their slow baselines: channels of one device that usually
    move together (pressure and temperature of a boiler) keep this spread small, so a
    channel that breaks away from the others raises it even when each channel on its own
    still looks plausible.  The device score is the largest of the channel and coupling
    scores, and alerts follow the same lifecycle as a sensor (warm-up, then at most one
    alert per ``suppress`` samples).  State is bounded: (channels + 1) sensor detectors.

    Missing channels in a record (absent, ``None`` or NaN) are skipped for that record.

    >>> import math
    >>> dev = DeviceAnomaly(channels=["pressure", "temperature"])
    >>> alerts = []
    >>> for i in range(600):
    ...     p = 10 + math.sin(i / 20) + 0.05 * ((i * 7919) % 13 - 6) / 6
    ...     T = 150 + 10 * math.sin(i / 20)
    ...     if i == 500:
    ...         p = 25.0                       # pressure spike, temperature normal
    ...     s, a = dev.update({"pressure": p, "temperature": T}, t=1_700_000_000 + 60 * i)
    ...     if a:
    ...         alerts.append(i)
    >>> 500 in alerts
    True
    >>> 0.0 <= dev.score_one({"pressure": 10.0, "temperature": 150.0}, t=1_700_036_000) <= 1.0
    True
    """

    __slots__ = ("channels", "sensors", "coupling", "warmup", "threshold", "suppress", "since_alert", "n")

    def __init__(self, channels: Iterable[str] = ("value",), **sensor_config):
        self.channels = list(channels)
        self.sensors = {c: SensorAnomaly(**sensor_config) for c in self.channels}
        self.coupling = SensorAnomaly(**sensor_config) if len(self.channels) > 1 else None
        proto = SensorAnomaly(**sensor_config)
        self.warmup = proto.warmup
        self.threshold = proto.threshold
        self.suppress = proto.suppress
        self.since_alert = 1 << 30
        self.n = 0

    @staticmethod
    def _val(x: Mapping[str, float], c: str) -> float:
        v = x.get(c) if isinstance(x, Mapping) else None
        try:
            return float(v) if v is not None else float("nan")
        except (TypeError, ValueError):
            return float("nan")

    def _spread(self, x: Mapping[str, float]) -> float:
        es = []
        for c in self.channels:
            v = self._val(x, c)
            d = self.sensors[c]
            if v != v or v in (_INF, -_INF) or d.n < 2:
                continue
            e = (v - d.slow) / (d.dev_slow + 1e-9 + 1e-6 * abs(d.slow))
            if e == e and abs(e) != _INF:
                es.append(max(-50.0, min(50.0, e)))
        if len(es) < 2:
            return float("nan")
        m = sum(es) / len(es)
        return math.sqrt(sum((e - m) ** 2 for e in es) / len(es))

    def score_one(self, x: Mapping[str, float], t: float = float("nan")) -> float:
        s = 0.0
        for c in self.channels:
            s = max(s, self.sensors[c].score_one(self._val(x, c), t))
        if self.coupling is not None:
            s = max(s, self.coupling.score_one(self._spread(x), t))
        return s

    def learn_one(self, x: Mapping[str, float], t: float = float("nan")) -> None:
        spread = self._spread(x) if self.coupling is not None else float("nan")
        for c in self.channels:
            self.sensors[c].learn_one(self._val(x, c), t)
        if self.coupling is not None:
            self.coupling.learn_one(spread, t)
        self.n += 1

    def update(self, x: Mapping[str, float], t: float = float("nan")) -> tuple[float, bool]:
        s = self.score_one(x, t)
        self.learn_one(x, t)
        self.since_alert += 1
        alert = False
        if self.n > self.warmup and s >= self.threshold and self.since_alert > self.suppress:
            alert = True
            self.since_alert = 0
        return s, alert
