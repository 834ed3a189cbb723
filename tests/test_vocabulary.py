"""One vocabulary (schemas/vocabulary.py): its contents, and that no other module keeps its own words.

The guard parses every product module with :mod:`ast` and fails on

* a module- or class-level name ending in ``_ZH`` or ``_LABELS`` bound to a literal dict, tuple, list
  or set (a label map of its own; importing one from the vocabulary is fine);
* any dict, tuple, list or set literal, at any depth, holding two or more of the vocabulary's
  Chinese labels as exact values (a label map under another name, e.g. an inline ``{...}.get(status)``);
* a module- or class-level tuple or list literal holding three or more level codes (an order of
  levels of its own); ``Literal["blue", ...]`` type annotations are types, not orders, and pass;

and the templates (``web/templates``) on a quoted string that is one of the labels.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from schemas import events
from schemas import vocabulary as V
from schemas.vocabulary import (
    ALERT_STATUSES,
    DONE_STATUSES,
    LEVELS,
    LEVELS_DESC,
    OPEN_STATUSES,
    AlertStatus,
    Level,
    NoticeKind,
    TransferState,
    labels,
    zh,
)

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("schemas", "detectors", "riskwatch", "streams", "sinks", "dashboards", "reports", "web", "notify")
SKIP: tuple[str, ...] = ()
ENUMS = (Level, AlertStatus, NoticeKind, TransferState)
MAPS = {name: getattr(V, name) for name in V.__all__ if name.endswith("_ZH")}
# the labels whose repetition in a literal means a second vocabulary: those of the alert's codes, channels and
# events; the plain words of the other maps (状态, 部门, 周报, MPa, ...) also head tables and are caught by name only
EVENT_MAPS = (
    "FEEDBACK_ZH",
    "DEPARTMENT_ANSWER_ZH",
    "SENSOR_CHANNEL_ZH",
    "COMPLAINT_CHANNEL_ZH",
    "COMPLAINT_CATEGORY_ZH",
    "VIDEO_CLASS_ZH",
    "INSPECTION_OUTCOME_ZH",
    "SEVERITY_ZH",
)
LABELS = {m.zh for e in ENUMS for m in e} | {z for n in EVENT_MAPS for z in MAPS[n].values()}
LEVEL_CODES = {lv.value for lv in Level}


# --- the vocabulary itself -----------------------------------------------------------------------------
def test_one_label_per_status_and_the_orders():
    assert [s.zh for s in ALERT_STATUSES] == ["待确认", "待签收", "已签收", "处置中", "已解除", "已关闭"]
    assert [lv.zh for lv in LEVELS] == ["蓝色", "黄色", "橙色", "红色"] and LEVELS[::-1] == LEVELS_DESC
    assert [lv.rank for lv in LEVELS] == [0, 1, 2, 3]
    assert set(OPEN_STATUSES) | set(DONE_STATUSES) | {AlertStatus.pending} == set(AlertStatus)
    assert not set(OPEN_STATUSES) & set(DONE_STATUSES)


def test_members_are_strings_with_labels():
    assert Level("red") is Level.red and Level.red == "red" and f"{Level.red}" == "red" and "red" in LEVELS
    assert LEVELS.index("orange") == 2 and ", ".join(LEVELS) == "blue, yellow, orange, red"
    assert zh(Level, "red") == "红色" and zh(Level, "purple") == "purple" and zh(NoticeKind, "") == ""
    assert labels(AlertStatus)["firing"] == "待签收" and labels(AlertStatus) is labels(AlertStatus)
    for e in ENUMS:
        assert len({m.zh for m in e}) == len(e), f"{e.__name__}: two codes share a label"


def test_schemas_events_uses_the_vocabulary():
    assert events.Level is Level and events.AlertStatus is AlertStatus
    assert set(get_args(events.NotificationKind)) == {k.value for k in NoticeKind}


def test_label_maps_cover_their_enums():
    from web.users import ROLES

    assert set(V.SENSOR_CHANNEL_ZH) == {c.value for c in events.SensorChannel}
    assert set(V.COMPLAINT_CHANNEL_ZH) == {c.value for c in events.ComplaintChannel}
    assert set(V.COMPLAINT_CATEGORY_ZH) == {c.value for c in events.ComplaintCategory}
    assert set(V.VIDEO_CLASS_ZH) == {c.value for c in events.VideoClass}
    assert set(V.INSPECTION_OUTCOME_ZH) == {c.value for c in events.InspectionOutcome}
    assert set(V.SEVERITY_ZH) == {c.value for c in events.Severity}
    assert set(V.FEEDBACK_ZH) == {c.value for c in events.FeedbackStatus}
    assert set(V.USER_ROLE_ZH) == set(ROLES)


def test_everything_is_immutable():
    for _name, m in MAPS.items():
        with pytest.raises(TypeError):
            m["x"] = "y"
    for t in (LEVELS, LEVELS_DESC, ALERT_STATUSES, OPEN_STATUSES, DONE_STATUSES, V.NOTICE_KINDS):
        assert isinstance(t, tuple)
    with pytest.raises(AttributeError):
        Level.red = "x"


def test_a_notification_title_reads_the_vocabulary():
    from notify.text import notification_text

    text = notification_text(
        kind="level_up",
        level="orange",
        title="t",
        entity_name="",
        entity_id="E1",
        township="",
        status="firing",
        ack_due=None,
        dispose_due=None,
        alert_id="a",
        revision=2,
        message="",
    )
    assert text.startswith(f"【{Level.orange.zh}预警·{NoticeKind.level_up.zh}】t")


# --- no second vocabulary ------------------------------------------------------------------------------
def product_files() -> list[Path]:
    out = []
    for top in PRODUCT:
        for p in sorted((ROOT / top).rglob("*.py")):
            rel = p.relative_to(ROOT).as_posix()
            if "__pycache__" not in p.parts and rel != "schemas/vocabulary.py" and not rel.startswith(SKIP):
                out.append(p)
    return out


def _strings(node: ast.AST) -> list[str]:
    """String constants that are values of a literal container: dict values, elements, nested containers."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Dict):
        return [s for v in node.values if v is not None for s in _strings(v)]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def _slices(tree: ast.AST) -> set[int]:
    """ids of the literals that are subscripts' slices (``Literal["blue", "red"]``: a type, not a map)."""
    return {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}


