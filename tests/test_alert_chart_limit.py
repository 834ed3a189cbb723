"""The alert page's evidence chart draws the limit the rule actually judged the reading against: a device's
own rating (× factor, + offset), its operating band's county default (an unregistered freezer: -15 ℃) or the
rule's county default rating, read back from the explanation stored with the alert; the rule's absolute
上限/下限 stay for a plain absolute breach.

The limit data as plain functions (``RatingLimit.limit_in``, ``RuleSet.limit_used``, the page's
``used_limit``/``chart_limits``), then the page itself: the workbench app in-process (FastAPI's TestClient)
with its reader on an embedded ClickHouse (chDB) holding three alerts and their readings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from clickhouse_connect.driver.binding import finalize_query

from detectors.rules import RatingLimit, UsedLimit
from riskwatch.domain.county import load_county
from riskwatch.settings import Settings
from schemas.events import Contribution, SensorReading
from schemas.vocabulary import Level
from sinks.clickhouse import INSERT_SETTINGS, make_client
from sinks.migrations import migrate
from sinks.query import run_read_query
from sinks.rows import COLUMNS, alert_row, sensor_row
from tests import factories as F
from web.routes.alert import chart_limits, used_limit

RULES = load_county().rules
NOW = datetime.now(UTC).replace(microsecond=0)


def rated(v: float | None) -> SimpleNamespace:
    return SimpleNamespace(rating=lambda name: v)


def detail(channel: str, value: float, device=None, typical=None) -> str:
    """The rule contribution's detail as the sensor handler stores it (``<device> <note>``)."""
    hit = RULES.on_sensor(channel, value, None, device, typical)
    assert hit is not None
    return f"d1 {hit.note}" if hit.note else f"d1 读数 {value:g}"


# --- the limit data --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("channel", "value", "device", "typical", "limit"),
    [
        ("cold_chain_temp", -8.9, None, (-19.0, 12), UsedLimit(-15.0, "上限 -15℃(冷冻库默认)")),
        ("cold_chain_temp", -8.9, rated(-20.0), (-19.0, 99), UsedLimit(-18.0, "上限 -18℃(设定温度上限+2℃)")),
        ("cold_chain_temp", 7.5, rated(4.0), None, UsedLimit(6.0, "上限 6℃(设定温度上限+2℃)")),
        ("boiler_pressure", 1.7, rated(1.6), None, UsedLimit(1.6, "上限 1.6MPa(额定工作压力)")),
        ("boiler_pressure", 1.55, rated(1.6), None, UsedLimit(1.52, "上限 1.52MPa(额定工作压力95%)")),
        ("boiler_pressure", 1.3, None, None, UsedLimit(1.25, "上限 1.25MPa(县默认额定工作压力)")),
        ("boiler_pressure", 1.2, None, None, UsedLimit(1.1875, "上限 1.1875MPa(县默认额定工作压力95%)")),
        ("boiler_temp", 200.0, rated(180.0), None, UsedLimit(180.0, "上限 180℃(额定温度)")),
        ("vessel_pressure", 1.7, None, None, UsedLimit(1.6, "上限 1.6MPa(县默认设计压力)")),
    ],
)
def test_the_rated_limit_used_is_read_back_from_the_stored_explanation(channel, value, device, typical, limit):
    got = RULES.limit_used(channel, detail(channel, value, device, typical))
    assert got is not None and got.label == limit.label and got.value == pytest.approx(limit.value)


def test_plain_limits_and_other_texts_give_no_rated_limit():
    assert RULES.limit_used("cold_chain_temp", detail("cold_chain_temp", 9.5)) is None  # the absolute 8 ℃
    assert RULES.limit_used("storage_temp", detail("storage_temp", 31.0)) is None  # no rated limit at all
    assert RULES.limit_used("cold_chain_temp", "d1 冷链温度较正常水平异常升高") is None
    assert RULES.limit_used("no_such_channel", "超过额定工作压力1.0MPa") is None


