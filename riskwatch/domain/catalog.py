"""The supervision catalog: departments (Annex 1), entity kinds, key supervision items (Annex 2).

Loaded from YAML data (``riskwatch/data/catalog.yaml`` by default) and validated with pydantic at
start-up. Errors name the file, line and field, e.g.::

    catalog.yaml line 87 (items.3.lead): unknown department code 'xx'; known: amr, approval, ...

>>> cat = load_catalog()
>>> [i.id for i in cat.items_for_kind("medical_institution")]
[3, 6]
>>> sorted(cat.receivers(3))
['amr', 'medinsure']
>>> cat.departments["amr"].name
'县市场监管局'
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riskwatch.settings import DATA_DIR

Code = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")


class Department(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Code
    name: str = Field(min_length=1, description="Chinese name shown to users")
    seated_at: str | None = Field(None, description="Department that hosts this office, if any")


class EntityKind(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Code
    name: str = Field(min_length=1)


MANUAL_ELEMENTS = (
    ("implementing_body", "实施主体"),
    ("legal_basis", "设定依据"),
    ("measures", "监管措施"),
    ("standards", "规则标准"),
    ("procedure", "监管程序"),
    ("complaint_channel", "咨询投诉渠道"),
)
"""The six elements of §二(三), in the order the work plan names them: (field, Chinese label)."""


class ManualElement(BaseModel):
    """One element's text, and what the county must still confirm about it (shown as 待县确认)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = ""
    confirm: str = Field("", description="What the county must confirm; empty: nothing open")


class Duty(BaseModel):
    """A department of 实施主体 and what it does for the item."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dept: str = Code
    duties: str = Field(min_length=1)


class ImplementingBody(BaseModel):
    """实施主体: the lead department and the cooperating ones, each with its duties."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lead: Duty
    cooperating: tuple[Duty, ...] = ()
    confirm: str = ""


def _element(v: object) -> object:
    return {"text": v} if isinstance(v, str) else v


class ServiceManual(BaseModel):
    """§二(三): what the county publishes per item. A plain string is accepted for an element (the
    catalog's blank placeholders); the content lives in ``riskwatch/data/manuals/<item_id>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    implementing_body: ImplementingBody | None = None
    legal_basis: ManualElement = ManualElement()
    measures: ManualElement = ManualElement()
    standards: ManualElement = ManualElement()
    procedure: ManualElement = ManualElement()
    complaint_channel: ManualElement = ManualElement()
    policy: str = Field("", description="政策解读: a short plain-Chinese explanation for the public")
    published: str = Field("", pattern=r"^(\d{4}-\d{2}-\d{2})?$", description="Date the data version took effect")

    @model_validator(mode="before")
    @classmethod
    def _strings(cls, raw: object) -> object:
        if isinstance(raw, dict):
            return {
                k: (_element(v) if k in dict(MANUAL_ELEMENTS) and k != "implementing_body" else v)
                for k, v in raw.items()
            }
        return raw

    def body_text(self, dept_name: Callable[[str], str]) -> str:
        """实施主体 as text: one line per department, lead first."""
        b = self.implementing_body
        if b is None:
            return ""
        lines = [f"{dept_name(b.lead.dept)}(牵头):{b.lead.duties}"]
        lines += [f"{dept_name(d.dept)}(配合):{d.duties}" for d in b.cooperating]
        return "\n".join(lines)

    def elements(self, dept_name: Callable[[str], str]) -> dict[str, ManualElement]:
        """The six elements as text + confirm marker, keyed by field (实施主体 rendered from its structure)."""
        b = self.implementing_body
        out = {"implementing_body": ManualElement(text=self.body_text(dept_name), confirm=b.confirm if b else "")}
        for key, _ in MANUAL_ELEMENTS[1:]:
            out[key] = getattr(self, key)
        return out


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: int = Field(ge=1)
    code: str = Code
    name: str = Field(min_length=1)
    field: Literal["food", "drug", "industrial", "special_equipment"]
    objects: tuple[str, ...] = Field(min_length=1, description="Entity kind codes this item supervises")
    main_task: str = ""
    lead: str = Field(description="Lead department code (牵头单位): exactly one")
    cooperating: tuple[str, ...] = Field(default=(), description="Cooperating department codes (配合单位)")
    level: str = "县级"
    manual: ServiceManual = ServiceManual()


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    departments_list: tuple[Department, ...] = Field(alias="departments", min_length=1)
    taskforce_office: str
    entity_kinds_list: tuple[EntityKind, ...] = Field(alias="entity_kinds", min_length=1)
    items_list: tuple[Item, ...] = Field(alias="items", min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> Catalog:
        depts = [d.code for d in self.departments_list]
        _no_dupes(depts, "departments", "code")
        _no_dupes([k.code for k in self.entity_kinds_list], "entity_kinds", "code")
        _no_dupes([i.id for i in self.items_list], "items", "id")
        _no_dupes([i.code for i in self.items_list], "items", "code")
        known, kinds = set(depts), {k.code for k in self.entity_kinds_list}
        if self.taskforce_office not in known:
            raise _RefError(("taskforce_office",), f"unknown department code {self.taskforce_office!r}")
        for n, item in enumerate(self.items_list):
            if item.lead not in known:
                raise _RefError(
                    ("items", n, "lead"), f"unknown department code {item.lead!r}; known: {', '.join(depts)}"
                )
            for m, c in enumerate(item.cooperating):
                if c not in known:
                    raise _RefError(
                        ("items", n, "cooperating", m), f"unknown department code {c!r}; known: {', '.join(depts)}"
                    )
            for m, o in enumerate(item.objects):
                if o not in kinds:
                    raise _RefError(
                        ("items", n, "objects", m), f"unknown entity kind {o!r}; known: {', '.join(sorted(kinds))}"
                    )
        return self

    # --- lookups ---------------------------------------------------------------------------------
    @cached_property
    def departments(self) -> dict[str, Department]:
        return {d.code: d for d in self.departments_list}

    @cached_property
    def entity_kinds(self) -> dict[str, EntityKind]:
        return {k.code: k for k in self.entity_kinds_list}

    @cached_property
    def items(self) -> dict[int, Item]:
        return {i.id: i for i in self.items_list}

    @cached_property
    def _by_kind(self) -> dict[str, tuple[Item, ...]]:
        out: dict[str, list[Item]] = {k: [] for k in self.entity_kinds}
        for item in self.items_list:
            for o in item.objects:
                out[o].append(item)
        return {k: tuple(v) for k, v in out.items()}

    def items_for_kind(self, kind: str) -> tuple[Item, ...]:
        """Items supervising this entity kind; empty for a kind the task-force office must assign."""
        return self._by_kind.get(kind, ())

    def receivers(self, item_id: int) -> tuple[str, ...]:
        """Lead first, then cooperating departments."""
        item = self.items[item_id]
        return (item.lead, *item.cooperating)

    def dept_name(self, code: str) -> str:
        return self.departments[code].name


class _RefError(ValueError):
    def __init__(self, loc: tuple, msg: str):
        super().__init__(msg)
        self.loc = loc


def _no_dupes(values: list, section: str, field: str) -> None:
    seen: dict = {}
    for n, v in enumerate(values):
        if v in seen:
            raise _RefError((section, n, field), f"duplicate {field} {v!r} (first at {section}.{seen[v]})")
        seen[v] = n


class CatalogError(ValueError):
    """Raised with every problem of a catalog file, each with its line number."""


def _line_index(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[path + (k.value,)] = k.start_mark.line + 1
            _line_index(v, path + (k.value,), out)
            out[path + (k.value,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for n, v in enumerate(node.value):
            _line_index(v, path + (n,), out)
    return out


def _line_for(lines: dict[tuple, int], loc: tuple) -> int:
    loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def load_yaml_with_lines(path: Path, error_cls: type[Exception] = ValueError) -> tuple[object, dict[tuple, int]]:
    """Parse a YAML data file; return its content and a map from key path to line number, so a
    validation error can name the line (shared by catalog, routing, lifecycle and planning data)."""
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error_cls(f"{path}: not valid YAML: {e}") from None
    return raw, (_line_index(node) if node is not None else {})


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load and validate a catalog file; raise :class:`CatalogError` naming line and field."""
    path = Path(path) if path else DATA_DIR / "catalog.yaml"
    raw, lines = load_yaml_with_lines(path, CatalogError)
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = tuple(err["loc"])
            ctx = (err.get("ctx") or {}).get("error")
            if isinstance(ctx, _RefError):
                loc, msg = ctx.loc, str(ctx)
            else:
                msg = err["msg"]
            dotted = ".".join(str(p) for p in loc) or "<top>"
            msgs.append(f"{path.name} line {_line_for(lines, loc)} ({dotted}): {msg}")
        raise CatalogError("invalid supervision catalog:\n  " + "\n  ".join(msgs)) from None
    manuals = path.parent / "manuals"
    return with_manuals(catalog, manuals) if manuals.is_dir() else catalog


