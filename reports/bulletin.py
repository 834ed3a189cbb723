"""`riskwatch bulletin` — 情况通报: a weekly or monthly situation bulletin in Chinese, as HTML and PDF.

Mounted by the main CLI as ``app.add_typer(bulletin.app, name="bulletin")`` (options on the
callback, like ``simulate``)::

    riskwatch bulletin --period week|month [--dept CODE] [--out DIR] [--until 2026-12-01]

Content (all from ``alerts FINAL`` in ClickHouse, alerts first seen in the period): totals by
level, alerts by supervision item and by receiving department, the disposal rate, the list of
alerts still open past their disposal time limit (:data:`DISPOSAL_LIMIT_HOURS`), the top-risk
entities and the notable cases (red and orange alerts), with matplotlib charts; then the office's
supervision notes (督导单) sent in the period with their answers (``notices`` FINAL, kind supervision). The HTML embeds
the charts as PNG data URIs (one self-contained file to mail); the PDF is laid out by ReportLab.

Chinese glyphs need a CJK TrueType font, found by :func:`find_cjk_font`: by default WenQuanYi
Micro Hei from the ``paperang-p2-fonts-cjk`` package, a dependency installed with riskwatch itself
(the Noto Sans CJK packages on PyPI ship CFF outlines, which ReportLab cannot embed). It is embedded
(subset) in the PDF, so the PDF reads the same on any machine. Without such a font the PDF falls back to
ReportLab's built-in ``STSong-Light`` CID font, which is NOT embedded (a viewer without Adobe's Asian font
pack shows blanks) and the charts lose their Chinese labels: a warning says how to fix it.

Data access: embedded ``chdb://`` directories belong to one process; while a worker owns the
directory, run this from the server mode deployment or stop the worker first.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer

from schemas.vocabulary import (
    DONE_STATUSES,
    FALSE_ALARM_REASON_ZH,
    LEVELS_DESC,
    MEASURE_ZH,
    REPORT_PERIOD_ZH,
    VERDICT_ZH,
    AlertStatus,
    Level,
    NoticeState,
    zh,
)
from sinks.precision import table as precision_table

log = logging.getLogger(__name__)

CST = ZoneInfo("Asia/Shanghai")
LEVELS = LEVELS_DESC  # most severe first
LEVEL_COLOR = {"red": "#d62728", "orange": "#ff7f0e", "yellow": "#e6c200", "blue": "#1f77b4"}
DONE = frozenset(DONE_STATUSES)
# Disposal time limits (hours from first_seen) per level; an open alert older than this is overdue.
# The county sets these (no rule in the catalog yet): red 24 h, orange 3 days, yellow 7 days, blue 15 days.
DISPOSAL_LIMIT_HOURS = {"red": 24, "orange": 72, "yellow": 168, "blue": 360}
PERIOD_DAYS = {"week": 7, "month": 30}
UNASSIGNED_ITEM = "待专班研判"
SOURCE_NOTE = "数据来源：riskwatch 风险预警平台（ClickHouse alerts 表）；统计口径：本期首次预警的预警，状态截至"


def disposal_limits() -> str:
    """The disposal deadline of each level, as the bulletin states them (红色24小时、…)."""
    return "、".join(f"{lv.zh}{DISPOSAL_LIMIT_HOURS[lv]}小时" for lv in LEVELS)


PACKAGED_FONT = ("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc")  # (package, resource): a riskwatch dependency
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian/Ubuntu: fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",  # Fedora
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
    "C:/Windows/Fonts/simhei.ttf",
    "/System/Library/Fonts/STHeiti Medium.ttc",
)
FONT_HINT = (
    "reinstall riskwatch (`make install`), which brings the font package paperang-p2-fonts-cjk, "
    "or set BULLETIN_FONT to a TrueType CJK font"
)

QueryFn = Callable[[str], tuple[Sequence[str], Sequence[Sequence[Any]]]]


# --- period and data -------------------------------------------------------------------------------
def period_bounds(period: str, until: datetime | date | None = None) -> tuple[datetime, datetime]:
    """``[start, end)`` of the bulletin: the ``PERIOD_DAYS[period]`` days ending at ``until``
    (default: today's midnight, county time, so the bulletin covers whole days up to yesterday)."""
    if period not in PERIOD_DAYS:
        raise ValueError(f"period must be one of {', '.join(PERIOD_DAYS)}, got {period!r}")
    if until is None:
        end = datetime.combine(datetime.now(CST).date(), time(0), CST)
    elif isinstance(until, datetime):
        end = until if until.tzinfo else until.replace(tzinfo=CST)
    else:
        end = datetime.combine(until, time(0), CST)
    return end - timedelta(days=PERIOD_DAYS[period]), end


def _ts(d: datetime) -> str:
    return f"toDateTime64('{d.astimezone(CST):%Y-%m-%d %H:%M:%S}', 3, 'Asia/Shanghai')"


ALERT_COLUMNS = (
    "alert_id", "entity_id", "entity_name", "entity_kind", "township", "item_id", "item_name", "rule",
    "level", "status", "score", "title", "message", "lead_department", "departments", "first_seen", "updated_at",
)  # fmt: skip


def alerts_sql(start: datetime, end: datetime, dept: str | None, database: str = "riskwatch") -> str:
    """The one query of the bulletin: current state of every alert first seen in ``[start, end)``."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"bad database name {database!r}")
    where = f"first_seen >= {_ts(start)} AND first_seen < {_ts(end)}"
    if dept:
        if not dept.replace("_", "").isalnum():
            raise ValueError(f"bad department code {dept!r}")
        where += f" AND has(departments, '{dept}')"
    return f"SELECT {', '.join(ALERT_COLUMNS)} FROM {database}.alerts FINAL WHERE {where} ORDER BY first_seen, alert_id"


def fetch_alerts(
    query: QueryFn, start: datetime, end: datetime, dept: str | None = None, database: str = "riskwatch"
) -> list[dict]:
    cols, rows = query(alerts_sql(start, end, dept, database))
    out = []
    for r in rows:
        a = dict(zip(cols, r, strict=True))
        for k in ("first_seen", "updated_at"):
            v = a[k]
            a[k] = v.replace(tzinfo=CST) if v.tzinfo is None else v.astimezone(CST)
        out.append(a)
    return out


def outcomes_sql(start: datetime, end: datetime, database: str = "riskwatch") -> str:
    """The latest disposal outcome of each alert first seen in ``[start, end)`` (events_feedback, migration 13)."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"bad database name {database!r}")
    return (  # the filter in a subquery: argMax(...) AS verdict would shadow the column in WHERE
        "SELECT alert_id, argMax(verdict, occurred_at) AS verdict, argMax(false_reason, occurred_at) AS reason, "
        "argMax(measures, occurred_at) AS measures, argMax(fine_yuan, occurred_at) AS fine_yuan "
        f"FROM (SELECT * FROM {database}.events_feedback FINAL WHERE status = 'disposed' "
        f"AND verdict NOT IN ('', 'unknown') AND alert_id IN (SELECT alert_id FROM {database}.alerts FINAL "
        f"WHERE first_seen >= {_ts(start)} AND first_seen < {_ts(end)})) GROUP BY alert_id"
    )


def fetch_outcomes(query: QueryFn, start: datetime, end: datetime, database: str = "riskwatch") -> dict[str, dict]:
    cols, rows = query(outcomes_sql(start, end, database))
    return {r["alert_id"]: r for r in (dict(zip(cols, x, strict=True)) for x in rows)}


NOTE_COLUMNS = ("notice_id", "department", "subject", "text", "created_at", "deadline", "status", "answered_at",
                "answer", "answered_by", "urged")  # fmt: skip


def fetch_notes(
    query: QueryFn, start: datetime, end: datetime, dept: str | None = None, database: str = "riskwatch"
) -> list[dict]:
    """督导单 sent in ``[start, end)`` (to ``dept``) with their answers; none before migration 15."""
    if not database.replace("_", "").isalnum() or (dept and not dept.replace("_", "").isalnum()):
        raise ValueError(f"bad database or department name {database!r} {dept!r}")
    where = f"kind = 'supervision' AND created_at >= {_ts(start)} AND created_at < {_ts(end)}"
    where += f" AND department = '{dept}'" if dept else ""
    try:
        cols, rows = query(
            f"SELECT {', '.join(NOTE_COLUMNS)} FROM {database}.notices FINAL WHERE {where} ORDER BY created_at"
        )
    except Exception as e:  # noqa: BLE001 — an older schema without notices: the bulletin has no 督导单
        log.info("no supervision notes: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return []
    out = [dict(zip(cols, r, strict=True)) for r in rows]
    for n in out:
        for k in ("created_at", "deadline", "answered_at"):
            v = n[k]
            if v is not None:
                n[k] = v.replace(tzinfo=CST) if v.tzinfo is None else v.astimezone(CST)
    return out


def consultations_sql(start: datetime, end: datetime, database: str = "riskwatch") -> str:
    """议事会商 held in ``[start, end)``: the latest record of each (table ``consultations``, migration 17)."""
    if not database.replace("_", "").isalnum():
        raise ValueError(f"bad database name {database!r}")
    return (
        "SELECT consultation_id, title, theme, held_at, departments, status, decisions "
        f"FROM {database}.consultations FINAL WHERE held_at >= {_ts(start)} AND held_at < {_ts(end)} "
        "ORDER BY seq DESC LIMIT 1 BY consultation_id"
    )


def fetch_consultations(query: QueryFn, start: datetime, end: datetime, database: str = "riskwatch") -> list[dict]:
    cols, rows = query(consultations_sql(start, end, database))
    return sorted((dict(zip(cols, x, strict=True)) for x in rows), key=lambda r: r["held_at"])


def consultation_table(b: Bulletin) -> tuple[list[str], list[list[str]]]:
    """九、议事会商: each consultation of the period with its decisions (owner department, deadline)."""
    import orjson

    rows = []
    for c in b.consultations:
        decided = [orjson.loads(d) for d in c["decisions"]]
        what = "；".join(
            f"{b.dept_names.get(d['department'], d['department'])}：{d['text']}（{d['due'][:10]}前）" for d in decided
        )
        rows.append(
            [
                c["title"],
                f"{c['held_at']:%m-%d %H:%M}",
                "、".join(b.dept_names.get(x, x) for x in c["departments"]),
                what or ("待记录纪要" if c["status"] != "concluded" else "—"),
            ]
        )
    return ["议题", "时间", "参会部门", "决定（责任部门、期限）"], rows


# --- the numbers -----------------------------------------------------------------------------------
@dataclass
class Row:
    label: str
    total: int = 0
    levels: Counter = field(default_factory=Counter)
    disposed: int = 0
    overdue: int = 0

    @property
    def rate(self) -> float | None:
        return self.disposed / self.total if self.total else None


@dataclass
class Bulletin:
    period: str
    start: datetime
    end: datetime
    as_of: datetime
    dept: str | None
    dept_name: str | None
    alerts: list[dict]
    total: Row
    by_item: list[Row]
    by_dept: list[Row]
    by_day: list[tuple[date, int]]
    overdue: list[dict]
    top_entities: list[dict]
    notable: list[dict]
    notable_total: int
    dept_names: dict[str, str]
    outcomes: dict[str, dict] = field(default_factory=dict)  # alert_id -> its latest disposal outcome
    consultations: list[dict] = field(default_factory=list)  # 议事会商 held in the period

    notes: list[dict] = field(default_factory=list)  # 督导单 of the period (fetch_notes)

    @property
    def title(self) -> str:
        who = f"（{self.dept_name}）" if self.dept_name else ""
        return f"舞阳县“三品一特”综合监管风险预警情况通报{who}"

    @property
    def subtitle(self) -> str:
        last = (self.end - timedelta(seconds=1)).date()
        return f"{REPORT_PERIOD_ZH[self.period]} · {self.start:%Y年%m月%d日}至{last:%Y年%m月%d日}"


def fmt_rate(r: float | None) -> str:
    return "—" if r is None else f"{r * 100:.1f}%"


def summarize(
    alerts: list[dict],
    period: str,
    start: datetime,
    end: datetime,
    *,
    dept: str | None = None,
    catalog: Any = None,
    as_of: datetime | None = None,
    top_n: int = 10,
    notable_n: int = 30,
) -> Bulletin:
    """Aggregate the alerts of the period (see module doc for what is counted)."""
    if catalog is None:
        from riskwatch.domain.catalog import load_catalog

        catalog = load_catalog()
    names = {code: d.name for code, d in catalog.departments.items()}
    if as_of is None:  # status as of now, or the end of a past period
        as_of = min(datetime.now(CST), end)
    total = Row("合计")
    items: dict[str, Row] = {}
    depts: dict[str, Row] = {}
    days: Counter = Counter()
    overdue, entities = [], defaultdict(list)
    for a in alerts:
        lvl, done = a["level"], a["status"] in DONE
        limit_h = DISPOSAL_LIMIT_HOURS.get(lvl, DISPOSAL_LIMIT_HOURS["blue"])
        age_h = (as_of - a["first_seen"]).total_seconds() / 3600
        late = not done and age_h > limit_h
        if late:
            overdue.append({**a, "age_h": age_h, "limit_h": limit_h})
        item = a["item_name"] or UNASSIGNED_ITEM
        rows = [total, items.setdefault(item, Row(item))]
        rows += [depts.setdefault(d, Row(names.get(d, d))) for d in dict.fromkeys(a["departments"])]
        for r in rows:
            r.total += 1
            r.levels[lvl] += 1
            r.disposed += done
            r.overdue += late
        days[a["first_seen"].date()] += 1
        entities[a["entity_id"]].append(a)
    by_day = []
    d = start.astimezone(CST).date()
    while d < (end - timedelta(seconds=1)).astimezone(CST).date() + timedelta(days=1):
        by_day.append((d, days.get(d, 0)))
        d += timedelta(days=1)
    rank = {lv: i for i, lv in enumerate(reversed(LEVELS))}
    top = []
    for eid, xs in entities.items():
        worst = max(xs, key=lambda x: (rank.get(x["level"], -1), x["score"]))
        top.append(
            {
                "entity_id": eid,
                "entity_name": worst["entity_name"] or eid,
                "township": worst["township"],
                "alerts": len(xs),
                "max_score": max(x["score"] for x in xs),
                "level": worst["level"],
                "open": sum(x["status"] not in DONE for x in xs),
                "items": "、".join(sorted({x["item_name"] or UNASSIGNED_ITEM for x in xs})),
            }
        )
    top.sort(key=lambda e: (-e["max_score"], -rank.get(e["level"], -1), -e["alerts"], e["entity_id"]))
    notable = [a for a in alerts if a["level"] in ("red", "orange")]
    notable.sort(key=lambda a: (-rank[a["level"]], -a["score"], a["first_seen"]))
    overdue.sort(key=lambda a: (-rank.get(a["level"], -1), -(a["age_h"] - a["limit_h"])))
    return Bulletin(
        period=period, start=start, end=end, as_of=as_of, dept=dept, dept_name=names.get(dept) if dept else None,
        alerts=alerts, total=total,
        by_item=sorted(items.values(), key=lambda r: (-r.total, r.label)),
        by_dept=sorted(depts.values(), key=lambda r: (-r.total, r.label)),
        by_day=by_day, overdue=overdue, top_entities=top[:top_n], notable=notable[:notable_n],
        notable_total=len(notable), dept_names=names,
    )  # fmt: skip


# --- font ------------------------------------------------------------------------------------------
def find_cjk_font(explicit: str | Path | None = None) -> Path | None:
    """A TrueType font with Chinese glyphs that ReportLab can embed, or None.

    Order: ``explicit``, the ``BULLETIN_FONT`` environment variable (deliberately outside the
    ``RISKWATCH_`` settings namespace, whose unknown names are refused), the font shipped by the
    :data:`PACKAGED_FONT` dependency, the well-known paths of :data:`FONT_CANDIDATES`, then any font
    fontconfig/matplotlib knows whose name says CJK. Only fonts with TrueType outlines qualify (ReportLab
    cannot embed CFF/OTF).
    """
    cands: list[str] = [str(explicit)] if explicit else []
    if os.environ.get("BULLETIN_FONT"):
        cands.append(os.environ["BULLETIN_FONT"])
    packaged = packaged_font()
    if packaged is not None:
        cands.append(str(packaged))
    cands += FONT_CANDIDATES
    try:
        from matplotlib import font_manager

        for f in font_manager.findSystemFonts():
            low = f.lower()
            if low.endswith((".ttf", ".ttc")) and any(
                k in low for k in ("wqy", "cjk", "hei", "song", "ming", "han", "droidsansfallback")
            ):
                cands.append(f)
    except Exception:  # noqa: BLE001 - font discovery is best effort
        pass
    for c in cands:
        p = Path(c)
        if p.is_file() and _reportlab_font(p) is not None:
            return p
    if explicit:
        raise FileNotFoundError(f"font {explicit} does not exist or has no TrueType outlines ReportLab can embed")
    return None


def packaged_font() -> Path | None:
    """The CJK TrueType font that the ``paperang-p2-fonts-cjk`` dependency ships, or None."""
    from importlib import resources

    pkg, res = PACKAGED_FONT
    try:
        path = Path(str(resources.files(pkg).joinpath(res)))
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


_RL_FONTS: dict[str, str] = {}


def _reportlab_font(path: Path) -> str | None:
    """Register ``path`` with ReportLab (once) and return its font name, or None if unusable."""
    key = str(path)
    if key in _RL_FONTS:
        return _RL_FONTS[key]
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    name = f"CJK{len(_RL_FONTS)}"
    try:
        font = TTFont(name, key, subfontIndex=0) if key.lower().endswith(".ttc") else TTFont(name, key)
        if 0x4E2D not in font.face.charToGlyph:  # 中
            return None
        pdfmetrics.registerFont(font)
    except Exception:  # noqa: BLE001 - not a usable TrueType font
        return None
    _RL_FONTS[key] = name
    return name


def _mpl_family(font: Path | None) -> list[str]:
    from matplotlib import font_manager
    from matplotlib.font_manager import FontProperties

    if font is None:
        return ["DejaVu Sans"]
    font_manager.fontManager.addfont(str(font))
    return [FontProperties(fname=str(font)).get_name(), "DejaVu Sans"]


# --- charts ----------------------------------------------------------------------------------------
def make_charts(b: Bulletin, font: Path | None) -> dict[str, bytes]:
    """PNG bytes per chart: levels, items, departments, trend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    def png(fig: Figure) -> bytes:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
        return buf.getvalue()

    out: dict[str, bytes] = {}
    with rc_context({"font.family": _mpl_family(font), "axes.unicode_minus": False, "font.size": 10}):
        fig = Figure(figsize=(5.5, 3.0))
        ax = fig.subplots()
        vals = [b.total.levels.get(lv, 0) for lv in LEVELS]
        bars = ax.bar([lv.zh for lv in LEVELS], vals, color=[LEVEL_COLOR[lv] for lv in LEVELS])
        ax.bar_label(bars, padding=2)
        ax.set_ylim(0, max(1, max(vals)) * 1.15)  # headroom: the tallest bar's label stays inside the frame
        ax.set_title("预警等级分布")
        ax.set_ylabel("预警数（条）")
        out["levels"] = png(fig)

        for key, rows, title in (("items", b.by_item, "分事项预警数"), ("departments", b.by_dept, "分部门预警及处置")):
            rows = rows[:15]
            fig = Figure(figsize=(7.0, max(2.2, 0.38 * len(rows) + 1.0)))
            ax = fig.subplots()
            labels = [r.label for r in rows][::-1]
            disposed = [r.disposed for r in rows][::-1]
            open_ = [r.total - r.disposed for r in rows][::-1]
            ax.barh(labels, disposed, color="#2ca02c", label="已处置")
            ax.barh(labels, open_, left=disposed, color="#bbbbbb", label="未处置")
            ax.set_title(title)
            ax.set_xlabel("预警数（条）")
            if rows:
                ax.legend(loc="lower right")
            else:
                ax.text(0.5, 0.5, "本期无预警", ha="center", va="center", transform=ax.transAxes)
            out[key] = png(fig)

        fig = Figure(figsize=(7.0, 2.6))
        ax = fig.subplots()
        ax.plot([d.strftime("%m-%d") for d, _ in b.by_day], [n for _, n in b.by_day], marker="o", color="#d62728")
        ax.set_ylim(0, max([1] + [n for _, n in b.by_day]) * 1.15)
        ax.set_title("每日新增预警")
        ax.set_ylabel("条")
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        out["trend"] = png(fig)
    return out


CHART_TITLES = {
    "levels": "预警等级分布",
    "items": "分事项预警数",
    "departments": "分部门预警及处置",
    "trend": "每日新增预警",
}


# --- tables (shared by HTML and PDF) -----------------------------------------------------------------
def _count_header() -> list[str]:
    return ["预警数", *[lv.zh for lv in LEVELS], "已处置", "处置率", "超期"]


def _count_cells(r: Row) -> list[str]:
    return [
        str(r.total),
        *[str(r.levels.get(lv, 0)) for lv in LEVELS],
        str(r.disposed),
        fmt_rate(r.rate),
        str(r.overdue),
    ]


def tables(b: Bulletin) -> dict[str, tuple[list[str], list[list[str]]]]:
    dn = b.dept_names
    return {
        "items": (["监管事项", *_count_header()],
                  [[r.label, *_count_cells(r)] for r in b.by_item] + [["合计", *_count_cells(b.total)]]),
        "depts": (["部门", *_count_header()], [[r.label, *_count_cells(r)] for r in b.by_dept]),
        "overdue": (["预警编号", "主体", "乡镇", "事项", "等级", "状态", "首次预警",
                     "时限（小时）", "已超（小时）", "牵头部门"],
                    [[a["alert_id"], a["entity_name"] or a["entity_id"], a["township"],
                      a["item_name"] or UNASSIGNED_ITEM,
                      zh(Level, a["level"]), zh(AlertStatus, a["status"]),
                      f"{a['first_seen']:%m-%d %H:%M}", str(a["limit_h"]), f"{a['age_h'] - a['limit_h']:.0f}",
                      dn.get(a["lead_department"], a["lead_department"])] for a in b.overdue]),
        "entities": (["序号", "主体", "乡镇", "涉及事项", "预警数", "未处置", "最高等级", "最高风险分"],
                     [[str(i), e["entity_name"], e["township"], e["items"], str(e["alerts"]), str(e["open"]),
                       zh(Level, e["level"]), f"{e['max_score']:.0f}"] for i, e in enumerate(b.top_entities, 1)]),
        "notes": (["督导单", "部门", "事由", "督导内容", "发出", "时限", "状态", "答复", "督促次数"],
                  [[n["notice_id"], dn.get(n["department"], n["department"]), n["subject"] or "—", n["text"],
                    f"{n['created_at']:%m-%d %H:%M}", f"{n['deadline']:%m-%d %H:%M}", zh(NoticeState, n["status"]),
                    (n["answer"] or "—") + (f"（{n['answered_by']} {n['answered_at']:%m-%d %H:%M}）"
                                            if n["answered_at"] else ""),
                    str(n["urged"])] for n in b.notes]),
    }  # fmt: skip


def outcome_tables(b: Bulletin) -> dict[str, tuple[list[str], list[list[str]]]]:
    """七、处置结果与预警准确率: the outcomes of the period's alerts and precision per detector (sinks/precision.py)."""
    rows = [
        {
            **a,
            "dept": a["lead_department"],
            **{k: (b.outcomes.get(a["alert_id"]) or {}).get(k, "") for k in ("verdict", "reason")},
        }
        for a in b.alerts
        if a["status"] != "pending"
    ]
    verdicts = Counter(str(r["verdict"] or "unknown") for r in rows)
    measures = Counter(m for o in b.outcomes.values() for m in (o.get("measures") or []))
    fines = sum(float(o.get("fine_yuan") or 0) for o in b.outcomes.values())
    reasons = Counter(str(o.get("reason")) for o in b.outcomes.values() if o.get("verdict") == "false_alarm")
    summary = [
        [VERDICT_ZH[v], str(verdicts.get(v, 0))] for v in ("confirmed", "not_confirmed", "false_alarm", "unknown")
    ]
    summary += [
        [MEASURE_ZH[m], str(measures[m]) + (f"（合计 {fines:g} 元）" if m == "fine" and fines else "")]
        for m in MEASURE_ZH
        if measures.get(m)
    ]
    summary += [[f"误报原因：{FALSE_ALARM_REASON_ZH.get(k, k)}", str(n)] for k, n in reasons.most_common()]
    prec = []
    for g in precision_table(rows, "detector"):
        lo, hi = g.interval
        prec.append(
            [
                g.label,
                str(g.alerts),
                str(g.confirmed),
                str(g.not_confirmed),
                str(g.false),
                str(g.unknown),
                fmt_rate(g.precision),
                f"{lo * 100:.0f}%–{hi * 100:.0f}%" if g.labelled else "—",
            ]
        )
    head = [
        "监测模型/规则",
        "预警",
        *(VERDICT_ZH[v] for v in ("confirmed", "not_confirmed", "false_alarm", "unknown")),
        "准确率",
        "95%区间",
    ]
    return {"outcomes": (["核查结果 / 措施", "条数"], summary), "precision": (head, prec)}  # fmt: skip


def summary_text(b: Bulletin) -> str:
    t = b.total
    lv = "、".join(f"{x.zh}{t.levels.get(x, 0)}条" for x in LEVELS)
    return (
        f"本期共产生风险预警{t.total}条（{lv}），涉及监管主体{len({a['entity_id'] for a in b.alerts})}家；"
        f"已处置{t.disposed}条，处置率{fmt_rate(t.rate)}；截至{b.as_of:%Y年%m月%d日%H时}，"
        f"超期未处置{len(b.overdue)}条。"
    )


# --- HTML ------------------------------------------------------------------------------------------
_CSS = """
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC","Microsoft YaHei","PingFang SC",sans-serif;
max-width:960px;margin:2em auto;color:#222}
h1{text-align:center;font-size:1.6em;color:#b00}h2{border-left:4px solid #b00;padding-left:.5em;margin-top:1.6em}
.sub{text-align:center;color:#555}table{border-collapse:collapse;width:100%;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #999;padding:3px 6px;text-align:center}th{background:#f2f2f2;white-space:nowrap}
td{white-space:nowrap}td.l{text-align:left;white-space:normal}
.kpi span{font-weight:bold;color:#b00}.red{color:#d62728}.orange{color:#ff7f0e}img{max-width:100%}
.case{border:1px solid #ddd;padding:.5em .8em;margin:.5em 0}.muted{color:#777}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _html_table(head: list[str], rows: list[list[str]], left: Sequence[int] = (0,)) -> str:
    if not rows:
        return '<p class="muted">无。</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i in left else ''}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'


def render_html(b: Bulletin, charts: dict[str, bytes]) -> str:
    t = tables(b)
    total = b.total
    kpi = (f'<p class="kpi">预警总数 <span id="total">{total.total}</span> 条；'
           + "；".join(f'{lv.zh} <span id="level-{lv}">{total.levels.get(lv, 0)}</span> 条' for lv in LEVELS)
           + f'；已处置 <span id="disposed">{total.disposed}</span> 条；'
           f'处置率 <span id="rate">{fmt_rate(total.rate)}</span>；'
           f'超期未处置 <span id="overdue">{len(b.overdue)}</span> 条。</p>')  # fmt: skip
    cases = []
    for a in b.notable:
        cls = a["level"]
        cases.append(
            f'<div class="case"><b class="{cls}">【{zh(Level, cls)}预警】</b> <b>{_e(a["title"])}</b><br>'
            f'主体：{_e(a["entity_name"] or a["entity_id"])}（{_e(a["township"])}）　'
            f'事项：{_e(a["item_name"] or UNASSIGNED_ITEM)}　'
            f'风险分：{a["score"]:.0f}　状态：{_e(zh(AlertStatus, a["status"]))}　'
            f'首次预警：{a["first_seen"]:%m-%d %H:%M}<br>'
            f'{_e(a["message"])}</div>')  # fmt: skip
    more = (
        f'<p class="muted">另有{b.notable_total - len(b.notable)}条红色、橙色预警未列出。</p>'
        if b.notable_total > len(b.notable)
        else ""
    )
    limits = disposal_limits()
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{_e(b.title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(b.title)}</h1>
<p class="sub">{_e(b.subtitle)}</p>
<h2>一、总体情况</h2>
<p>{_e(summary_text(b))}</p>
{kpi}
{_img(charts["levels"], CHART_TITLES["levels"])}
{_img(charts["trend"], CHART_TITLES["trend"])}
<h2>二、分事项预警情况</h2>
{_html_table(*t["items"])}
{_img(charts["items"], CHART_TITLES["items"])}
<h2>三、分部门预警及处置情况</h2>
<p class="muted">一条预警推送牵头部门和配合部门，各部门分别计数。</p>
{_html_table(*t["depts"])}
{_img(charts["departments"], CHART_TITLES["departments"])}
<h2>四、超期未处置预警清单</h2>
<p class="muted">处置时限（自首次预警起）：{_e(limits)}。</p>
{_html_table(*t["overdue"], left=(1, 3))}
<h2>五、高风险主体</h2>
{_html_table(*t["entities"], left=(1, 3))}
<h2>六、典型案例（红色、橙色预警）</h2>
{"".join(cases) or '<p class="muted">本期无红色、橙色预警。</p>'}
{more}
<h2>七、处置结果与预警准确率</h2>
<p class="muted">按部门“已处置”时填写的核查结果统计；准确率 = 属实 ÷（属实 + 不属实 + 误报），
区间为 Wilson 95% 置信区间。</p>
{_html_table(*outcome_tables(b)["outcomes"])}
<div id="precision">{_html_table(*outcome_tables(b)["precision"])}</div>

<h2>八、检查督导（督导单）</h2>
{_html_table(*t["notes"], left=(3, 7))}

<h2>九、议事会商</h2>
<div id="consultations">{
        _html_table(*consultation_table(b), left=(0, 2, 3))
        if b.consultations
        else '<p class="muted">本期未召开议事会商。</p>'
    }</div>
<p class="muted">{SOURCE_NOTE}{b.as_of:%Y-%m-%d %H:%M}。</p>
</body></html>
"""


# --- PDF -------------------------------------------------------------------------------------------
def render_pdf(
    b: Bulletin, charts: dict[str, bytes], path: Path, font: Path | None, *, font_name: str | None = None
) -> Path:
    """Lay the bulletin out with ReportLab; ``font`` (TrueType) is embedded, else STSong-Light (not embedded).

    ``font_name``: an already registered ReportLab font to use instead (tests: ``Helvetica``, no CJK glyphs).
    """
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    if font_name:
        fname = font_name
    elif font is not None:
        registered = _reportlab_font(font)
        if registered is None:
            raise ValueError(f"{font}: not a TrueType font with Chinese glyphs")
        fname = registered
    else:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        fname = "STSong-Light"
        pdfmetrics.registerFont(UnicodeCIDFont(fname))
    body = ParagraphStyle("body", fontName=fname, fontSize=10.5, leading=16, wordWrap="CJK")
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10.5)
    muted = ParagraphStyle("muted", parent=body, fontSize=9, textColor=colors.grey)
    h1 = ParagraphStyle(
        "h1", parent=body, fontSize=17, leading=24, alignment=TA_CENTER, textColor=colors.HexColor("#b00000")
    )
    sub = ParagraphStyle("sub", parent=body, alignment=TA_CENTER, textColor=colors.HexColor("#555555"))
    h2 = ParagraphStyle("h2", parent=body, fontSize=13, leading=20, spaceBefore=10, spaceAfter=4)
    width = A4[0] - 36 * mm

    def P(text: Any, style=body) -> Paragraph:
        return Paragraph(html.escape(str(text)), style)

    def img(key: str) -> Image:
        im = Image(io.BytesIO(charts[key]))
        scale = min(1.0, width / im.imageWidth) if im.imageWidth else 1.0
        im.drawWidth, im.drawHeight = im.imageWidth * scale * 0.55, im.imageHeight * scale * 0.55
        return im

    def table(head: list[str], rows: list[list[str]]) -> Any:
        if not rows:
            return P("无。", muted)
        data = [[P(h, small) for h in head]] + [[P(c, small) for c in r] for r in rows]
        # column widths from the longest cell (CJK counts double, capped) so short codes stay on one line
        need = [
            max(min(sum(2 if ord(ch) > 0x2E80 else 1 for ch in str(r[i])), 28) for r in [head, *rows]) + 2
            for i in range(len(head))
        ]
        tb = Table(data, repeatRows=1, hAlign="CENTER", colWidths=[width * n / sum(need) for n in need])
        tb.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]))  # fmt: skip
        return tb

    t = tables(b)
    story: list[Any] = [P(b.title, h1), P(b.subtitle, sub), Spacer(1, 6),
                        P("一、总体情况", h2), P(summary_text(b)), img("levels"), img("trend"),
                        P("二、分事项预警情况", h2), table(*t["items"]), img("items"),
                        P("三、分部门预警及处置情况", h2), P("一条预警推送牵头部门和配合部门，各部门分别计数。", muted),
                        table(*t["depts"]), img("departments"),
                        P("四、超期未处置预警清单", h2),
                        P("处置时限（自首次预警起）：" + disposal_limits() + "。", muted),
                        table(*t["overdue"]),
                        P("五、高风险主体", h2), table(*t["entities"]),
                        P("六、典型案例（红色、橙色预警）", h2)]  # fmt: skip
    if not b.notable:
        story.append(P("本期无红色、橙色预警。", muted))
    for a in b.notable:
        story.append(
            P(
                f"【{zh(Level, a['level'])}预警】{a['title']}",
                ParagraphStyle("c", parent=body, textColor=colors.HexColor(LEVEL_COLOR[a["level"]])),
            )
        )
        story.append(
            P(
                f"主体：{a['entity_name'] or a['entity_id']}（{a['township']}）　"
                f"事项：{a['item_name'] or UNASSIGNED_ITEM}　"
                f"风险分：{a['score']:.0f}　状态：{zh(AlertStatus, a['status'])}　"
                f"首次预警：{a['first_seen']:%m-%d %H:%M}",
                small,
            )
        )
        story.append(P(a["message"], small))
        story.append(Spacer(1, 4))
    if b.notable_total > len(b.notable):
        story.append(P(f"另有{b.notable_total - len(b.notable)}条红色、橙色预警未列出。", muted))
    ot = outcome_tables(b)
    story += [P("七、处置结果与预警准确率", h2), table(*ot["outcomes"]), Spacer(1, 4), table(*ot["precision"])]

    story += [P("八、检查督导（督导单）", h2), table(*t["notes"])]

    story += [P("九、议事会商", h2)]
    story += [table(*consultation_table(b))] if b.consultations else [P("本期未召开议事会商。", muted)]
    story.append(Spacer(1, 8))
    story.append(
        P(f"数据来源：riskwatch 风险预警平台；统计口径：本期首次预警的预警，状态截至{b.as_of:%Y-%m-%d %H:%M}。", muted)
    )

    def footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(fname, 8)
        canvas.drawCentredString(A4[0] / 2, 10 * mm, f"{b.title} · 第{doc.page}页")
        canvas.restoreState()

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=b.title,
        author="riskwatch",
        subject=b.subtitle,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return path


