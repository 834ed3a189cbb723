"""The riskwatch Grafana dashboards, built with Grafana's typed builders (grafana-foundation-sdk).

``python -m riskwatch.cli.grafana build`` (``riskwatch grafana build``) writes ``dashboards/json/<uid>.json``;
those files are committed and read by Grafana's file provider (dashboards/provisioning) or pushed
by ``dashboards.provision``. Titles are Chinese (users read Chinese); code and SQL English.

Queries are raw SQL for the ``grafana-clickhouse-datasource`` plugin (v4 query model:
``editorType: sql``, ``queryType: table | timeSeries``, ``format`` 1 = table, 0 = time series)
with its macros ``$__timeFilter(col)``, ``$__timeInterval(col)``, ``$__fromTime``/``$__toTime``.
Table names are unqualified: the datasource's default database is the riskwatch database.
Time series are returned wide (time column + one numeric column per series) so no
long-to-wide conversion is needed. Current alert state is ``alerts FINAL``.

Approximate disposal deadlines per level (for "overdue"): red 24 h, orange 72 h, yellow 7 d,
blue 15 d (``DEADLINE_HOURS``); the county may set its own in the rules later.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import barchart, gauge, geomap, stat, table, text, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm
from grafana_foundation_sdk.models import text as tm

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import DATA_DIR
from schemas.vocabulary import ALERT_STATUSES, DONE_STATUSES, FEEDBACK_ZH, LEVELS_DESC

JSON_DIR = Path(__file__).parent / "json"
DS_TYPE = "grafana-clickhouse-datasource"
DS_UID = "riskwatch-clickhouse"
DS = dm.DataSourceRef(type_val=DS_TYPE, uid=DS_UID)
TZ = "Asia/Shanghai"

# (code, Chinese label, Grafana colour), most severe first; Grafana's colour names happen to be the codes
LEVELS = tuple((lv.value, lv.zh, lv.value) for lv in LEVELS_DESC)
DEADLINE_HOURS = {"red": 24, "orange": 72, "yellow": 168, "blue": 360}
DEADLINE = "multiIf(level = 'red', 24, level = 'orange', 72, level = 'yellow', 168, 360)"
OPEN = f"status IN ({', '.join(repr(s.value) for s in ALERT_STATUSES if s not in DONE_STATUSES)})"  # not yet done
DONE = f"status IN ({', '.join(repr(s.value) for s in DONE_STATUSES)})"
OVERDUE = f"{OPEN} AND first_seen + toIntervalHour({DEADLINE}) < now64(3)"
EVENT_KINDS = ("registry", "sensor", "video", "complaint", "inspection", "feedback")
# input topics by kind: a department's answers (feedback, inspection results, tasks) come on its own
# <kind>.<dept> (streams/engine/identity.py), the old shared <kind> only as dead letters
INPUT_TOPICS = (
    "events.registry",
    "events.sensor",
    "events.video",
    "events.complaint",
    "events.inspection",
    "events.feedback",
    "events.task",
)


def _topic_of_kind(kind: str) -> str:
    """SQL: ``topic`` is the input topic of ``kind`` or one of its per-sender topics, under any prefix.

    >>> _topic_of_kind("events.feedback")
    "(topic LIKE '%events.feedback' OR topic LIKE '%events.feedback.%')"
    """
    return f"(topic LIKE '%{kind}' OR topic LIKE '%{kind}.%')"


def _labels_sql(column: str, labels: dict[str, str]) -> str:
    """SQL showing a code column by its Chinese label (unknown codes as recorded)."""
    codes, names = ", ".join(_s(c) for c in labels), ", ".join(_s(z) for z in labels.values())
    return f"transform({column}, [{codes}], [{names}], {column})"


LEVEL_SCORE = "multiIf(level = 'red', 4, level = 'orange', 3, level = 'yellow', 2, 1)"


def _s(x: str) -> str:
    return "'" + x.replace("\\", "\\\\").replace("'", "\\'") + "'"


STATUS = _labels_sql("status", {s.value: s.zh for s in ALERT_STATUSES})  # alerts.status in Chinese
FEEDBACK_STATUS = _labels_sql("status", dict(FEEDBACK_ZH))  # events_feedback.status in Chinese


def townships(path: Path | None = None) -> list[dict[str, Any]]:
    """Township rows (name, kind, lat, lon) — APPROXIMATE schematic positions, see the CSV."""
    with open(path or DATA_DIR / "townships.csv", encoding="utf-8") as f:
        return [dict(r, lat=float(r["lat"]), lon=float(r["lon"])) for r in csv.DictReader(f)]


def township_table() -> str:
    """A SELECT of (township, latitude, longitude) from literal data (no table function needed)."""
    rows = ", ".join(f"({_s(t['name'])}, {t['lat']}, {t['lon']})" for t in townships())
    return (
        "SELECT tupleElement(t, 1) AS township, tupleElement(t, 2) AS latitude, tupleElement(t, 3) AS longitude "
        f"FROM (SELECT arrayJoin([{rows}]) AS t)"
    )


# --- ClickHouse plugin query -----------------------------------------------------------------------
class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL target of the grafana-clickhouse-datasource plugin (v4 query model)."""

    def __init__(self, sql: str, time_series: bool = False, ref_id: str = "A"):
        self.sql, self.time_series, self.ref_id = sql.strip(), time_series, ref_id

    def to_json(self) -> dict[str, Any]:
        return {
            "refId": self.ref_id,
            "datasource": {"type": DS_TYPE, "uid": DS_UID},
            "editorType": "sql",
            "queryType": "timeSeries" if self.time_series else "table",
            "format": 0 if self.time_series else 1,
            "rawSql": self.sql,
        }


