"""The column mapping of one export layout, read from ``riskwatch/data/imports/<name>.yaml``.

A layout names the Chinese header of each field (``columns``), the headers a file must have
(``required``: a file missing one is refused before any row is read), the Chinese values mapped to
codes (``values``: 主体类型 → entity kind, 问题分类 → complaint category ...), static fields, the unit of a
bare number in a column (``units``: 额定压力(MPa) → MPa), and the headers whose values identify a row
(``identity``: its ``event_id`` is a uuid5 of them)::

    >>> lay = load_layout("complaints")
    >>> lay.name, lay.columns["ticket"], lay.values["category"]["食物中毒"]
    ('12345', '工单编号', 'food_poisoning')
    >>> lay.missing(["工单编号", "来电时间"])[:2]
    ['诉求内容', '被反映单位']

A file's header that differs from the layout's only in width or spacing (``额定压力（MPa）``,
``设定温度上限(°C)``, ``使用单位 `` with a trailing space) is the layout's header (:meth:`Layout.renames`)::

    >>> load_layout("devices").renames(["额定压力（MPa）", "设定温度上限(°C)", "设备编号"])
    {'额定压力（MPa）': '额定压力(MPa)', '设定温度上限(°C)': '设定温度上限(℃)'}
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from riskwatch.settings import DATA_DIR

LAYOUT_DIR = DATA_DIR / "imports"
KINDS = ("registry", "complaints", "inspections", "credit", "devices")


@dataclass(frozen=True, slots=True)
class Layout:
    name: str  # the source's layout name: source = import:<name>:<operator>
    kind: str  # registry | complaints | inspections | credit | devices
    title: str
    columns: Mapping[str, str]  # field -> header
    required: tuple[str, ...]  # headers
    identity: tuple[str, ...]  # headers
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # field -> {Chinese: code}
    static: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)  # field -> the unit of a bare number (devices' ratings)

    def missing(self, headers: Iterable[str]) -> list[str]:
        have = {h.strip() for h in headers if h}
        return [h for h in self.required if h not in have]

    def renames(self, headers: Iterable[str]) -> dict[str, str]:
        """File header → the layout's header, for the headers that match one only after normalising
        (NFKC: full-width brackets and letters, ℃ = °C; spaces removed)."""
        ours = {_norm(h): h for h in self.columns.values()}
        out = {}
        for h in headers:
            mine = ours.get(_norm(h))
            if h and mine is not None and mine != h:
                out[h] = mine
        return out


def _norm(header: str) -> str:
    return "".join(unicodedata.normalize("NFKC", header).split())


@cache
def load_layout(kind: str, directory: Path = LAYOUT_DIR) -> Layout:
    """The layout for ``kind`` (registry, complaints, inspections, credit, devices)."""
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}; choose one of {', '.join(KINDS)}")
    d = yaml.safe_load((directory / f"{kind}.yaml").read_text(encoding="utf-8"))
    return Layout(
        name=str(d["layout"]),
        kind=str(d["kind"]),
        title=str(d.get("title", "")),
        columns={str(k): str(v) for k, v in d["columns"].items()},
        required=tuple(str(h) for h in d["required"]),
        identity=tuple(str(h) for h in d["identity"]),
        values={str(f): {str(k): str(v) for k, v in m.items()} for f, m in (d.get("values") or {}).items()},
        static={str(k): str(v) for k, v in (d.get("static") or {}).items()},
        units={str(k): str(v) for k, v in (d.get("units") or {}).items()},
    )
