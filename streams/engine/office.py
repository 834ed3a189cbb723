"""The task-force office's own records (专班办公室): 研判 decisions, 议事会商, and the entity kinds it
defines (定性), as pure data the workbench writes and the worker applies.

Three things live here, each small:

- **Local kinds** (``kinds_local.yaml`` next to the catalog): a 定性 defines a new entity kind (or gives a kind
  without an item a home) with its lead and cooperating departments. Each definition is a *version* appended to
  the file (who, when, why); the latest version of a code wins. :func:`with_local_kinds` turns the catalog plus the
  file into a catalog with one local item per defined kind (ids from :data:`LOCAL_ITEM_BASE`), so the ordinary
  router sends the kind's alerts to its lead first. :class:`KindsWatch` re-reads the file when it changes and
  swaps the catalog and router of a running processor and decoder: effective at once, no restart.
- **Office records** (topic ``office.decisions``, keyed by the record id): a :class:`Judgement` (派发, 合并, 驳回,
  定性, 报市专班) or a :class:`Consultation` (议事会商: agenda, invitees, minutes, decisions). The worker's sink
  stores them in ClickHouse (``judgements``, ``consultations``, migration 17) with :func:`office_row`.
- **The office chain**: every record carries ``seq``, ``prev_hash`` and ``hash`` of the office's own audit chain
  (``schemas.audit.chain_hash`` over the same fields an alert's history row chains), so a removed or edited
  decision shows, like an alert's history.

>>> from riskwatch.domain.catalog import load_catalog
>>> base = load_catalog()
>>> k = LocalKind(code="pet_grooming", name="宠物美容店", lead="agri", cooperating=("amr",), version=1)
>>> cat = with_local_kinds(base, [k])
>>> [(i.id, i.lead, i.cooperating) for i in cat.items_for_kind("pet_grooming")]
[(101, 'agri', ('amr',))]
>>> with_local_kinds(base, [LocalKind(code="new_business", name="新业态", lead="commerce", version=1)]).items[101].lead
'commerce'
>>> j = seal(Judgement(judgement_id="J1", version=1, subject="alert", subject_id="A1", action="reject",
...          reason="重复线索", actor="taskforce/王五", at=datetime(2026, 12, 5, tzinfo=UTC)), 0, "")
>>> j.seq, len(j.hash), office_row(j.model_dump_json().encode())[0]
(1, 64, 'judgements')
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from riskwatch.domain.catalog import Catalog
from riskwatch.domain.routing import Router
from schemas.audit import chain_hash, chain_row
from schemas.privacy import mask_pii

OFFICE_TOPIC = "office.decisions"  # the office's own topic: only the office's principal (the workbench) writes it
# 报市专班: the referrals alone (masked by the city link on the way out: citylink_topics lists it); the city office
# answers with a task on events.task.city whose ref is the referral id
CITY_TOPIC = "office.city"
LOCAL_ITEM_BASE = 100  # a local kind's item id is LOCAL_ITEM_BASE + its position in the file (first version)
CHAIN_ID = "office"  # the office chain's id in chain_row (where an alert's chain has the alert id)
FIELDS = ("food", "drug", "industrial", "special_equipment")
ACTIONS = {"dispatch": "派发", "merge": "合并", "reject": "驳回", "define": "定性", "city": "报市专班"}


@dataclass(frozen=True, slots=True)
class LocalKind:
    """One version of a kind the office defined (定性)."""

    code: str
    name: str
    lead: str
    cooperating: tuple[str, ...] = ()
    field: str = "industrial"
    version: int = 1
    by: str = ""
    at: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "code": self.code,
            "name": self.name,
            "lead": self.lead,
            "cooperating": list(self.cooperating),
            "field": self.field,
            "by": self.by,
            "at": self.at,
            "reason": self.reason,
        }


def local_kinds_path(catalog_path: Path | str) -> Path:
    """Where the office's kinds live: ``kinds_local.yaml`` beside the catalog file."""
    return Path(catalog_path).with_name("kinds_local.yaml")


def load_versions(path: Path) -> list[LocalKind]:
    """Every version in the file, oldest first (an absent file: none)."""
    if not path.exists():
        return []
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for v in raw.get("versions") or []:
        out.append(
            LocalKind(
                code=str(v["code"]),
                name=str(v["name"]),
                lead=str(v["lead"]),
                cooperating=tuple(str(c) for c in v.get("cooperating") or ()),
                field=str(v.get("field") or "industrial"),
                version=int(v.get("version") or 1),
                by=str(v.get("by") or ""),
                at=str(v.get("at") or ""),
                reason=str(v.get("reason") or ""),
            )
        )
    return out