class CH(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, sql: str, time_series: bool = False, ref_id: str = "A"):
        self._q = ClickHouseQuery(sql, time_series, ref_id)

    def build(self) -> ClickHouseQuery:
        return self._q


# --- panel helpers -----------------------------------------------------------------------------------
def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _fixed(color: str) -> db.FieldColor:
    return db.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(color)


def _text(big: bool) -> cb.VizTextDisplayOptions:
    return cb.VizTextDisplayOptions().title_size(26 if big else 16).value_size(80 if big else 40)


def stat_panel(
    title: str, sql: str, color: str | None = None, unit: str = "none", big: bool = False, description: str = ""
) -> stat.Panel:
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(CH(sql))
        .unit(unit)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE)
        .justify_mode(cm.BigValueJustifyMode.CENTER)
        .orientation(cm.VizOrientation.AUTO)
        .text(_text(big))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if color:
        p = p.color_scheme(_fixed(color)).thresholds(_thresholds((None, color)))
    else:
        p = p.color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS)).thresholds(
            _thresholds((None, "green"), (1, "red"))
        )
    return p


def _level_mappings() -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={
                zh: dm.ValueMappingResult(text=zh, color=color, index=i) for i, (_, zh, color) in enumerate(LEVELS)
            }
        )
    ]


def _by_names(names: list[str]) -> dm.MatcherConfig:
    # "byNames" takes an object ({mode, names}); "byName" takes a bare string, which the published
    # dashboard schema (MatcherConfig.options: object) does not allow.
    return dm.MatcherConfig(id_val="byNames", options={"mode": "include", "names": names})


def _series_colors(p: Any, colors: dict[str, str] | None) -> Any:
    for name, color in (colors or {}).items():
        p = p.with_override(
            _by_names([name]), [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]
        )
    return p


