"""联合信用监管: an entity's official credit status and the measures its listings call for.

The official records (``events.credit``, imported with ``riskwatch import credit``; the ``credit``
table, one row per tier determination or listing, read with FINAL) give an entity

* its official tier (官方信用等级): the latest 信用风险分类结果 (A–D) by 认定日期;
* its listings (经营异常名录, 严重违法失信名单): active while ``removed_on`` is empty; a repair
  (信用修复) sets ``removed_on`` and the 移出原因, and the listing stays in the history.

The measures of each list (联合惩戒: per department, what it restricts) are data,
``riskwatch/data/credit.yaml``; a measure marked ``confirm`` is an assumption the county confirms
(待县确认). Every alert about a listed entity reminds its receiving departments of their measures:
:func:`reminder_text` is looked up when the alert is shown (web) or notified (notify bridge), from
the ``credit`` table, so the engine holds no credit state.

>>> from datetime import date
>>> cfg = load_credit()
>>> rows = [CreditRow("serious_list", "", date(2026, 3, 1), None, "提供虚假材料", "", "县市场监管局"),
...         CreditRow("tier", "C", date(2026, 1, 5), None, "", "", "县市场监管局"),
...         CreditRow("abnormal_list", "", date(2025, 4, 1), date(2025, 9, 1), "已补报年报", "未按期年报", "")]
>>> st = CreditStatus.of(rows)
>>> st.tier, [x.kind for x in st.active], [x.kind for x in st.history]
('C', ['serious_list'], ['serious_list', 'abnormal_list'])
>>> print(reminder_text(st, cfg, "drc"))
【联合惩戒提醒】该主体在严重违法失信名单(2026-03-01 列入,县市场监管局):限制参加政府采购、工程招投标(待县确认)
>>> reminder_text(st, cfg, "police")
''
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from riskwatch.settings import DATA_DIR

CREDIT_PATH = DATA_DIR / "credit.yaml"
LIST_KINDS = ("abnormal_list", "serious_list")

# the credit records of one entity (web: bound parameter %(e)s)
ENTITY_SQL = """SELECT kind, tier, listed_on, removed_on, reason, listed_reason, authority
FROM {db}.credit FINAL WHERE entity_id = %(e)s ORDER BY listed_on DESC, kind LIMIT 200"""


@dataclass(frozen=True, slots=True)
class Measure:
    department: str  # a catalog department code, or the name of a body outside riskwatch
    restricts: str
    basis: str = ""
    confirm: bool = False  # 待县确认: an assumption


@dataclass(frozen=True, slots=True)
class CreditList:
    kind: str
    name: str
    measures: tuple[Measure, ...]

    def for_department(self, dept: str) -> tuple[Measure, ...]:
        return tuple(m for m in self.measures if m.department == dept)


@dataclass(frozen=True, slots=True)
class CreditConfig:
    tiers: Mapping[str, str]  # tier -> Chinese name
    lists: Mapping[str, CreditList]

    def list_name(self, kind: str) -> str:
        return self.lists[kind].name if kind in self.lists else kind


@cache
def load_credit(path: Path = CREDIT_PATH) -> CreditConfig:
    """The lists and their measures (``riskwatch/data/credit.yaml``); an unknown list kind is an error."""
    d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    lists = {}
    for kind, spec in (d.get("lists") or {}).items():
        if kind not in LIST_KINDS:
            raise ValueError(f"{path.name}: unknown list {kind!r}; known: {', '.join(LIST_KINDS)}")
        ms = tuple(
            Measure(str(m["department"]), str(m["restricts"]), str(m.get("basis", "")), bool(m.get("confirm", False)))
            for m in spec.get("measures") or ()
        )
        lists[kind] = CreditList(kind, str(spec["name"]), ms)
    return CreditConfig({str(k): str(v) for k, v in (d.get("tiers") or {}).items()}, lists)


@dataclass(frozen=True, slots=True)
class CreditRow:
    """One row of the ``credit`` table (after FINAL)."""

    kind: str
    tier: str
    listed_on: date
    removed_on: date | None
    reason: str
    listed_reason: str
    authority: str

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> CreditRow:
        return cls(
            str(r["kind"]),
            str(r["tier"] or ""),
            _date(r["listed_on"]),
            _date(r["removed_on"]) if r.get("removed_on") else None,
            str(r.get("reason") or ""),
            str(r.get("listed_reason") or ""),
            str(r.get("authority") or ""),
        )

    @property
    def active(self) -> bool:
        return self.removed_on is None

    @property
    def why_listed(self) -> str:
        """列入原因: on a removal row it is kept in ``listed_reason`` (``reason`` is the 移出原因)."""
        return self.listed_reason if self.removed_on is not None else self.reason


def _date(v: Any) -> date:
    return v if isinstance(v, date) else date.fromisoformat(str(v)[:10])


@dataclass(frozen=True, slots=True)
class CreditStatus:
    """An entity's official tier (latest determination), its active listings and the listing history."""

    tier: str = ""
    tier_row: CreditRow | None = None
    active: tuple[CreditRow, ...] = ()
    history: tuple[CreditRow, ...] = ()  # every listing, latest first

    @classmethod
    def of(cls, rows: Iterable[CreditRow]) -> CreditStatus:
        rows = list(rows)
        tiers = sorted((r for r in rows if r.kind == "tier" and r.active), key=lambda r: r.listed_on)
        listings = sorted((r for r in rows if r.kind != "tier"), key=lambda r: r.listed_on, reverse=True)
        last = tiers[-1] if tiers else None
        return cls(
            tier=last.tier if last else "",
            tier_row=last,
            active=tuple(r for r in listings if r.active),
            history=tuple(listings),
        )

    @property
    def listed(self) -> bool:
        return bool(self.active)