def load_manual(path: Path, catalog: Catalog) -> tuple[int, ServiceManual]:
    """One ``manuals/<item_id>.yaml``: validated, and its 实施主体 checked against the item's lead and
    cooperating departments in the catalog (the manual may not name other ones)."""
    raw, lines = load_yaml_with_lines(path, CatalogError)
    if not isinstance(raw, dict) or not isinstance(raw.get("item"), int):
        raise CatalogError(f"{path.name} line 1: a manual file starts with 'item: <item id>'")
    item = catalog.items.get(raw["item"])
    if item is None or path.stem != str(raw["item"]):
        raise CatalogError(
            f"{path.name} line {_line_for(lines, ('item',))}: item {raw['item']} is not in the "
            f"catalog or does not match the file name"
        )
    try:
        manual = ServiceManual.model_validate({k: v for k, v in raw.items() if k != "item"})
    except ValidationError as e:
        msgs = [
            f"{path.name} line {_line_for(lines, tuple(err['loc']))} ({'.'.join(str(p) for p in err['loc'])}): "
            f"{err['msg']}"
            for err in e.errors()
        ]
        raise CatalogError("invalid service manual:\n  " + "\n  ".join(msgs)) from None
    b = manual.implementing_body
    if b is not None and (b.lead.dept != item.lead or {d.dept for d in b.cooperating} != set(item.cooperating)):
        raise CatalogError(
            f"{path.name} line {_line_for(lines, ('implementing_body',))}: 实施主体 must name the catalog's lead "
            f"{item.lead!r} and exactly its cooperating departments {list(item.cooperating)}"
        )
    return item.id, manual


def with_manuals(catalog: Catalog, directory: Path) -> Catalog:
    """The catalog with each item's manual replaced by ``directory/<item_id>.yaml`` where that file exists."""
    found = dict(load_manual(p, catalog) for p in sorted(directory.glob("*.yaml")))
    if not found:
        return catalog
    items = tuple(i.model_copy(update={"manual": found[i.id]}) if i.id in found else i for i in catalog.items_list)
    # validated anew rather than model_copy'd: the lookups are cached properties of the old instance
    return Catalog.model_validate(
        {
            "departments": catalog.departments_list,
            "taskforce_office": catalog.taskforce_office,
            "entity_kinds": catalog.entity_kinds_list,
            "items": items,
        }
    )