def table_panel(title: str, sql: str, description: str = "", big: bool = False) -> table.Panel:
    """A table; cells holding a level name (红色, 橙色, ...) get that colour as background."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(CH(sql))
        .cell_height(cm.TableCellHeight.LG if big else cm.TableCellHeight.SM)
        .show_header(True)
        .align(cm.FieldTextAlignment.AUTO)
        .inspect(False)
        .filterable(False)
        # colored-background with an explicit mode: the only unambiguous variant of the schema's
        # oneOf; cells without a level mapping take the transparent base colour
        .cell_options(
            cm.TableColoredBackgroundCellOptions(mode=cm.TableCellBackgroundDisplayMode.BASIC, apply_to_row=False)
        )
        .mappings(_level_mappings())
        .thresholds(_thresholds((None, "transparent")))
    )


def timeseries_panel(
    title: str,
    sql: str,
    unit: str = "short",
    stacked: bool = False,
    bars: bool = False,
    colors: dict[str, str] | None = None,
    description: str = "",
) -> timeseries.Panel:
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(CH(sql, time_series=True))
        .unit(unit)
        .line_width(2)
        .fill_opacity(30 if stacked else 10)
        .draw_style(cm.GraphDrawStyle.BARS if bars else cm.GraphDrawStyle.LINE)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .calcs([])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stacked:
        p = p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL).group("A"))
    return _series_colors(p, colors)


def barchart_panel(
    title: str,
    sql: str,
    x: str,
    stacked: bool = False,
    colors: dict[str, str] | None = None,
    horizontal: bool = False,
    unit: str = "short",
    description: str = "",
) -> barchart.Panel:
    p = (
        barchart.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(CH(sql))
        .unit(unit)
        .x_field(x)
        .orientation(cm.VizOrientation.HORIZONTAL if horizontal else cm.VizOrientation.AUTO)
        .stacking(cm.StackingMode.NORMAL if stacked else cm.StackingMode.NONE)
        .show_value(cm.VisibilityMode.AUTO)
        .x_tick_label_rotation(0)
        .bar_width(0.8)
        .group_width(0.7)
        .fill_opacity(80)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
            .calcs([])
        )
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.NONE))
        .text(cb.VizTextDisplayOptions().value_size(16))
    )
    return _series_colors(p, colors)


def gauge_panel(
    title: str, sql: str, unit: str = "percent", max_val: float = 100, description: str = "", big: bool = False
) -> gauge.Panel:
    return (
        gauge.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .with_target(CH(sql))
        .unit(unit)
        .min(0)
        .max(max_val)
        .show_threshold_markers(True)
        .show_threshold_labels(False)
        .orientation(cm.VizOrientation.AUTO)
        .text(_text(big))
        .decimals(0)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds((None, "green"), (10, "yellow"), (30, "orange"), (50, "red")))
    )


LEVEL_COLORS = {zh: color for _, zh, color in LEVELS}


@dataclass
class Layout:
    """Places panels left to right in rows on Grafana's 24-column grid; assigns ids."""

    dashboard: db.Dashboard
    x: int = 0
    y: int = 0
    row_h: int = 0
    next_id: int = 1
    panels: list = field(default_factory=list)

    def add(self, panel: Any, w: int, h: int) -> Layout:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        self.dashboard.with_panel(panel.id(self.next_id).grid_pos(dm.GridPos(h=h, w=w, x=self.x, y=self.y)))
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return self


def _dashboard(uid: str, title: str, description: str, refresh: str, time_from: str, tags: list[str]) -> db.Dashboard:
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["riskwatch", "三品一特", *tags])
        .timezone(TZ)
        .refresh(refresh)
        .time(time_from, "now")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .timepicker(db.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "1h"]))
    )


def _catalog_variable(name: str, label: str, pairs: list[tuple[str, str]]) -> db.QueryVariable:
    """A query variable over literal catalog data: __value = code/id, __text = Chinese name."""
    rows = ", ".join(f"({_s(v)}, {_s(t)})" for v, t in pairs)
    sql = f"SELECT tupleElement(p, 1) AS __value, tupleElement(p, 2) AS __text FROM (SELECT arrayJoin([{rows}]) AS p)"
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query(sql)  # a string: the plugin runs it as raw SQL (an object query is not schema-valid here)
        .current(dm.VariableOption(selected=True, text=pairs[0][1], value=pairs[0][0]))
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.DISABLED)
        .multi(False)
        .include_all(False)
    )


