"""Inspection planning: joint inspections (能合尽合) and 双随机、一公开 spot checks by credit tier.

Pure functions over plain records; rates, tier mix and inspector rosters are data
(``riskwatch/data/spot_checks.yaml``).

* :func:`merge_tasks` — pending inspection tasks of several departments on one entity within a
  time window become one joint inspection led by the item's lead department (catalog).
* :func:`draw_spot_checks` — per supervision item and credit tier, draw entities with the tier's
  monthly rate (reproducible: ``random.Random(f"{seed}-{month}")``) and assign two random
  inspectors from different departments: the item's lead and one of its cooperating departments.
* :data:`LIVE_ENTITIES_SQL` / :func:`live_entities` — the draw's population: the live registry
  (``registry FINAL``) with each entity's latest official tier (``credit``, ``riskwatch import credit``);
  an entity without one takes ``untiered`` (data); :func:`tier_rates` — the achieved rate per tier
  against the data's rate (docs/credit.md).

>>> from riskwatch.domain.catalog import load_catalog
>>> cat = load_catalog()
>>> t = [InspectionTask("t1", "E9", "emergency", due=0.0, item_id=8, source="alert", ref="a1"),
...      InspectionTask("t2", "E9", "fire", due=86400.0, item_id=8)]
>>> [(j.lead, j.departments, j.joint) for j in merge_tasks(t, window=7 * 86400, catalog=cat)]
[('amr', ('amr', 'emergency', 'fire'), True)]
>>> ents = [SpotEntity(f"E{i:03d}", "retail_pharmacy", "舞泉镇", "D") for i in range(3)]
>>> checks = draw_spot_checks(ents, "2026-11", seed=1, catalog=cat)
>>> [(c.entity_id, c.inspectors[0].department, c.inspectors[1].department) for c in checks]
[('E000', 'amr', 'medinsure'), ('E001', 'amr', 'medinsure'), ('E002', 'amr', 'medinsure')]
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riskwatch.domain.catalog import Catalog, _line_for, load_catalog, load_yaml_with_lines
from riskwatch.settings import DATA_DIR

DEFAULT_SPOT_CHECKS_PATH = DATA_DIR / "spot_checks.yaml"
MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


# --- data file --------------------------------------------------------------------------------------
class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_M):
    rate: float = Field(ge=0, le=1, description="Share drawn per item per month")
    name: str = ""


class InspectorEntry(_M):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*-\d{2,3}$")
    name: str = Field(min_length=1)


class SpotCheckConfig(_M):
    method: Literal["proportion", "bernoulli"] = "proportion"
    joint_window_days: float = Field(14.0, ge=0)
    alert_task_levels: tuple[str, ...] = ("orange", "red")
    tiers: dict[str, Tier] = Field(min_length=1)
    default_tier_mix: dict[str, float] = Field(default_factory=dict)
    untiered: str = Field("B", description="Tier of a live-registry entity without an official credit tier")
    rosters: dict[str, tuple[InspectorEntry, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _shape(self) -> SpotCheckConfig:
        for t in self.default_tier_mix:
            if t not in self.tiers:
                raise ValueError(f"default_tier_mix: unknown tier {t!r}; known: {', '.join(self.tiers)}")
        if self.untiered not in self.tiers:
            raise ValueError(f"untiered: unknown tier {self.untiered!r}; known: {', '.join(self.tiers)}")
        if self.default_tier_mix and abs(sum(self.default_tier_mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"default_tier_mix must sum to 1, got {sum(self.default_tier_mix.values()):g}")
        seen: dict[str, str] = {}
        for dept, people in self.rosters.items():
            for p in people:
                if p.code in seen:
                    raise ValueError(f"rosters.{dept}: inspector code {p.code!r} also in rosters.{seen[p.code]}")
                seen[p.code] = dept
        return self


class PlanningError(ValueError):
    """An invalid spot-check file or entity list; the message names line and field."""


# --- records ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InspectionTask:
    """One department's pending inspection of one entity (from an alert, a plan or a spot check)."""

    task_id: str
    entity_id: str
    department: str
    due: float | datetime
    item_id: int | None = None
    source: str = "plan"  # alert | plan | spot_check
    ref: str = ""  # alert id, plan id or spot-check id
    note: str = ""

    def to_data(self) -> list:
        """Data-only form (entity state on the changelog): the fields as one list, ``due`` in epoch seconds.

        >>> t = InspectionTask("t1", "E9", "fire", due=86400.0, item_id=8)
        >>> InspectionTask.from_data(t.to_data()) == t
        True
        """
        due = _ts(self.due) if isinstance(self.due, datetime) else self.due
        return [self.task_id, self.entity_id, self.department, due, self.item_id, self.source, self.ref, self.note]

    @classmethod
    def from_data(cls, data: list) -> InspectionTask:
        if type(data) is not list or len(data) != 8 or type(data[3]) not in (int, float):
            raise ValueError("inspection task: not [task_id, entity_id, department, due, item_id, source, ref, note]")
        return cls(*data)