# --- entry points ----------------------------------------------------------------------------------
def generate(
    period: str,
    dept: str | None = None,
    out: Path | str = "var/bulletins",
    *,
    settings: Any = None,
    query: QueryFn | None = None,
    until: datetime | date | None = None,
    as_of: datetime | None = None,
    font: str | Path | None = None,
    catalog: Any = None,
) -> tuple[Path, Path]:
    """Write ``<out>/bulletin-<period>[-<dept>]-<end date>.html`` and ``.pdf``; return both paths.

    ``query``: ``sql -> (columns, rows)``; default a :class:`sinks.writer.ClickHouseWriter` on
    ``settings.clickhouse_url`` (read-only gate + ``readonly=1``).
    """
    from riskwatch.domain.catalog import load_catalog

    if settings is None:
        from riskwatch.settings import load_settings

        settings = load_settings()
    catalog = catalog or load_catalog(settings.catalog_path)
    if dept and dept not in catalog.departments:
        raise ValueError(f"unknown department {dept!r}; known: {', '.join(catalog.departments)}")
    start, end = period_bounds(period, until)
    writer = None
    if query is None:
        from sinks.writer import ClickHouseWriter

        writer = ClickHouseWriter(settings)
        query = writer.query
    try:
        alerts = fetch_alerts(query, start, end, dept, settings.clickhouse_database)
        outcomes = fetch_outcomes(query, start, end, settings.clickhouse_database)

        notes = fetch_notes(query, start, end, dept, settings.clickhouse_database)

        consultations = fetch_consultations(query, start, end, settings.clickhouse_database)
    finally:
        if writer is not None:
            writer.close(timeout=10)
    b = summarize(alerts, period, start, end, dept=dept, catalog=catalog, as_of=as_of)
    b.outcomes = outcomes

    b.notes = notes

    b.consultations = consultations
    font_path = find_cjk_font(font)
    if font_path is None:
        log.warning(
            "no CJK TrueType font found: the PDF uses the non-embedded STSong-Light and the charts lose "
            "their Chinese labels: %s.",
            FONT_HINT,
        )
    charts = make_charts(b, font_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bulletin-{period}{'-' + dept if dept else ''}-{(end - timedelta(seconds=1)).date():%Y%m%d}"
    html_path = out / f"{stem}.html"
    html_path.write_text(render_html(b, charts), encoding="utf-8")
    pdf_path = render_pdf(b, charts, out / f"{stem}.pdf", font_path)
    return html_path, pdf_path


app = typer.Typer(
    help="情况通报: weekly/monthly situation bulletin (HTML + PDF, Chinese) from the alerts in ClickHouse."
)


def run_cli(period: str = "week", dept: str | None = None, out: Path | str = "var/bulletins") -> tuple[Path, Path]:
    """Plain-function entry point (settings from the environment); returns (html, pdf)."""
    return generate(period, dept, out)


@app.callback(invoke_without_command=True)
def _cli(
    period: str = typer.Option("week", "--period", help="week (last 7 days) | month (last 30 days)"),
    dept: str | None = typer.Option(None, "--dept", help="Only alerts pushed to this department code (catalog)"),
    out: Path = typer.Option(Path("var/bulletins"), "--out", help="Output directory"),
    until: str | None = typer.Option(None, "--until", help="End of the period, YYYY-MM-DD (exclusive; default today)"),
    font: Path | None = typer.Option(
        None, "--font", help="CJK TrueType font (.ttf/.ttc) to embed; default: found on the system"
    ),
) -> None:
    """Write the bulletin of the period as HTML and PDF and print both paths."""
    if period not in PERIOD_DAYS:
        raise typer.BadParameter(f"must be one of {', '.join(PERIOD_DAYS)}", param_hint="--period")
    try:
        end = date.fromisoformat(until) if until else None
    except ValueError:
        raise typer.BadParameter(f"expected YYYY-MM-DD, got {until!r}", param_hint="--until") from None
    try:
        paths = generate(period, dept, out, until=end, font=font)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"riskwatch bulletin: {e}") from None
    for p in paths:
        print(p)