def current(versions: Iterable[LocalKind]) -> list[LocalKind]:
    """The latest version of each code, in the order codes were first defined (their item ids stay put)."""
    latest: dict[str, LocalKind] = {}
    for v in versions:
        latest[v.code] = v
    return list(latest.values())


HEADER = (
    "# 专班研判定性: entity kinds defined by the task-force office in the workbench (/taskforce/judge).\n"
    "# Each entry is one version (who, when, why); the latest version of a code is in force and becomes a\n"
    "# local supervision item (id 100 + position) with its lead and cooperating departments.\n"
    "# Written by the workbench, read by the worker at once (streams/engine/office.py); commit it like other data.\n"
)


def append_version(path: Path, kind: LocalKind, catalog: Catalog) -> LocalKind:
    """Check ``kind`` against the catalog, number it and append it to the file; returns the stored version.
    Raises ValueError (in Chinese, shown to the office) for a kind the catalog already gives an item."""
    base = [i for i in catalog.items_for_kind(kind.code) if i.id < LOCAL_ITEM_BASE]
    if base:
        raise ValueError(f"主体类别 {kind.code} 已有监管事项(事项{base[0].id}),不能重新定性")
    for d in (kind.lead, *kind.cooperating):
        if d not in catalog.departments:
            raise ValueError(f"未知部门 {d}")
    if kind.field not in FIELDS:
        raise ValueError(f"未知领域 {kind.field}")
    versions = load_versions(path)
    n = 1 + max((v.version for v in versions if v.code == kind.code), default=0)
    stored = LocalKind(**{**kind.as_dict(), "cooperating": kind.cooperating, "version": n})
    with_local_kinds(catalog, current([*versions, stored]))  # validates before anything is written
    doc = {"versions": [v.as_dict() for v in [*versions, stored]]}
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(HEADER + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return stored


def with_local_kinds(base: Catalog, kinds: Iterable[LocalKind]) -> Catalog:
    """``base`` plus each local kind (added to ``entity_kinds`` when new) and one local item per kind."""
    raw = base.model_dump(by_alias=True)
    raw["entity_kinds"], raw["items"] = list(raw["entity_kinds"]), list(raw["items"])
    known = {k["code"] for k in raw["entity_kinds"]}
    for n, k in enumerate(kinds, 1):
        if k.code not in known:
            raw["entity_kinds"].append({"code": k.code, "name": k.name})
            known.add(k.code)
        raw["items"].append(
            {
                "id": LOCAL_ITEM_BASE + n,
                "code": ("local_" + k.code)[:32],
                "name": f"{k.name}监管(专班定性 v{k.version})",
                "field": k.field,
                "objects": [k.code],
                "main_task": f"{k.name}的综合监管(专班办公室研判定性)",
                "lead": k.lead,
                "cooperating": [c for c in k.cooperating if c != k.lead],
                "level": "县级",
            }
        )
    return Catalog.model_validate(raw)


class _Processor(Protocol):
    @property
    def cx(self) -> Any: ...


class _Decoder(Protocol):
    context: dict[str, Any]


@dataclass(slots=True)
class KindsWatch:
    """Keeps a running processor's catalog and router (and its decoder's validation catalog) in step with
    ``kinds_local.yaml``: :meth:`refresh` looks at the file at most every ``every`` seconds and applies a change."""

    path: Path
    base: Catalog
    every: float = 0.5
    _seen: tuple[int, int] | None = None
    _checked: float = -1e9
    applied: int = 0
    clock: Any = field(default=time.monotonic)

    def refresh(self, processor: _Processor, decoder: _Decoder | None = None, force: bool = False) -> bool:
        now = self.clock()
        if not force and now - self._checked < self.every:
            return False
        self._checked = now
        try:
            s = self.path.stat()
            sig: tuple[int, int] | None = (s.st_mtime_ns, s.st_size)
        except FileNotFoundError:
            sig = None
        if sig == self._seen:
            return False
        self._seen = sig
        cat = with_local_kinds(self.base, current(load_versions(self.path))) if sig else self.base
        cx = processor.cx
        cx.catalog = cat
        cx.router = Router(cx.router.config, cat)
        if decoder is not None:
            decoder.context["catalog"] = cat
        self.applied += 1
        return True


_WATCHES: dict[int, KindsWatch] = {}


def watch(processor: _Processor, decoder: _Decoder | None, base: Catalog, catalog_path: Path | str) -> bool:
    """The runtime's one call per batch: apply a changed ``kinds_local.yaml`` to this processor."""
    w = _WATCHES.get(id(processor))
    if w is None:
        w = _WATCHES[id(processor)] = KindsWatch(local_kinds_path(catalog_path), base, every=0.0)
    return w.refresh(processor, decoder)


# --- office records ------------------------------------------------------------------------------------------


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(description="epoch ms: a later version of the same id replaces the row")
    actor: str = Field(max_length=64)
    at: datetime
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""


class Judgement(_Record):
    """One 研判 decision on one queue item."""

    type: Literal["judgement"] = "judgement"
    judgement_id: str = Field(max_length=80)
    subject: Literal["complaint", "entity", "alert", "dispute", "notice"]
    subject_id: str = Field(max_length=120)
    entity_id: str = Field("", max_length=120)
    action: Literal["dispatch", "merge", "reject", "define", "city"]
    departments: list[str] = Field(default_factory=list)
    target: str = Field("", max_length=200, description="merge: alert id; define: kind code; dispatch: task ids")
    reason: str = Field(max_length=2000)
    status: Literal["done", "awaiting_city", "city_answered"] = "done"
    answer: str = Field("", max_length=2000, description="报市专班: the city office's answer")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(max_length=500)
    department: str
    due: datetime
    task_id: str = ""


class Consultation(_Record):
    """One 议事会商: convened (agenda, invitees), then concluded (minutes, decisions that became tasks)."""

    type: Literal["consultation"] = "consultation"
    consultation_id: str = Field(max_length=80)
    title: str = Field(min_length=1, max_length=200)
    theme: str = Field("", max_length=500)
    alert_ids: list[str] = Field(default_factory=list)
    entity_ids: list[str] = Field(default_factory=list)
    departments: list[str] = Field(min_length=1)
    agenda: str = Field(max_length=4000)
    held_at: datetime
    status: Literal["convened", "concluded"] = "convened"
    minutes: str = Field("", max_length=8000)
    decisions: list[Decision] = Field(default_factory=list)


R = TypeVar("R", Judgement, Consultation)


def _chain_fields(r: Judgement | Consultation) -> tuple[str, str, str, str, str]:
    """(record id, entity, kind, status, comment) as they enter the chain."""
    if isinstance(r, Judgement):
        comment = f"{ACTIONS[r.action]} {','.join(r.departments)} {r.target} {r.reason} {r.answer}".strip()
        return r.judgement_id, r.entity_id, f"judge.{r.action}", r.status, mask_pii(comment)
    decided = ";".join(f"{d.department}:{d.text}@{d.due.isoformat()}" for d in r.decisions)
    comment = f"{r.title} {','.join(r.alert_ids)} {','.join(r.departments)} {decided}"
    return r.consultation_id, ",".join(r.entity_ids), "consult", r.status, mask_pii(comment)


def seal(r: R, prev_seq: int, prev_hash: str) -> R:
    """``r`` as link ``prev_seq + 1`` of the office chain after ``prev_hash``."""
    rid, entity, kind, status, comment = _chain_fields(r)
    seq = prev_seq + 1
    at_ms = int(round(r.at.timestamp() * 1000))
    row = chain_row(CHAIN_ID, seq, entity, at_ms, kind, rid, status, r.actor, comment)
    return r.model_copy(update={"seq": seq, "prev_hash": prev_hash, "hash": chain_hash(prev_hash, row)})


def verify(records: Iterable[Judgement | Consultation]) -> list[str]:
    """Problems of the office chain (records in seq order): a broken link or a hash that does not fit."""
    bad, prev = [], ""
    for n, r in enumerate(records, 1):
        again = seal(r, n - 1, prev) if isinstance(r, Judgement) else seal(r, n - 1, prev)
        if r.seq != n or r.prev_hash != prev or again.hash != r.hash:
            bad.append(f"office chain broken at seq {r.seq} ({type(r).__name__})")
        prev = r.hash
    return bad


def parse(value: bytes) -> Judgement | Consultation:
    """An ``office.decisions`` message."""
    if b'"consultation"' in value and b'"consultation_id"' in value:
        return Consultation.model_validate_json(value)
    return Judgement.model_validate_json(value)


def office_row(value: bytes) -> tuple[str, tuple[Any, ...]]:
    """(table, row) of an ``office.decisions`` message for the sink, in the order of ``sinks.rows.COLUMNS[table]``
    (free text masked)."""
    r = parse(value)
    if isinstance(r, Judgement):
        return "judgements", (
            r.judgement_id, r.version, r.seq, r.prev_hash, r.hash, r.subject, r.subject_id, r.entity_id, r.action,
            r.departments, r.target, mask_pii(r.reason), r.status, mask_pii(r.answer), r.actor, r.at,
        )  # fmt: skip
    decisions = [d.model_dump_json() for d in r.decisions]
    return "consultations", (
        r.consultation_id, r.version, r.seq, r.prev_hash, r.hash, r.title, mask_pii(r.theme), r.alert_ids,
        r.entity_ids, r.departments, mask_pii(r.agenda), r.held_at, r.status, mask_pii(r.minutes), decisions,
        r.actor, r.at,
    )  # fmt: skip


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