@dataclass(frozen=True, slots=True)
class JointInspection:
    """One visit: the lead department first, every participating department, the merged tasks."""

    inspection_id: str
    entity_id: str
    lead: str
    departments: tuple[str, ...]
    item_ids: tuple[int, ...]
    due: float  # earliest due time of the merged tasks (epoch seconds)
    tasks: tuple[InspectionTask, ...]

    @property
    def joint(self) -> bool:
        return len(self.departments) > 1


@dataclass(frozen=True, slots=True)
class SpotEntity:
    entity_id: str
    kind: str
    township: str
    tier: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Inspector:
    code: str
    name: str
    department: str


@dataclass(frozen=True, slots=True)
class SpotCheck:
    check_id: str
    month: str
    item_id: int
    entity_id: str
    kind: str
    township: str
    tier: str
    rate: float
    lead: str
    inspectors: tuple[Inspector, Inspector]
    entity_name: str = ""

    def as_tasks(self, due: float | datetime) -> list[InspectionTask]:
        """One task per inspecting department, ready for :func:`merge_tasks`."""
        depts = dict.fromkeys(i.department for i in self.inspectors)
        return [
            InspectionTask(f"{self.check_id}:{d}", self.entity_id, d, due, self.item_id, "spot_check", self.check_id)
            for d in depts
        ]


# --- joint inspections ------------------------------------------------------------------------------
def merge_tasks(
    tasks: Iterable[InspectionTask], window: float | timedelta, catalog: Catalog | None = None
) -> list[JointInspection]:
    """Merge each entity's tasks whose due times fall within ``window`` of the cluster's first task.

    When two or more departments take part, the lead is the lead department of the tasks' item
    (the most frequent item lead; ties → the earliest task's), and it joins even if it had no task;
    tasks without an item are led by the department of the earliest task. One department's own
    tasks stay its own (merged, not joint). Output is sorted by due time, then entity.
    """
    catalog = catalog or load_catalog()
    win = window.total_seconds() if isinstance(window, timedelta) else float(window)
    if win < 0:
        raise ValueError("window must be >= 0")
    by_entity: dict[str, list[InspectionTask]] = {}
    for t in tasks:
        if t.department not in catalog.departments:
            raise ValueError(f"task {t.task_id}: unknown department code {t.department!r}")
        if t.item_id is not None and t.item_id not in catalog.items:
            raise ValueError(f"task {t.task_id}: unknown supervision item {t.item_id!r}")
        by_entity.setdefault(t.entity_id, []).append(t)
    out: list[JointInspection] = []
    for entity_id, ts in by_entity.items():
        ts.sort(key=lambda t: (_ts(t.due), t.task_id))
        cluster: list[InspectionTask] = []
        for t in ts:
            if cluster and _ts(t.due) > _ts(cluster[0].due) + win:
                out.append(_joint(entity_id, cluster, catalog))
                cluster = []
            cluster.append(t)
        if cluster:
            out.append(_joint(entity_id, cluster, catalog))
    out.sort(key=lambda j: (j.due, j.entity_id))
    return out


def _joint(entity_id: str, tasks: list[InspectionTask], catalog: Catalog) -> JointInspection:
    leads = [catalog.items[t.item_id].lead for t in tasks if t.item_id is not None]
    if len({t.department for t in tasks}) == 1:  # one department's own visit(s): not a joint inspection
        lead = tasks[0].department
    elif leads:
        counts = Counter(leads)
        top = max(counts.values())
        lead = next(x for x in leads if counts[x] == top)  # earliest among the most frequent
    else:
        lead = tasks[0].department
    depts = [lead, *dict.fromkeys(t.department for t in tasks if t.department != lead)]
    items = tuple(dict.fromkeys(t.item_id for t in tasks if t.item_id is not None))
    digest = hashlib.blake2b("|".join(sorted(t.task_id for t in tasks)).encode(), digest_size=6).hexdigest()
    return JointInspection(
        inspection_id=f"JI-{digest}",
        entity_id=entity_id,
        lead=lead,
        departments=tuple(depts),
        item_ids=items,
        due=_ts(tasks[0].due),
        tasks=tuple(tasks),
    )


