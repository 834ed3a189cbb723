"""Alert routing as data: which departments receive an alert, and why.

Base receivers are the catalog's lead + cooperating departments of the alert's supervision item
(lead first). Rules from ``riskwatch/data/routing.yaml`` add departments, evaluated in order like
Alertmanager routes (``continue: false`` stops evaluation). Pure: no I/O after loading.

>>> from riskwatch.domain.catalog import load_catalog
>>> router = load_routing(catalog=load_catalog())
>>> d = router.route(8, "special_equipment", "red", "舞泉镇")
>>> d.departments
['amr', 'emergency', 'police', 'fire', 'urban', 'taskforce']
>>> [r for dept, r in d.reasons if dept == "taskforce"]
['规则 red_to_taskforce:红色预警同时报送专班办公室']
>>> router.route(None, "catering", "yellow").departments
['taskforce']
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from riskwatch.domain.catalog import Catalog, _line_for, load_catalog, load_yaml_with_lines
from riskwatch.settings import DATA_DIR
from schemas.vocabulary import LEVELS

DEFAULT_ROUTING_PATH = DATA_DIR / "routing.yaml"


def _as_tuple(v):
    if v is None:
        return None
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    item: tuple[int | str, ...] | None = Field(None, description="Item ids or codes")
    unassigned: bool | None = Field(None, description="True: the entity kind has no item")
    level: tuple[str, ...] | None = None
    level_at_least: str | None = None
    township: tuple[str, ...] | None = None
    entity_kind: tuple[str, ...] | None = None

    @field_validator("item", "level", "township", "entity_kind", mode="before")
    @classmethod
    def _lists(cls, v):
        return _as_tuple(v)

    @field_validator("level")
    @classmethod
    def _levels(cls, v):
        for x in v or ():
            if x not in LEVELS:
                raise ValueError(f"unknown level {x!r}; known: {', '.join(LEVELS)}")
        return v

    @field_validator("level_at_least")
    @classmethod
    def _level_min(cls, v):
        if v is not None and v not in LEVELS:
            raise ValueError(f"unknown level {v!r}; known: {', '.join(LEVELS)}")
        return v


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str = Field(min_length=1, description="Chinese explanation")
    match: Match = Match()
    add: tuple[str, ...] = Field(min_length=1)
    continue_: bool = Field(True, alias="continue")


class CaseTransfer(BaseModel):
    """Where a suspected crime goes (行刑衔接): ``to`` always, ``also`` per suspected-crime flag
    (flags: ``violation:<code>``, ``violation:suspected_crime``, ``complaint:<category>``,
    ``food_poisoning_cluster``, ``unlicensed_equipment_injury``; see rules.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    to: tuple[str, ...] = Field(("police",), min_length=1)
    also: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    description: str = "涉嫌犯罪案件移送公安机关"

    def targets(self, flags) -> list[str]:
        out = list(self.to)
        for f in flags:
            for d in self.also.get(f, ()):
                if d not in out:
                    out.append(d)
        return out


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    also_other_items_of_kind: bool = True
    rules: tuple[Rule, ...] = ()
    case_transfer: CaseTransfer = Field(default_factory=CaseTransfer)


class RoutingError(ValueError):
    """A routing file that does not fit the catalog; the message names rule index and field."""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Receivers (lead first) and, for each, why: ``reasons`` holds (dept, Chinese reason) pairs,
    one per cause (a department added by a rule it already had lists both causes)."""

    item_id: int | None
    departments: list[str]
    reasons: list[tuple[str, str]] = field(default_factory=list)
    matched_rules: list[str] = field(default_factory=list)

    @property
    def lead(self) -> str:
        return self.departments[0]

    def reasons_for(self, dept: str) -> list[str]:
        return [r for d, r in self.reasons if d == dept]


class Router:
    """``Router(config, catalog).route(item_id, entity_kind, level, township)`` → :class:`RouteDecision`."""

    def __init__(self, config: RoutingConfig, catalog: Catalog):
        self.config = config
        self.catalog = catalog
        _check_refs(config, catalog)
        self._items_by_code = {i.code: i.id for i in catalog.items_list}

    def _item_ids(self, refs: tuple) -> set[int]:
        return {r if isinstance(r, int) else self._items_by_code[r] for r in refs}

    def matches(self, rule: Rule, item_id: int | None, entity_kind: str, level: str, township: str) -> bool:
        m = rule.match
        if m.item is not None and item_id not in self._item_ids(m.item):
            return False
        if m.unassigned is not None and m.unassigned != (item_id is None):
            return False
        if m.level is not None and level not in m.level:
            return False
        if m.level_at_least is not None and LEVELS.index(level) < LEVELS.index(m.level_at_least):
            return False
        if m.township is not None and township not in m.township:
            return False
        return m.entity_kind is None or entity_kind in m.entity_kind

    def route(self, item_id: int | None, entity_kind: str, level: str, township: str = "") -> RouteDecision:
        """Who receives an alert of ``level`` on an entity of ``entity_kind`` under ``item_id``.

        ``item_id=None`` takes the entity kind's first item; a kind without items is *unassigned*.
        """
        cat = self.catalog
        level = str(level)
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; known: {', '.join(LEVELS)}")
        if entity_kind and entity_kind not in cat.entity_kinds:
            raise ValueError(f"unknown entity kind {entity_kind!r}; known: {', '.join(cat.entity_kinds)}")
        kind_items = cat.items_for_kind(entity_kind) if entity_kind else ()
        if item_id is None and kind_items:
            item_id = kind_items[0].id
        if item_id is not None and item_id not in cat.items:
            raise ValueError(f"unknown supervision item {item_id!r}; known: {sorted(cat.items)}")

        depts: list[str] = []
        reasons: list[tuple[str, str]] = []

        def add(d: str, why: str) -> None:
            if d not in depts:
                depts.append(d)
            reasons.append((d, why))

        if item_id is not None:
            item = cat.items[item_id]
            add(item.lead, f"牵头单位:事项{item.id} {item.name}({item.code})")
            for c in item.cooperating:
                add(c, f"配合单位:事项{item.id} {item.name}({item.code})")
            if self.config.also_other_items_of_kind:
                for other in kind_items:
                    if other.id == item_id:
                        continue
                    for d in cat.receivers(other.id):
                        if d not in depts:
                            role = "牵头单位" if d == other.lead else "配合单位"
                            add(d, f"同类主体的其他监管事项{role}:事项{other.id} {other.name}({other.code})")

        matched: list[str] = []
        for rule in self.config.rules:
            if not self.matches(rule, item_id, entity_kind, level, township):
                continue
            matched.append(rule.name)
            for d in rule.add:
                add(d, f"规则 {rule.name}:{rule.description}")
            if not rule.continue_:
                break
        if not depts:  # no item and no rule: never drop an alert on the floor
            add(cat.taskforce_office, "兜底:无对应监管事项且无路由规则命中,报专班办公室(fallback)")
        return RouteDecision(item_id=item_id, departments=depts, reasons=reasons, matched_rules=matched)

    def explain_zh(self, decision: RouteDecision) -> list[str]:
        """One line per receiving department: code, Chinese name, every reason."""
        out = []
        for n, d in enumerate(decision.departments, 1):
            why = ";".join(decision.reasons_for(d))
            name = self.catalog.dept_name(d)
            pad = " " * max(0, 24 - sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in name))
            out.append(f"{n}. {d:<10} {name}{pad} ← {why}")
        return out


def _check_refs(config: RoutingConfig, catalog: Catalog) -> None:
    """Raise a _RefError-like RoutingError on the first unknown reference."""
    depts = list(catalog.departments)
    ids = set(catalog.items)
    codes = {i.code for i in catalog.items_list}
    kinds = set(catalog.entity_kinds)
    seen: dict[str, int] = {}
    for n, rule in enumerate(config.rules):
        if rule.name in seen:
            raise _Ref(("rules", n, "name"), f"duplicate rule name {rule.name!r} (first at rules.{seen[rule.name]})")
        seen[rule.name] = n
        for m, d in enumerate(rule.add):
            if d not in catalog.departments:
                raise _Ref(("rules", n, "add", m), f"unknown department code {d!r}; known: {', '.join(depts)}")
        for m, ref in enumerate(rule.match.item or ()):
            if (isinstance(ref, int) and ref not in ids) or (isinstance(ref, str) and ref not in codes):
                raise _Ref(
                    ("rules", n, "match", "item", m),
                    f"unknown item {ref!r}; known ids {sorted(ids)} or codes {', '.join(sorted(codes))}",
                )
        for m, k in enumerate(rule.match.entity_kind or ()):
            if k not in kinds:
                raise _Ref(
                    ("rules", n, "match", "entity_kind", m),
                    f"unknown entity kind {k!r}; known: {', '.join(sorted(kinds))}",
                )
    ct = config.case_transfer
    for m, d in enumerate(ct.to):
        if d not in catalog.departments:
            raise _Ref(
                ("case_transfer", "to", m),
                f"unknown department code {d!r} for case transfers; known: {', '.join(depts)}",
            )
    for flag, ds in ct.also.items():
        for m, d in enumerate(ds):
            if d not in catalog.departments:
                raise _Ref(
                    ("case_transfer", "also", flag, m),
                    f"unknown department code {d!r} for case transfers ({flag}); known: {', '.join(depts)}",
                )


class _Ref(RoutingError):
    def __init__(self, loc: tuple, msg: str):
        super().__init__(msg)
        self.loc = loc


def load_routing(path: Path | str | None = None, catalog: Catalog | None = None) -> Router:
    """Load, validate and check a routing file against the catalog; errors name line, rule and field."""
    path = Path(path) if path else DEFAULT_ROUTING_PATH
    catalog = catalog or load_catalog()
    raw, lines = load_yaml_with_lines(path, RoutingError)
    raw = raw or {}

    def where(loc: tuple) -> str:
        loc = tuple("continue" if p == "continue_" else p for p in loc)
        dotted = ".".join(str(p) for p in loc) or "<top>"
        return f"{path.name} line {_line_for(lines, loc)} ({dotted})"

    try:
        config = RoutingConfig.model_validate(raw)
    except ValidationError as e:
        msgs = [f"{where(tuple(err['loc']))}: {err['msg']}" for err in e.errors()]
        raise RoutingError("invalid routing file:\n  " + "\n  ".join(msgs)) from None
    try:
        return Router(config, catalog)
    except _Ref as e:
        raise RoutingError(f"invalid routing file:\n  {where(e.loc)}: {e}") from None