# --- 1. 县级总览 --------------------------------------------------------------------------------------
def overview() -> db.Dashboard:
    d = _dashboard(
        "riskwatch-overview",
        "县级总览 · 三品一特风险监测",
        "Wall screen: open alerts by level, township risk map, live alert stream, items, top entities, "
        "overdue disposal.",
        "10s",
        "now-24h",
        ["wall"],
    )
    L = Layout(d)
    for level, zh, color in LEVELS:
        L.add(
            stat_panel(
                f"{zh}预警(在办)",
                f"SELECT count() AS `{zh}` FROM alerts FINAL WHERE level = '{level}' AND {OPEN}",
                color=color,
                big=True,
                description=f"Open {level} alerts (alerts FINAL, not resolved/closed)",
            ),
            4,
            6,
        )
    L.add(
        stat_panel(
            "今日新增预警",
            "SELECT count() AS `新增` FROM alerts FINAL WHERE first_seen >= toStartOfDay(now64(3))",
            color="purple",
            big=True,
        ),
        4,
        6,
    )
    L.add(
        stat_panel(
            "超期未处置",
            f"SELECT count() AS `超期` FROM alerts FINAL WHERE {OVERDUE}",
            big=True,
            description="Open alerts past the approximate deadline: red 24 h, orange 72 h, yellow 7 d, blue 15 d",
        ),
        4,
        6,
    )
    geo_sql = f"""
SELECT t.township AS township, t.latitude AS latitude, t.longitude AS longitude,
       a.risk AS risk, a.open_alerts AS open_alerts, a.red AS red
FROM ({township_table()}) AS t
LEFT JOIN
(
    SELECT township, sum({LEVEL_SCORE}) AS risk, count() AS open_alerts, countIf(level = 'red') AS red
    FROM alerts FINAL WHERE {OPEN} GROUP BY township
) AS a ON a.township = t.township
ORDER BY risk DESC"""  # unmatched townships get 0 (join_use_nulls = 0; a readonly user cannot SET it)
    markers = (
        cb.MapLayerOptions()
        .type("markers")
        .name("乡镇风险")
        .tooltip(True)
        .location(
            cb.FrameGeometrySource().mode(cm.FrameGeometrySourceMode.COORDS).latitude("latitude").longitude("longitude")
        )
        .config(
            {
                "showLegend": True,
                "style": {
                    "size": {"field": "risk", "fixed": 10, "min": 10, "max": 45},
                    "color": {"field": "risk", "fixed": "dark-green"},
                    "opacity": 0.7,
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "township", "fixed": "", "mode": "field"},
                    "textConfig": {"fontSize": 16, "offsetY": -24, "textAlign": "center", "textBaseline": "middle"},
                },
            }
        )
    )
    L.add(
        geomap.Panel()
        .title("乡镇风险分布(位置为示意)")
        .datasource(DS)
        .with_target(CH(geo_sql))
        .description(
            "Risk = sum of open alerts weighted red 4, orange 3, yellow 2, blue 1. "
            "Township positions are APPROXIMATE (riskwatch/data/townships.csv)."
        )
        .view(geomap.MapViewConfig().id("coords").lat(33).lon(114).zoom(10).all_layers(True))
        .controls(
            geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(False).show_attribution(True).show_scale(True)
        )
        .basemap(cb.MapLayerOptions().type("default").name("底图"))
        .layers([markers])
        .tooltip(geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_GR_YL_RD))
        .unit("none"),
        12,
        15,
    )
    L.add(
        table_panel(
            "实时预警流",
            f"""
SELECT updated_at AS `更新时间`, level_zh AS `级别`, {STATUS} AS `状态`, township AS `乡镇`, entity_name AS `主体`,
       item_name AS `事项`, title AS `预警`, lead_department AS `牵头部门`, revision AS `版本`
FROM alerts
WHERE $__timeFilter(updated_at)
ORDER BY updated_at DESC, revision DESC
LIMIT 50""",
            description="Latest alert revisions (each change of an alert is one row)",
            big=True,
        ),
        12,
        15,
    )
    level_cols = ", ".join(f"countIf(level = '{lv}') AS `{zh}`" for lv, zh, _ in LEVELS)
    L.add(
        barchart_panel(
            "各重点事项在办预警",
            f"""
SELECT if(item_name = '', '未归口(专班办)', item_name) AS `事项`, {level_cols}
FROM alerts FINAL WHERE {OPEN}
GROUP BY `事项` ORDER BY count() DESC""",
            x="事项",
            stacked=True,
            colors=LEVEL_COLORS,
            horizontal=True,
        ),
        12,
        10,
    )
    L.add(
        table_panel(
            "高风险主体 TOP 15",
            f"""
SELECT entity_name AS `主体`, township AS `乡镇`, any(item_name) AS `事项`, max(score) AS `最高分`,
       argMax(level_zh, {LEVEL_SCORE}) AS `级别`, count() AS `在办预警`
FROM alerts FINAL WHERE {OPEN}
GROUP BY entity_id, entity_name, township
ORDER BY `最高分` DESC, `在办预警` DESC
LIMIT 15""",
            big=True,
        ),
        12,
        10,
    )
    overdue_cols = ", ".join(
        f"round(100 * countIf(level = '{lv}' AND first_seen + toIntervalHour({DEADLINE_HOURS[lv]}) < now64(3))"
        f" / greatest(countIf(level = '{lv}'), 1), 1) AS `{zh}超期%`"
        for lv, zh, _ in LEVELS
    )
    L.add(
        gauge_panel(
            "超期处置占比(按级别)",
            f"SELECT {overdue_cols} FROM alerts FINAL WHERE {OPEN}",
            description=(
                "Share of open alerts past the approximate deadline (red 24 h, orange 72 h, yellow 7 d, blue 15 d)"
            ),
            big=True,
        ),
        8,
        9,
    )
    trend_cols = ", ".join(f"sumIf(alerts, level = '{lv}') AS `{zh}`" for lv, zh, _ in LEVELS)
    L.add(
        timeseries_panel(
            "预警新增趋势(按级别,每小时)",
            f"""
SELECT hour AS time, {trend_cols}
FROM agg_alerts_opened_hourly
WHERE $__timeFilter(hour)
GROUP BY time ORDER BY time""",
            stacked=True,
            bars=True,
            colors=LEVEL_COLORS,
            description="From agg_alerts_opened_hourly (one count per receiving department)",
        ),
        8,
        9,
    )
    L.add(
        barchart_panel(
            "乡镇投诉与视频告警",
            """
SELECT if(township = '', '未知', township) AS `乡镇`, sum(complaints) AS `投诉`, sum(video_detections) AS `视频告警`
FROM agg_township_hourly
WHERE $__timeFilter(hour)
GROUP BY `乡镇` ORDER BY `投诉` + `视频告警` DESC""",
            x="乡镇",
            stacked=False,
        ),
        8,
        9,
    )
    return d