# --- 双随机、一公开 -----------------------------------------------------------------------------------
class SpotCheckPlanner:
    """Draws monthly spot checks; holds the validated config and the catalog."""

    def __init__(self, config: SpotCheckConfig, catalog: Catalog):
        self.config = config
        self.catalog = catalog
        for dept in config.rosters:
            if dept not in catalog.departments:
                raise _Ref(
                    ("rosters", dept), f"unknown department code {dept!r}; known: {', '.join(catalog.departments)}"
                )
        for item in catalog.items_list:
            if not config.rosters.get(item.lead):
                raise _Ref(
                    ("rosters",), f"item {item.id} ({item.code}): lead department {item.lead!r} has no inspector roster"
                )
            if not self._partners(item):
                raise _Ref(
                    ("rosters",),
                    f"item {item.id} ({item.code}): none of the cooperating departments "
                    f"{', '.join(item.cooperating)} has an inspector roster",
                )

    def _partners(self, item) -> list[str]:
        return [d for d in item.cooperating if d != item.lead and self.config.rosters.get(d)]

    def _roster(self, dept: str) -> list[Inspector]:
        return [Inspector(p.code, p.name, dept) for p in self.config.rosters[dept]]

    def tier_for(self, entity_id: str) -> str:
        """A deterministic tier from the entity id and ``default_tier_mix`` (simulation only)."""
        mix = self.config.default_tier_mix or {t: 1.0 / len(self.config.tiers) for t in self.config.tiers}
        h = int.from_bytes(hashlib.blake2b(f"tier:{entity_id}".encode(), digest_size=8).digest(), "big") / 2**64
        acc = 0.0
        for tier, share in mix.items():
            acc += share
            if h < acc:
                return tier
        return list(mix)[-1]

    def draw(self, entities: Sequence[SpotEntity], month: str, seed: int | str) -> list[SpotCheck]:
        if not MONTH_RE.match(month):
            raise ValueError(f"month must be YYYY-MM, got {month!r}")
        for e in entities:
            if e.kind not in self.catalog.entity_kinds:
                raise ValueError(f"entity {e.entity_id}: unknown entity kind {e.kind!r}")
            if e.tier not in self.config.tiers:
                raise ValueError(
                    f"entity {e.entity_id}: unknown credit tier {e.tier!r}; known: {', '.join(self.config.tiers)}"
                )
        rng = random.Random(f"{seed}-{month}")
        out: list[SpotCheck] = []
        for item in sorted(self.catalog.items_list, key=lambda i: i.id):
            pop = [e for e in entities if e.kind in item.objects]
            partners = self._partners(item)
            lead_roster = self._roster(item.lead)
            for tier_code, tier in self.config.tiers.items():
                stratum = sorted((e for e in pop if e.tier == tier_code), key=lambda e: e.entity_id)
                if self.config.method == "proportion":
                    k = min(len(stratum), math.ceil(tier.rate * len(stratum) - 1e-9))
                    chosen = sorted(rng.sample(stratum, k), key=lambda e: e.entity_id)
                else:
                    chosen = [e for e in stratum if rng.random() < tier.rate]
                for e in chosen:
                    first = rng.choice(lead_roster)
                    second = rng.choice(self._roster(rng.choice(partners)))
                    out.append(
                        SpotCheck(
                            check_id=f"SC{month.replace('-', '')}-{item.id:02d}-{len(out) + 1:05d}",
                            month=month,
                            item_id=item.id,
                            entity_id=e.entity_id,
                            kind=e.kind,
                            township=e.township,
                            tier=tier_code,
                            rate=tier.rate,
                            lead=item.lead,
                            inspectors=(first, second),
                            entity_name=e.name,
                        )
                    )
        return out

    def summary(self, entities: Sequence[SpotEntity], checks: Sequence[SpotCheck]) -> list[dict]:
        """Rows per item × tier: population, drawn, target rate and drawn share."""
        drawn = Counter((c.item_id, c.tier) for c in checks)
        rows = []
        for item in sorted(self.catalog.items_list, key=lambda i: i.id):
            pop = Counter(e.tier for e in entities if e.kind in item.objects)
            for t, tier in self.config.tiers.items():
                n, k = pop.get(t, 0), drawn.get((item.id, t), 0)
                rows.append(
                    {
                        "item_id": item.id,
                        "item_code": item.code,
                        "item_name": item.name,
                        "tier": t,
                        "population": n,
                        "drawn": k,
                        "rate": tier.rate,
                        "share": k / n if n else 0.0,
                    }
                )
        return rows