def test_every_level_and_source_of_every_rated_rule_round_trips():
    """Whatever the rating's source (registered, band, county default) and level, the note written for a
    breach reads back as that level's threshold: the parser and ``note`` cannot drift apart unseen."""
    ratio = RatingLimit(relative_to="rated_pressure_mpa", name="额定压力", quantity="锅炉压力", unit="MPa",
                        levels={"red": 1.1, "orange": 1.0})  # fmt: skip
    rules = [(ch, r.rating) for ch, r in RULES.sensor.items() if r.rating is not None] + [("x", ratio)]
    seen = 0
    for _, rl in rules:
        for rating in (1.6, -20.0, 180.0):
            sources = [(rating, rating, None), (None, rating, None)]
            sources += [(None, b.rating, b) for b in rl.default_bands]
            for registered, used, band in sources:
                for limit, _ in rl.limits(used, band.levels if band is not None else None):
                    note = rl.note(limit + 0.5, used, limit, registered, band.name if band is not None else "")
                    got = rl.limit_in(f"dev-1 {note}")
                    assert got is not None and got.value == pytest.approx(limit), note
                    seen += 1
    assert seen > 20
    assert ratio.limit_in("b 锅炉压力1.8MPa,超过额定压力1.6MPa的110%") == UsedLimit(
        pytest.approx(1.76), "上限 1.76MPa(额定压力110%)"
    )


def test_the_chart_draws_the_limit_used_for_the_alert_channel_only():
    freezer = {"rule": "rule.sensor.cold_chain_temp"}
    expl = [
        {"signal": "anomaly.cold_chain_temp", "detail": "d1 读数 -8.9℃,偏离该设备历史规律"},
        {"signal": "sensor.cold_chain_temp", "detail": detail("cold_chain_temp", -8.9, typical=(-19.0, 12))},
    ]
    used = used_limit(RULES, freezer, expl)
    assert used == ("cold_chain_temp", UsedLimit(-15.0, "上限 -15℃(冷冻库默认)"))
    assert chart_limits(RULES, "cold_chain_temp", "℃", used) == {-15.0: "上限 -15℃(冷冻库默认)"}
    # another channel on the same chart keeps its rule's absolute limits
    assert chart_limits(RULES, "storage_humidity", "%RH", used) == {75.0: "上限 75%RH", 35.0: "下限 35%RH"}
    # a plain breach, a rise above the baseline, a health alert: the absolute limit, as before
    plain = [{"signal": "sensor.cold_chain_temp", "detail": detail("cold_chain_temp", 9.5)}]
    assert used_limit(RULES, freezer, plain) is None
    assert chart_limits(RULES, "cold_chain_temp", "℃", None) == {8.0: "上限 8℃"}
    assert used_limit(RULES, {"rule": "device.stuck.cold_chain_temp"}, expl) is None
    assert used_limit(None, freezer, expl) is None


# --- the page --------------------------------------------------------------------------------------
def _alert(aid: str, channel: str, title: str, value: float, det: str) -> tuple:
    return alert_row(
        F.alert(
            aid,
            NOW - timedelta(minutes=10),
            fingerprint=f"E-{aid}|1|rule.sensor.{channel}",
            rule=f"rule.sensor.{channel}",
            level=Level.orange,
            level_zh="橙色",
            score=70.0,
            title=title,
            explanation=[Contribution(signal=f"sensor.{channel}", value=value, detail=det)],
            first_seen=NOW - timedelta(minutes=20),
            updated_at=NOW,
        )
    )


def _readings(aid: str, channel: str, unit: str, values: list[float]) -> list[tuple]:
    t0 = NOW - timedelta(minutes=20 + 5 * len(values))
    return [
        sensor_row(
            SensorReading(
                event_id=f"{aid}-{i}",
                entity_id=f"E-{aid}",
                occurred_at=t0 + timedelta(minutes=5 * i),
                source="iot",
                device_id="d1",
                channel=channel,
                value=v,
                unit=unit,
            )
        )
        for i, v in enumerate(values)
    ]