# --- 2. 重点事项 --------------------------------------------------------------------------------------
def item_dashboard() -> db.Dashboard:
    cat = load_catalog()
    d = _dashboard(
        "riskwatch-item",
        "三品一特 重点事项监管",
        "One key supervision item: its alerts, townships, inspections and entities.",
        "30s",
        "now-7d",
        ["item"],
    )
    d.with_variable(_catalog_variable("item", "重点事项", [(str(i.id), i.name) for i in cat.items_list]))
    W = "item_id = ${item}"
    L = Layout(d)
    L.add(
        stat_panel("在办预警", f"SELECT count() AS `在办` FROM alerts FINAL WHERE {W} AND {OPEN}", color="orange"), 6, 5
    )
    L.add(stat_panel("超期未处置", f"SELECT count() AS `超期` FROM alerts FINAL WHERE {W} AND {OVERDUE}"), 6, 5)
    L.add(
        stat_panel(
            "本期新增",
            f"SELECT count() AS `新增` FROM alerts FINAL WHERE {W} AND $__timeFilter(first_seen)",
            color="purple",
        ),
        6,
        5,
    )
    L.add(
        stat_panel(
            "本期办结",
            f"SELECT count() AS `办结` FROM alerts FINAL WHERE {W} AND {DONE} AND $__timeFilter(updated_at)",
            color="green",
        ),
        6,
        5,
    )
    trend_cols = ", ".join(f"sumIf(alerts, level = '{lv}') AS `{zh}`" for lv, zh, _ in LEVELS)
    L.add(
        timeseries_panel(
            "预警新增趋势(每小时)",
            f"""
SELECT hour AS time, {trend_cols}
FROM agg_alerts_opened_hourly
WHERE {W} AND $__timeFilter(hour)
GROUP BY time ORDER BY time""",
            stacked=True,
            bars=True,
            colors=LEVEL_COLORS,
        ),
        12,
        9,
    )
    level_cols = ", ".join(f"countIf(level = '{lv}') AS `{zh}`" for lv, zh, _ in LEVELS)
    L.add(
        barchart_panel(
            "各乡镇在办预警",
            f"""
SELECT if(township = '', '未知', township) AS `乡镇`, {level_cols}
FROM alerts FINAL WHERE {W} AND {OPEN}
GROUP BY `乡镇` ORDER BY count() DESC""",
            x="乡镇",
            stacked=True,
            colors=LEVEL_COLORS,
        ),
        12,
        9,
    )
    L.add(
        table_panel(
            "在办预警清单",
            f"""
SELECT first_seen AS `首次发现`, level_zh AS `级别`, {STATUS} AS `状态`, township AS `乡镇`, entity_name AS `主体`,
       title AS `预警`, lead_department AS `牵头部门`, arrayStringConcat(departments, ',') AS `接收部门`,
       round(dateDiff('second', first_seen, now64(3)) / 3600, 1) AS `已历时(小时)`,
       if(first_seen + toIntervalHour({DEADLINE}) < now64(3), '超期', '') AS `超期`
FROM alerts FINAL WHERE {W} AND {OPEN}
ORDER BY {LEVEL_SCORE} DESC, first_seen
LIMIT 200""",
        ),
        24,
        10,
    )
    L.add(
        timeseries_panel(
            "检查不合格率(每日)",
            f"""
SELECT toStartOfDay(occurred_at) AS time, round(100 * countIf(outcome = 'fail') / count(), 1) AS `不合格率`,
       round(100 * countIf(outcome = 'pass_with_conditions') / count(), 1) AS `限期整改率`
FROM events_inspection FINAL
WHERE {W} AND $__timeFilter(occurred_at)
GROUP BY time ORDER BY time""",
            unit="percent",
        ),
        12,
        9,
    )
    L.add(
        table_panel(
            "高风险主体",
            f"""
SELECT entity_name AS `主体`, township AS `乡镇`, max(score) AS `最高分`, argMax(level_zh, {LEVEL_SCORE}) AS `级别`,
       count() AS `预警数`, countIf({OPEN}) AS `在办`
FROM alerts FINAL WHERE {W} AND $__timeFilter(last_seen)
GROUP BY entity_id, entity_name, township
ORDER BY `最高分` DESC LIMIT 20""",
        ),
        12,
        9,
    )
    return d


