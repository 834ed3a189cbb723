"""Disposal outcomes as data: the false-alarm reasons, the threshold-review bound, and precision with its interval.

A department closes an alert with an outcome (``schemas.events.DisposalOutcome``): 属实 with its measures,
不属实, or 误报 with a reason code. The codes the pipeline accepts are ``riskwatch/data/false_alarm_reasons.yaml``
(whether a label teaches the model that raised the alert is kept there too); the office's threshold review
(阈值复核) reads ``riskwatch/data/review.yaml``; precision and its interval are ``sinks/precision.py``.

>>> reasons = load_reasons()
>>> sorted(reasons)[:2], reasons["duplicate"].learn, reasons["sensor_fault"].learn
(['duplicate', 'other'], False, True)
>>> review = load_review()
>>> review.flagged(labelled=6, false=1), review.flagged(labelled=4, false=4), review.flagged(labelled=6, false=2)
(False, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from riskwatch.settings import DATA_DIR

REASONS_PATH = DATA_DIR / "false_alarm_reasons.yaml"
REVIEW_PATH = DATA_DIR / "review.yaml"


@dataclass(frozen=True, slots=True)
class Reason:
    """A false-alarm reason code; ``learn``: the label teaches the model that raised the alert."""

    code: str
    learn: bool


@dataclass(frozen=True, slots=True)
class Review:
    """The threshold-review bound: flag when false / labelled > ``false_alarm_share`` with ≥ ``min_labelled``."""

    false_alarm_share: float
    min_labelled: int
    window_days: int

    def flagged(self, labelled: int, false: int) -> bool:
        return labelled >= self.min_labelled and labelled > 0 and false / labelled > self.false_alarm_share


@cache
def load_reasons(path: Path | None = None) -> dict[str, Reason]:
    """Reason code → :class:`Reason` from ``false_alarm_reasons.yaml``; ValueError when malformed."""
    raw = yaml.safe_load((path or REASONS_PATH).read_text(encoding="utf-8"))
    reasons = raw.get("reasons") if isinstance(raw, dict) else None
    if not isinstance(reasons, dict) or not reasons:
        raise ValueError(f"{path or REASONS_PATH}: needs a non-empty mapping 'reasons'")
    out = {}
    for code, spec in reasons.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("learn"), bool):
            raise ValueError(f"{path or REASONS_PATH}: reason {code!r} needs learn: true|false")
        out[str(code)] = Reason(str(code), spec["learn"])
    return out


@cache
def load_review(path: Path | None = None) -> Review:
    """The threshold-review bound from ``review.yaml``; ValueError when out of range."""
    raw = yaml.safe_load((path or REVIEW_PATH).read_text(encoding="utf-8"))
    r = Review(float(raw["false_alarm_share"]), int(raw["min_labelled"]), int(raw.get("window_days", 90)))
    if not 0.0 < r.false_alarm_share < 1.0 or r.min_labelled < 1 or r.window_days < 1:
        raise ValueError(f"{path or REVIEW_PATH}: false_alarm_share in (0, 1), min_labelled >= 1, window_days >= 1")
    return r