class ChReader:
    """The workbench reader on a chDB directory in this process (the app's own goes through a worker)."""

    def __init__(self, client):
        self.c = client

    async def rows(self, sql: str, **params) -> list[dict]:
        cols, rows = run_read_query(self.c, finalize_query(sql.replace("{db}", "riskwatch"), params or None))
        return [dict(zip(cols, r, strict=True)) for r in rows]

    async def cached(self, ttl: float, sql: str, **params) -> list[dict]:
        return await self.rows(sql, **params)

    async def one(self, sql: str, **params) -> dict | None:
        r = await self.rows(sql, **params)
        return r[0] if r else None

    async def close(self) -> None:
        pass


FREEZER = [-19.0, -18.6, -19.2, -18.8, -12.0, -9.5, -8.9]
BOILER = [1.4, 1.45, 1.5, 1.62, 1.7]
CHILLER = [4.0, 4.2, 6.5, 9.1, 9.5]


def store(path) -> object:
    c = make_client(f"chdb://{path}")
    migrate(c, "riskwatch")
    alerts = [
        _alert("A-freezer", "cold_chain_temp", "冷冻库温度超过-15℃(未登记设定温度)", -8.9,
               detail("cold_chain_temp", -8.9, typical=(-19.0, 12))),
        _alert("A-boiler", "boiler_pressure", "锅炉压力超过额定工作压力", 1.7,
               detail("boiler_pressure", 1.7, device=rated(1.6))),
        _alert("A-chiller", "cold_chain_temp", "冷链温度超过8℃上限", 9.5, detail("cold_chain_temp", 9.5)),
    ]  # fmt: skip
    c.insert("alerts", alerts, column_names=list(COLUMNS["alerts"]), database="riskwatch", settings=INSERT_SETTINGS)
    rows = _readings("A-freezer", "cold_chain_temp", "C", FREEZER) + _readings(
        "A-chiller", "cold_chain_temp", "C", CHILLER
    )
    rows += _readings("A-boiler", "boiler_pressure", "MPa", BOILER)
    c.insert("events_sensor", rows, column_names=list(COLUMNS["events_sensor"]), database="riskwatch",
             settings=INSERT_SETTINGS)  # fmt: skip
    return c


def app_of(client, tmp) -> tuple:
    """The workbench app on ``client`` with one amr account: (app, password)."""
    from web.app import create_app
    from web.users import UserStore

    s = Settings(workbench_dir=tmp / "web")
    pw = UserStore(s.workbench_dir / "users.json").add("amr", role="dept", dept="amr", name="张三")[1]
    a = create_app(s)
    a.state.ctx.reader = ChReader(client)
    return a, pw


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from fastapi.testclient import TestClient

    tmp = tmp_path_factory.mktemp("chartlimit")
    c = store(tmp / "ch")
    a, pw = app_of(c, tmp)
    with TestClient(a) as web:
        tok = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
        assert tok
        r = web.post(
            "/login",
            data={"username": "amr", "password": pw, "csrf_token": tok[1], "next": "/inbox"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        yield lambda aid: web.get(f"/alerts/{aid}")
    c.close()


def _chart(html: str) -> str:
    m = re.search(r"<svg[^>]*触发前后的传感器读数.*?</svg>", html, re.S)
    assert m, "no evidence chart on the page"
    return m[0]


def test_a_freezer_alert_shows_its_band_default_not_the_chillers_8_degrees(page):
    r = page("A-freezer")
    assert r.status_code == 200
    chart = _chart(r.text)
    assert "上限 -15℃(冷冻库默认)" in chart and "上限 8℃" not in chart


def test_a_boiler_alert_shows_its_own_rated_pressure(page):
    chart = _chart(page("A-boiler").text)
    assert "上限 1.6MPa(额定工作压力)" in chart  # the rule has no absolute max: no line at all before


def test_a_plain_breach_keeps_the_absolute_limit(page):
    chart = _chart(page("A-chiller").text)
    assert "上限 8℃" in chart and "默认" not in chart and "额定" not in chart