# --- 3. 部门工作台 ------------------------------------------------------------------------------------
def department_dashboard() -> db.Dashboard:
    cat = load_catalog()
    d = _dashboard(
        "riskwatch-department",
        "三品一特 部门工作台",
        "One department's open, overdue and disposed alerts and its disposal times.",
        "30s",
        "now-30d",
        ["department"],
    )
    d.with_variable(_catalog_variable("department", "部门", [(x.code, x.name) for x in cat.departments_list]))
    W = "has(departments, '${department}')"
    hours = "dateDiff('second', first_seen, updated_at) / 3600"
    L = Layout(d)
    L.add(
        stat_panel("在办预警", f"SELECT count() AS `在办` FROM alerts FINAL WHERE {W} AND {OPEN}", color="orange"), 6, 5
    )
    L.add(stat_panel("超期未处置", f"SELECT count() AS `超期` FROM alerts FINAL WHERE {W} AND {OVERDUE}"), 6, 5)
    L.add(
        stat_panel(
            "本期已处置",
            f"SELECT count() AS `已处置` FROM alerts FINAL WHERE {W} AND {DONE} AND $__timeFilter(updated_at)",
            color="green",
        ),
        6,
        5,
    )
    L.add(
        stat_panel(
            "处置时长中位数",
            f"SELECT round(ifNull(quantileExact(0.5)({hours}), 0), 1) AS `小时` "
            f"FROM alerts FINAL WHERE {W} AND {DONE} AND $__timeFilter(updated_at)",
            color="blue",
            unit="h",
        ),
        6,
        5,
    )
    cols = f"""first_seen AS `首次发现`, level_zh AS `级别`, {STATUS} AS `状态`, township AS `乡镇`,
       entity_name AS `主体`, item_name AS `事项`, title AS `预警`,
       if(lead_department = '${{department}}', '牵头', '配合') AS `角色`"""
    L.add(
        table_panel(
            "超期预警",
            f"""
SELECT {cols}, round(dateDiff('second', first_seen, now64(3)) / 3600 - {DEADLINE}, 1) AS `超期(小时)`
FROM alerts FINAL WHERE {W} AND {OVERDUE}
ORDER BY `超期(小时)` DESC LIMIT 200""",
        ),
        12,
        10,
    )
    L.add(
        table_panel(
            "在办预警",
            f"""
SELECT {cols}, round(dateDiff('second', first_seen, now64(3)) / 3600, 1) AS `已历时(小时)`
FROM alerts FINAL WHERE {W} AND {OPEN}
ORDER BY {LEVEL_SCORE} DESC, first_seen LIMIT 200""",
        ),
        12,
        10,
    )
    L.add(
        timeseries_panel(
            "处置时长(每日,小时)",
            f"""
SELECT toStartOfDay(updated_at) AS time, round(quantileExact(0.5)({hours}), 1) AS `中位数`,
       round(quantileExact(0.9)({hours}), 1) AS `90分位`
FROM alerts FINAL WHERE {W} AND {DONE} AND $__timeFilter(updated_at)
GROUP BY time ORDER BY time""",
            unit="h",
        ),
        12,
        9,
    )
    L.add(
        barchart_panel(
            "各事项处置时长中位数(小时)",
            f"""
SELECT if(item_name = '', '未归口', item_name) AS `事项`, round(quantileExact(0.5)({hours}), 1) AS `中位数`,
       count() AS `件数`
FROM alerts FINAL WHERE {W} AND {DONE} AND $__timeFilter(updated_at)
GROUP BY `事项` ORDER BY `中位数` DESC""",
            x="事项",
            horizontal=True,
        ),
        12,
        9,
    )
    L.add(
        table_panel(
            "本期已处置",
            f"""
SELECT updated_at AS `办结时间`, {cols}, round({hours}, 1) AS `处置时长(小时)`
FROM alerts FINAL WHERE {W} AND {DONE} AND $__timeFilter(updated_at)
ORDER BY updated_at DESC LIMIT 200""",
        ),
        12,
        9,
    )
    L.add(
        table_panel(
            "处置反馈记录",
            f"""
SELECT occurred_at AS `时间`, alert_id AS `预警编号`, {FEEDBACK_STATUS} AS `反馈状态`, comment AS `说明`,
       result AS `处置结果`
FROM events_feedback FINAL
WHERE department = '${{department}}' AND $__timeFilter(occurred_at)
ORDER BY occurred_at DESC LIMIT 200""",
        ),
        12,
        9,
    )
    return d