# --- the live registry ------------------------------------------------------------------------------
# Active entities of the registry (名录库, FINAL) with their latest official tier (信用风险分类结果 by
# 认定日期, from the credit table; '' when none: the planner's ``untiered`` applies).
LIVE_ENTITIES_SQL = """SELECT r.entity_id AS entity_id, r.kind AS kind, r.township AS township, r.name AS name,
    t.tier AS tier
FROM (SELECT entity_id, kind, township, name FROM {db}.registry FINAL WHERE status = 'active') AS r
LEFT JOIN (
    SELECT entity_id, argMax(tier, listed_on) AS tier FROM {db}.credit FINAL
    WHERE kind = 'tier' AND removed_on IS NULL GROUP BY entity_id
) AS t ON r.entity_id = t.entity_id
ORDER BY entity_id"""


def live_entities(rows: Iterable[dict], planner: SpotCheckPlanner) -> tuple[list[SpotEntity], int]:
    """The draw's entities from :data:`LIVE_ENTITIES_SQL` rows, and how many had no official tier (they
    take ``untiered``); entities of kinds the catalog does not know are left out (no item covers them).

    >>> p = load_spot_checks()
    >>> ents, n = live_entities([{"entity_id": "E1", "kind": "catering", "township": "舞泉镇", "name": "x",
    ...                           "tier": ""}, {"entity_id": "E2", "kind": "catering", "township": "舞泉镇",
    ...                           "name": "y", "tier": "D"}], p)
    >>> [(e.entity_id, e.tier) for e in ents], n
    ([('E1', 'B'), ('E2', 'D')], 1)
    """
    out, untiered = [], 0
    tiers = planner.config.tiers
    for r in rows:
        if r["kind"] not in planner.catalog.entity_kinds:
            continue
        tier = str(r.get("tier") or "").strip().upper()
        if tier not in tiers:
            tier, untiered = planner.config.untiered, untiered + 1
        out.append(
            SpotEntity(str(r["entity_id"]), str(r["kind"]), str(r["township"] or ""), tier, str(r["name"] or ""))
        )
    return out, untiered


@dataclass(frozen=True, slots=True)
class TierRate:
    """One tier over all items: entity × item pairs in its strata, drawn, the data's rate, the achieved share."""

    tier: str
    population: int
    drawn: int
    rate: float

    @property
    def achieved(self) -> float:
        return self.drawn / self.population if self.population else 0.0


def tier_rates(
    planner: SpotCheckPlanner, entities: Sequence[SpotEntity], checks: Sequence[SpotCheck]
) -> list[TierRate]:
    """Per tier, the draw's achieved rate against the rate of the data (spot_checks.yaml ``tiers``).

    >>> p = load_spot_checks()
    >>> ents = [SpotEntity(f"E{i:03d}", "retail_pharmacy", "舞泉镇", "C") for i in range(10)]
    >>> [(t.tier, t.population, t.drawn, t.rate) for t in tier_rates(p, ents, p.draw(ents, "2026-12", 1))][2]
    ('C', 10, 3, 0.3)
    """
    rows = planner.summary(entities, checks)
    out = []
    for t, tier in planner.config.tiers.items():
        mine = [r for r in rows if r["tier"] == t]
        out.append(TierRate(t, sum(r["population"] for r in mine), sum(r["drawn"] for r in mine), tier.rate))
    return out


def draw_spot_checks(
    entities: Sequence[SpotEntity],
    month: str,
    seed: int | str,
    planner: SpotCheckPlanner | None = None,
    catalog: Catalog | None = None,
) -> list[SpotCheck]:
    """Draw the month's 双随机 spot checks (same entities, month and seed → the same list)."""
    planner = planner or load_spot_checks(catalog=catalog)
    return planner.draw(entities, month, seed)