@dataclass(frozen=True, slots=True)
class Reminder:
    """The measures one active listing calls for from one department."""

    listing: CreditRow
    list_name: str
    measures: tuple[Measure, ...]


def reminders(status: CreditStatus, cfg: CreditConfig, departments: Sequence[str]) -> list[Reminder]:
    """Per active listing and department (in ``departments`` order), that department's measures."""
    out = []
    for d in departments:
        for r in status.active:
            lst = cfg.lists.get(r.kind)
            ms = lst.for_department(d) if lst else ()
            if ms:
                out.append(Reminder(r, cfg.list_name(r.kind), ms))
    return out


def reminder_text(status: CreditStatus, cfg: CreditConfig, department: str) -> str:
    """One line per active listing naming ``department``'s measures; '' when it has none."""
    lines = []
    for rm in reminders(status, cfg, [department]):
        r = rm.listing
        what = ";".join(m.restricts + ("(待县确认)" if m.confirm else "") for m in rm.measures)
        who = f",{r.authority}" if r.authority else ""
        lines.append(f"【联合惩戒提醒】该主体在{rm.list_name}({r.listed_on.isoformat()} 列入{who}):{what}")
    return "\n".join(lines)


@dataclass
class CreditLookup:
    """An entity's :class:`CreditStatus` through ``query`` (SQL → rows), cached ``ttl`` seconds; a
    failing store gives empty statuses for ``retry`` seconds, without querying (the notifications go out
    without the reminder, reported to ``on_error``). For the notify bridge, which reads the store per revision.

    >>> calls = []
    >>> def q(sql):
    ...     calls.append(sql)
    ...     return [{"kind": "serious_list", "tier": "", "listed_on": "2026-03-01", "removed_on": None,
    ...              "reason": "x", "listed_reason": "", "authority": ""}]
    >>> lk = CreditLookup(q)
    >>> lk.status("E1").listed, lk.status("E1").listed, len(calls), lk.status("E'1").listed
    (True, True, 1, False)
    """

    query: Callable[[str], list[dict[str, Any]]]
    ttl: float = 300.0
    retry: float = 60.0
    on_error: Callable[[Exception], None] | None = None
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, CreditStatus]] = field(default_factory=dict)  # id -> (valid until, status)
    _down_until: float = 0.0

    def status(self, entity_id: str) -> CreditStatus:
        now = self.clock()
        hit = self._cache.get(entity_id)
        if hit is not None and now < hit[0]:
            return hit[1]
        if now < self._down_until:
            return CreditStatus()  # the store failed lately: no query (and no wait) per revision
        if not entity_id.replace("_", "").replace("-", "").replace(".", "").replace(":", "").isalnum():
            return CreditStatus()  # ids are [A-Za-z0-9_.:-]; anything else is not quoted into SQL
        sql = ENTITY_SQL.replace("%(e)s", f"'{entity_id}'")
        try:
            st = CreditStatus.of(CreditRow.from_row(r) for r in self.query(sql))
        except Exception as e:  # noqa: BLE001 — the store is optional for a notification
            if self.on_error is not None:
                self.on_error(e)
            self._down_until = now + self.retry
            return CreditStatus()
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[entity_id] = (now + self.ttl, st)
        return st