# --- 4. 数据管道健康 ----------------------------------------------------------------------------------
def _union_events(select: str, where: str) -> str:
    return "\nUNION ALL\n".join(f"SELECT '{k}' AS kind, {select} FROM events_{k} WHERE {where}" for k in EVENT_KINDS)


# write latency of every input kind: (ingestion time, seconds since the event occurred)
LATENCY_COLUMNS = "ingested_at, dateDiff('millisecond', occurred_at, ingested_at) / 1000 AS s"


def pipeline_dashboard() -> db.Dashboard:
    d = _dashboard(
        "riskwatch-pipeline",
        "riskwatch 数据管道健康",
        "Throughput, dead letters and write latency of the riskwatch pipeline.",
        "10s",
        "now-1h",
        ["ops"],
    )
    L = Layout(d)
    L.add(
        stat_panel(
            "近5分钟入库事件",
            "SELECT sum(n) AS `事件` FROM ("
            + _union_events("count() AS n", "ingested_at >= now64(3) - INTERVAL 5 MINUTE")
            + ")",
            color="green",
        ),
        6,
        5,
    )
    L.add(stat_panel("本期死信", "SELECT count() AS `死信` FROM dead_letters WHERE $__timeFilter(received_at)"), 6, 5)
    L.add(
        stat_panel(
            "写入延迟 P95",
            "SELECT round(quantile(0.95)(s), 1) AS `秒` FROM ("
            + _union_events(
                "dateDiff('millisecond', occurred_at, ingested_at) / 1000 AS s", "$__timeFilter(ingested_at)"
            )
            + ")",
            color="blue",
            unit="s",
            description=(
                "ingested_at − occurred_at: includes device/gateway delay and Kafka backlog "
                "(a proxy for end-to-end latency)"
            ),
        ),
        6,
        5,
    )
    L.add(
        text.Panel()
        .title("消费延迟(Kafka lag)")
        .mode(tm.TextMode.MARKDOWN)
        .content(
            "Kafka consumer lag is not stored in ClickHouse.\n\n"
            "* `riskwatch.tools.runner.consumer_lag(settings, topics)` computes it (committed vs end offsets).\n"
            "* The worker's Prometheus `/metrics` carries `riskwatch_events_total{topic,result}`, "
            "`riskwatch_batch_seconds` and `riskwatch_sink_write_seconds`; add a Prometheus datasource "
            "(or a Kafka exporter for `kafka_consumergroup_lag`) to chart lag here."
        ),
        6,
        5,
    )
    kind_cols = ", ".join(f"countIf(kind = '{k}') AS `{k}`" for k in EVENT_KINDS)
    L.add(
        timeseries_panel(
            "吞吐:每分钟入库事件(按类型)",
            f"""
SELECT $__timeInterval(ingested_at) AS time, {kind_cols}
FROM ({_union_events("ingested_at", "$__timeFilter(ingested_at)")})
GROUP BY time ORDER BY time""",
            stacked=True,
        ),
        12,
        9,
    )
    topic_cols = ", ".join(f"countIf({_topic_of_kind(t)}) AS `{t}`" for t in INPUT_TOPICS)
    L.add(
        timeseries_panel(
            "死信:每分钟(按主题)",
            f"""
SELECT $__timeInterval(received_at) AS time, count() AS `合计`, {topic_cols}
FROM dead_letters
WHERE $__timeFilter(received_at)
GROUP BY time ORDER BY time""",
            bars=True,
        ),
        12,
        9,
    )
    L.add(
        timeseries_panel(
            "写入延迟(入库时间−发生时间)",
            f"""
SELECT $__timeInterval(ingested_at) AS time, round(quantile(0.5)(s), 1) AS `P50`, round(quantile(0.95)(s), 1) AS `P95`,
       round(max(s), 1) AS `最大`
FROM ({_union_events(LATENCY_COLUMNS, "$__timeFilter(ingested_at)")})
GROUP BY time ORDER BY time""",
            unit="s",
        ),
        12,
        9,
    )
    hourly_cols = ", ".join(f"sumIf(events, kind = '{k}') AS `{k}`" for k in EVENT_KINDS)
    L.add(
        timeseries_panel(
            "每小时事件(按发生时间)",
            f"""
SELECT hour AS time, {hourly_cols}
FROM agg_events_hourly
WHERE $__timeFilter(hour)
GROUP BY time ORDER BY time""",
            stacked=True,
            bars=True,
            description="From agg_events_hourly (materialized view)",
        ),
        12,
        9,
    )
    L.add(
        table_panel(
            "最新死信",
            """
SELECT received_at AS `接收时间`, topic AS `主题`, partition AS `分区`, offset AS `偏移`, key AS `键`,
       arrayStringConcat(indexes, ',') AS `批内坏读数`, error AS `原因`
FROM dead_letters
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC LIMIT 100""",
        ),
        24,
        9,
    )
    return d


DASHBOARDS: dict[str, Callable[[], db.Dashboard]] = {
    "riskwatch-overview": overview,
    "riskwatch-item": item_dashboard,
    "riskwatch-department": department_dashboard,
    "riskwatch-pipeline": pipeline_dashboard,
}


def to_dict(d: db.Dashboard) -> dict[str, Any]:
    return json.loads(json.dumps(d.build(), cls=JSONEncoder))


def render(uid: str) -> str:
    """The JSON text of one dashboard (stable: same code → same bytes)."""
    return json.dumps(to_dict(DASHBOARDS[uid]()), ensure_ascii=False, indent=2) + "\n"


def build(out_dir: Path | str = JSON_DIR) -> list[Path]:
    """Write every dashboard to ``<out_dir>/<uid>.json``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid in DASHBOARDS:
        p = out / f"{uid}.json"
        p.write_text(render(uid), encoding="utf-8")
        paths.append(p)
    return paths


def load_all(json_dir: Path | str = JSON_DIR) -> dict[str, dict[str, Any]]:
    return {uid: json.loads((Path(json_dir) / f"{uid}.json").read_text(encoding="utf-8")) for uid in DASHBOARDS}


if __name__ == "__main__":  # pragma: no cover
    for p in build():
        print(p)