def _top_level_assignments(tree: ast.Module):
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for st in body:
            if isinstance(st, ast.Assign):
                names = [t.id for t in st.targets if isinstance(t, ast.Name)]
            elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                names = [st.target.id]
            else:
                continue
            yield st, names, st.value


def second_vocabularies(source: str, name: str = "<string>") -> list[str]:
    """Where ``source`` defines labels or a level order of its own: ``line: what`` per finding."""
    tree = ast.parse(source, name)
    found: list[str] = []
    for st, names, value in _top_level_assignments(tree):
        literal = isinstance(value, (ast.Dict, ast.Tuple, ast.List, ast.Set))
        for n in names:
            if literal and re.search(r"_(ZH|LABELS)$", n):
                found.append(f"{st.lineno}: {n} is a label map of its own")
        if isinstance(value, (ast.Tuple, ast.List)) and len(LEVEL_CODES & set(_strings(value))) >= 3:
            found.append(f"{st.lineno}: {', '.join(names)} is a level order of its own")
    slices = _slices(tree)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Dict, ast.Tuple, ast.List, ast.Set)) and id(node) not in slices:
            hits = sorted({s for s in _strings(node) if s in LABELS})
            if len(hits) >= 2:
                found.append(f"{node.lineno}: a literal with the vocabulary's labels {', '.join(hits)}")
    return sorted(set(found), key=lambda f: int(f.split(":")[0]))


def test_the_guard_finds_label_maps_and_level_orders():
    src = """
LEVEL_ZH = {"blue": "蓝色", "red": "红色"}
class X:
    STATUS_LABELS = ("a", "b")
ORDER = ("red", "orange", "yellow", "blue")
def f(s):
    return {"firing": "预警", "acknowledged": "已签收", "resolved": "已解除"}.get(s, s)
"""
    found = second_vocabularies(src)
    assert [f.split(":")[0] for f in found] == ["2", "2", "4", "5", "7"], found


def test_the_guard_passes_imports_types_and_prose():
    src = """
from schemas.vocabulary import USER_ROLE_ZH as ROLE_ZH
from typing import Literal
LevelName = Literal["blue", "yellow", "orange", "red"]
STATUS_ZH = labels(AlertStatus)
TITLE = "【红色预警·督促】 已签收"
pair = ("红色", "x")
"""
    assert second_vocabularies(src) == []


def test_no_other_module_defines_a_vocabulary():
    files = product_files()
    assert len(files) > 50 and ROOT / "web" / "deps.py" in files
    bad = [
        f"{p.relative_to(ROOT)}:{f}" for p in files for f in second_vocabularies(p.read_text(encoding="utf-8"), str(p))
    ]
    assert not bad, "define these in schemas/vocabulary.py and import them:\n" + "\n".join(bad)


def test_templates_take_labels_from_the_vocabulary():
    bad = []
    for p in sorted((ROOT / "web" / "templates").glob("*.html")):
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            for m in re.finditer(r"""['"]([^'"<>{}]{1,16})['"]""", line):
                if m[1] in LABELS:
                    bad.append(f"{p.relative_to(ROOT)}:{i}: {m[1]!r}")
    assert not bad, "use the template globals of web/deps.py (STATUS_ZH, LEVEL_ZH, ...):\n" + "\n".join(bad)