# --- CSV --------------------------------------------------------------------------------------------
CSV_HEADERS = [
    "抽查编号",
    "月份",
    "事项ID",
    "事项代码",
    "事项名称",
    "主体ID",
    "主体名称",
    "主体类型代码",
    "主体类型",
    "乡镇",
    "信用等级",
    "抽查比例",
    "牵头单位代码",
    "牵头单位",
    "检查人员1代码",
    "检查人员1",
    "检查人员1单位代码",
    "检查人员1单位",
    "检查人员2代码",
    "检查人员2",
    "检查人员2单位代码",
    "检查人员2单位",
]


def spot_checks_csv(checks: Sequence[SpotCheck], catalog: Catalog) -> str:
    """The published list (一公开): Chinese headers, codes next to names."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADERS)
    for c in checks:
        item = catalog.items[c.item_id]
        a, b = c.inspectors
        w.writerow(
            [
                c.check_id,
                c.month,
                c.item_id,
                item.code,
                item.name,
                c.entity_id,
                c.entity_name,
                c.kind,
                catalog.entity_kinds[c.kind].name,
                c.township,
                c.tier,
                f"{c.rate:.0%}",
                c.lead,
                catalog.dept_name(c.lead),
                a.code,
                a.name,
                a.department,
                catalog.dept_name(a.department),
                b.code,
                b.name,
                b.department,
                catalog.dept_name(b.department),
            ]
        )
    return buf.getvalue()


def write_spot_checks_csv(checks: Sequence[SpotCheck], path: Path | str, catalog: Catalog) -> Path:
    """Write UTF-8 with BOM so spreadsheet programs show the Chinese correctly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(spot_checks_csv(checks, catalog), encoding="utf-8-sig")
    return path


def read_entities_csv(path: Path | str, planner: SpotCheckPlanner) -> list[SpotEntity]:
    """Entities from a CSV with columns entity_id,kind,township,tier[,name]; an empty tier is
    assigned deterministically (:meth:`SpotCheckPlanner.tier_for`). Errors name the line."""
    path = Path(path)
    out: list[SpotEntity] = []
    with path.open(encoding="utf-8-sig", newline="") as f:
        r = csv.DictReader(f)
        missing = {"entity_id", "kind", "township", "tier"} - set(r.fieldnames or ())
        if missing:
            raise PlanningError(
                f"{path.name}: missing column(s) {', '.join(sorted(missing))}; "
                "expected entity_id,kind,township,tier[,name]"
            )
        for row in r:
            line = r.line_num
            eid, kind = (row["entity_id"] or "").strip(), (row["kind"] or "").strip()
            tier = (row["tier"] or "").strip().upper()
            if not eid:
                raise PlanningError(f"{path.name} line {line}: empty entity_id")
            if kind not in planner.catalog.entity_kinds:
                raise PlanningError(
                    f"{path.name} line {line} (kind): unknown entity kind {kind!r}; "
                    f"known: {', '.join(planner.catalog.entity_kinds)}"
                )
            if tier and tier not in planner.config.tiers:
                raise PlanningError(
                    f"{path.name} line {line} (tier): unknown credit tier {tier!r}; "
                    f"known: {', '.join(planner.config.tiers)}"
                )
            out.append(
                SpotEntity(
                    eid,
                    kind,
                    (row["township"] or "").strip(),
                    tier or planner.tier_for(eid),
                    (row.get("name") or "").strip(),
                )
            )
    return out


# --- loading ----------------------------------------------------------------------------------------
class _Ref(PlanningError):
    def __init__(self, loc: tuple, msg: str):
        super().__init__(msg)
        self.loc = loc


def load_spot_checks(path: Path | str | None = None, catalog: Catalog | None = None) -> SpotCheckPlanner:
    path = Path(path) if path else DEFAULT_SPOT_CHECKS_PATH
    catalog = catalog or load_catalog()
    raw, lines = load_yaml_with_lines(path, PlanningError)
    raw = raw or {}

    def where(loc: tuple) -> str:
        return f"{path.name} line {_line_for(lines, loc)} ({'.'.join(map(str, loc)) or '<top>'})"

    try:
        config = SpotCheckConfig.model_validate(raw)
    except ValidationError as e:
        raise PlanningError(
            "invalid spot-check file:\n  "
            + "\n  ".join(f"{where(tuple(err['loc']))}: {err['msg']}" for err in e.errors())
        ) from None
    try:
        return SpotCheckPlanner(config, catalog)
    except _Ref as e:
        raise PlanningError(f"invalid spot-check file:\n  {where(e.loc)}: {e}") from None


def _ts(t: float | datetime) -> float:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            from zoneinfo import ZoneInfo

            t = t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
        return t.timestamp()
    return float(t)
