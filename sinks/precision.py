"""Precision measured in production: per rule, detector, item and department, from the disposal outcomes.

Every alert that fired in the window counts once, with the verdict of its latest 已处置 outcome
(``events_feedback.verdict``, migration 13): 属实 (confirmed), 不属实 (not_confirmed), 误报 (false_alarm), or
unknown (no outcome yet, or a disposed message without one). Precision is ``confirmed / labelled`` (labelled =
confirmed + not confirmed + false), with its Wilson 95 % interval (:func:`wilson`). The detector is the rule's
family: the first two parts of its code (``model.sensor.cold_chain_temp`` → ``model.sensor``).

The threshold review (阈值复核, ``riskwatch/data/review.yaml``) flags a rule or detector whose false-alarm share
(false / labelled) passes the bound with enough labelled alerts; :func:`table` keeps each group's alerts for it.

>>> rows = [{"alert_id": f"a{i}", "rule": "model.sensor.cold_chain_temp", "item_id": 1, "item_name": "冷链",
...          "dept": "amr", "verdict": v, "reason": "", "title": "", "entity_name": "", "first_seen": ""}
...         for i, v in enumerate(["confirmed"] * 3 + ["false_alarm"] * 2 + [""])]
>>> g = table(rows, "detector")[0]
>>> g.key, g.alerts, g.confirmed, g.false, g.unknown, round(g.precision, 2), [round(x, 2) for x in g.interval]
('model.sensor', 6, 3, 2, 1, 0.6, [0.23, 0.88])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.vocabulary import DETECTOR_FAMILY_ZH

Z95 = 1.959963984540054  # the standard normal's 97.5 % point
By = Literal["rule", "detector", "item", "dept"]

# One row per alert that fired in the last %(days)s days, with its latest outcome ('' when none).
ALERT_OUTCOMES_SQL = """
SELECT a.alert_id AS alert_id, a.rule AS rule, a.item_id AS item_id, a.item_name AS item_name,
       a.lead_department AS dept, a.title AS title, a.entity_name AS entity_name, a.first_seen AS first_seen,
       o.verdict AS verdict, o.reason AS reason
FROM (SELECT alert_id, rule, item_id, item_name, lead_department, title, entity_name, first_seen
      FROM {db}.alerts FINAL
      WHERE first_seen >= now() - toIntervalDay(%(days)s)
        AND alert_id IN (SELECT alert_id FROM {db}.alert_history WHERE kind = 'status' AND to_status = 'firing')) AS a
LEFT JOIN (SELECT alert_id, argMax(verdict, occurred_at) AS verdict, argMax(false_reason, occurred_at) AS reason
           FROM (SELECT alert_id, verdict, false_reason, occurred_at FROM {db}.events_feedback FINAL
                 WHERE status = 'disposed' AND verdict NOT IN ('', 'unknown'))
           GROUP BY alert_id) AS o ON o.alert_id = a.alert_id
ORDER BY a.first_seen DESC LIMIT 100000"""

# One alert's outcomes (the alert page and the dossier): every 已处置 with an outcome, latest first.
OUTCOMES_OF_ALERT_SQL = """
SELECT occurred_at AS at, department, verdict, measures, rectify_note, case_number, fine_yuan, transfer_to,
       false_reason AS reason, result
FROM {db}.events_feedback FINAL
WHERE alert_id = %(alert_id)s AND status = 'disposed'
ORDER BY occurred_at DESC LIMIT 20"""

# An entity's outcomes (the dossier).
OUTCOMES_OF_ENTITY_SQL = """
SELECT f.occurred_at AS at, f.alert_id AS alert_id, f.department AS department, f.verdict AS verdict,
       f.measures AS measures, f.case_number AS case_number, f.fine_yuan AS fine_yuan, f.transfer_to AS transfer_to,
       f.false_reason AS reason
FROM {db}.events_feedback AS f FINAL
WHERE f.entity_id = %(entity_id)s AND f.status = 'disposed' AND f.verdict != ''
ORDER BY f.occurred_at DESC LIMIT 50"""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (95 % by default); ``(0, 1)`` when ``n == 0``.

    With ``p = k / n``::

        centre = (p + z² / 2n) / (1 + z² / n)
        half   = z / (1 + z² / n) · sqrt(p (1 − p) / n + z² / 4n²)
        interval = [centre − half, centre + half]

    Unlike the normal (Wald) interval it stays inside [0, 1] and is not empty at ``k = 0`` or ``k = n``,
    which matters for the few labelled alerts a rule has in a county.

    >>> [round(x, 3) for x in wilson(8, 10)], wilson(0, 0)
    ([0.49, 0.943], (0.0, 1.0))
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    d = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z / d * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def detector_of(rule: str) -> str:
    """The rule's family: ``model.sensor.cold_chain_temp`` → ``model.sensor``, ``model.risk`` → ``model.risk``."""
    return ".".join(rule.split(".")[:2])


@dataclass(slots=True)
class Group:
    """One row of the precision table."""

    key: str
    label: str = ""
    alerts: int = 0
    confirmed: int = 0
    not_confirmed: int = 0
    false: int = 0
    unknown: int = 0
    false_alerts: list[Mapping[str, Any]] = field(default_factory=list)  # the 误报 alerts (threshold review)

    @property
    def labelled(self) -> int:
        return self.confirmed + self.not_confirmed + self.false

    @property
    def precision(self) -> float | None:
        return self.confirmed / self.labelled if self.labelled else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.confirmed, self.labelled)

    @property
    def false_share(self) -> float | None:
        return self.false / self.labelled if self.labelled else None


def _key(r: Mapping[str, Any], by: By) -> tuple[str, str]:
    rule = str(r.get("rule") or "")
    if by == "rule":
        return rule, rule
    if by == "detector":
        fam = detector_of(rule)
        return fam, DETECTOR_FAMILY_ZH.get(fam, fam)
    if by == "item":
        item = r.get("item_id")
        return ("" if item is None else str(item)), str(r.get("item_name") or "未归口事项")
    return str(r.get("dept") or ""), str(r.get("dept") or "")


def table(rows: Iterable[Mapping[str, Any]], by: By) -> list[Group]:
    """Rows of :data:`ALERT_OUTCOMES_SQL` grouped ``by`` rule, detector, item or department (most alerts first)."""
    groups: dict[str, Group] = {}
    for r in rows:
        key, label = _key(r, by)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(key, label)
        g.alerts += 1
        v = str(r.get("verdict") or "")
        if v == "confirmed":
            g.confirmed += 1
        elif v == "not_confirmed":
            g.not_confirmed += 1
        elif v == "false_alarm":
            g.false += 1
            g.false_alerts.append(r)
        else:
            g.unknown += 1
    return sorted(groups.values(), key=lambda g: (-g.alerts, g.key))
