"""What the public is told (issue #23 items 4 and 5): the eight service manuals with all six elements,
their validation, the monthly-information SQL on the real ClickHouse engine (embedded chDB), and a
crawl of every public page that finds no entity name, entity id or phone number that is not published.

The crawl runs the workbench app in-process (FastAPI's TestClient) with its reader pointed at a chDB
directory holding alerts of simulated entities (the simulator's county: names and ids are the
forbidden list), one spot-checked entity (its name is published by law), and a typical case the
office published through the real form with the entity's name and a mobile number in the text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.binding import finalize_query

from riskwatch.domain.catalog import MANUAL_ELEMENTS, CatalogError, load_catalog
from riskwatch.settings import DATA_DIR, Settings
from schemas.events import Alert
from schemas.vocabulary import Level
from sinks.clickhouse import INSERT_SETTINGS, make_client
from sinks.migrations import migrate
from sinks.query import run_read_query
from sinks.rows import COLUMNS, alert_row
from web.publish_queries import MONTH_COUNTS_SQL, MONTH_RED_SQL, MONTH_SPOT_SQL

NOW = datetime.now(UTC).replace(microsecond=0)
YM = int(NOW.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).strftime("%Y%m"))
PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)")


# --- the manuals -----------------------------------------------------------------------------------
def test_all_eight_items_have_all_six_elements_filled():
    cat = load_catalog()
    assert sorted(cat.items) == list(range(1, 9))
    for item in cat.items.values():
        elements = item.manual.elements(cat.dept_name)
        assert list(elements) == [k for k, _ in MANUAL_ELEMENTS]
        for key, e in elements.items():
            assert e.text.strip() and "待补充" not in e.text, (item.id, key)
        body = item.manual.implementing_body
        assert body is not None and body.lead.dept == item.lead
        assert [d.dept for d in body.cooperating] == list(item.cooperating)
        assert item.manual.policy.strip() and item.manual.published
        assert "12345" in elements["complaint_channel"].text
    # item 7's lead is 卫健委: 12320 comes first; the market-supervision-led items start with 12315
    assert cat.items[7].lead == "health"
    assert cat.items[7].manual.complaint_channel.text.splitlines()[0].count("12320") == 1
    assert all("12315" in cat.items[i].manual.complaint_channel.text.splitlines()[0] for i in (1, 2, 4, 5, 6, 8))
    assert "特种设备安全法" in cat.items[8].manual.legal_basis.text
    assert "医疗美容服务管理办法" in cat.items[7].manual.legal_basis.text
    # department numbers are marked placeholders, and what the county must confirm is said per element
    assert all("〔待县填写〕" in cat.items[i].manual.complaint_channel.text for i in cat.items)
    assert all(cat.items[i].manual.complaint_channel.confirm for i in cat.items)


def _copy_data(tmp: Path) -> Path:
    (tmp / "manuals").mkdir()
    (tmp / "catalog.yaml").write_text((DATA_DIR / "catalog.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for p in (DATA_DIR / "manuals").glob("*.yaml"):
        (tmp / "manuals" / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp / "catalog.yaml"


def test_a_manual_naming_another_lead_or_an_unknown_field_is_refused_with_its_line(tmp_path):
    path = _copy_data(tmp_path)
    m7 = tmp_path / "manuals" / "7.yaml"
    m7.write_text(m7.read_text(encoding="utf-8").replace("    dept: health\n", "    dept: amr\n", 1), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"7.yaml line \d+: 实施主体 must name the catalog's lead 'health'"):
        load_catalog(path)
    m7.write_text((DATA_DIR / "manuals" / "7.yaml").read_text(encoding="utf-8") + "oops: 1\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"7.yaml line \d+ \(oops\): Extra inputs"):
        load_catalog(path)
    (tmp_path / "manuals" / "9.yaml").write_text("item: 9\n", encoding="utf-8")
    m7.write_text((DATA_DIR / "manuals" / "7.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(CatalogError, match="item 9 is not in the catalog"):
        load_catalog(path)


# --- the store with alerts of simulated entities ----------------------------------------------------
def _sim_entities(n: int):
    from riskwatch.tools.simulator.county import SimConfig, build_county

    county = build_county(SimConfig(seed=7, days=1, scale=0.05))
    return county.entities[:n], county.entities


def _alert(aid: str, e, status: str, level: str, at: datetime, item_id: int = 1) -> tuple:
    return alert_row(
        Alert(
            alert_id=aid,
            revision=1,
            fingerprint=f"{e.entity_id}|{item_id}|{aid}",
            entity_id=e.entity_id,
            entity_name=e.name,
            township=e.township,
            item_id=item_id,
            item_name=load_catalog().items[item_id].name,
            rule="sensor.cold_chain_temp",
            level=Level(level),
            level_zh=Level(level).zh,
            status=status,
            score=90,
            title=f"{e.name} 冷链温度超过8℃上限",
            message=f"{e.name}({e.entity_id})负责人电话 13812345678",
            lead_department="amr",
            departments=["amr", "emergency"],
            first_seen=at - timedelta(hours=5),
            last_seen=at,
            updated_at=at,
            source_event_id="e",
        )
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("public")
    c = make_client(f"chdb://{tmp / 'ch'}")
    migrate(c, "riskwatch")
    shown, everyone = _sim_entities(12)
    at = NOW - timedelta(hours=1)
    rows = [_alert(f"A{i}", e, "resolved", "red" if i % 3 == 0 else "orange", at) for i, e in enumerate(shown[:6])]
    rows += [_alert(f"B{i}", e, "firing", "yellow", at) for i, e in enumerate(shown[6:10])]
    rows += [_alert("C0", shown[10], "closed", "red", at - timedelta(days=70))]  # another month
    c.insert("alerts", rows, column_names=list(COLUMNS["alerts"]), database="riskwatch", settings=INSERT_SETTINGS)
    spot = shown[11]  # the spot-checked entity: its name is published (双随机、一公开)
    ms = lambda d: d.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    c.command(
        "INSERT INTO riskwatch.events_task (event_id, entity_id, occurred_at, task_id, department, item_id, kind, ref) "
        f"VALUES ('t1', '{spot.entity_id}', '{ms(at - timedelta(days=1))}', 'task-1', 'amr', 1, 'spot_check', 'SC-1')"
    )
    c.command(
        f"INSERT INTO riskwatch.events_inspection (event_id, entity_id, occurred_at, item_id, outcome) "
        f"VALUES ('i1', '{spot.entity_id}', '{ms(at)}', 1, 'pass')"
    )
    c.command(
        f"INSERT INTO riskwatch.registry (entity_id, name, kind, township, status) "
        f"VALUES ('{spot.entity_id}', '{spot.name}', 'food_producer', '{spot.township}', 'active')"
    )
    yield c, shown, everyone, spot, tmp
    c.close()


def _q(c, sql: str, **params) -> list[dict]:
    cols, rows = run_read_query(c, finalize_query(sql.replace("{db}", "riskwatch"), params or None))
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_monthly_queries_count_by_item_and_level_and_select_nothing_about_the_entity(store):
    c, *_ = store
    counts = {(r["item_id"], r["level"]): r["n"] for r in _q(c, MONTH_COUNTS_SQL, ym=YM)}
    assert counts == {(1, "red"): 2, (1, "orange"): 4, (1, "yellow"): 4}
    red = _q(c, MONTH_RED_SQL, ym=YM)
    assert len(red) == 2 and set(red[0]) == {"item_id", "item_name", "rule", "first_seen", "updated_at"}
    spots = _q(c, MONTH_SPOT_SQL, ym=YM)
    assert [r["ref"] for r in spots] == ["SC-1"] and spots[0]["outcome"] == "pass"


class ChReader:
    """The workbench reader on a chDB directory in this process (the app's own goes through a worker)."""

    def __init__(self, client):
        self.c = client

    async def rows(self, sql: str, **params) -> list[dict]:
        return _q(self.c, sql, **params)

    async def cached(self, ttl: float, sql: str, **params) -> list[dict]:
        return _q(self.c, sql, **params)

    async def one(self, sql: str, **params) -> dict | None:
        r = _q(self.c, sql, **params)
        return r[0] if r else None

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def app(store):
    from fastapi.testclient import TestClient

    from web.app import create_app
    from web.users import UserStore

    c, *_, tmp = store
    s = Settings(workbench_dir=tmp / "web", workbench_public_rate_per_minute=100_000)
    pw = UserStore(s.workbench_dir / "users.json").add("office", role="taskforce", dept="", name="王五")[1]
    a = create_app(s)
    a.state.ctx.reader = ChReader(c)
    with TestClient(a) as client:
        yield client, pw


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m
    return m.group(1)


def test_crawl_every_public_page_finds_no_unpublished_name_id_or_phone(app, store):
    from fastapi.testclient import TestClient

    client, pw = app
    c, shown, everyone, spot, tmp = store
    # the office publishes a case from a resolved alert, its text naming the entity and a phone number
    office = TestClient(client.app)
    r = office.post(
        "/login",
        data={"username": "office", "password": pw, "csrf_token": _csrf(office.get("/login").text), "next": "/inbox"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = office.get("/taskforce/publish/cases/new?alert=A0")
    assert page.status_code == 200 and shown[0].name in page.text  # behind the login the office sees the name
    r = office.post(
        "/taskforce/publish/cases",
        data={
            "csrf_token": _csrf(page.text),
            "alert_id": "A0",
            "title": f"{shown[0].name}冷链超温联合处置",
            "text": f"{shown[0].name}({shown[0].entity_id})冷库超温,负责人电话 13812345678,已整改。",
            "published": NOW.strftime("%Y-%m-%d"),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/taskforce/publish?case=")

    forbidden = {e.name for e in everyone if e.entity_id != spot.entity_id} | {
        e.entity_id for e in everyone if e.entity_id != spot.entity_id
    }
    forbidden |= {f"A{i}" for i in range(6)} | {"B0", "C0"}  # alert ids: behind the login
    local = NOW.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    months = {local.strftime("%Y-%m"), (local.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")}
    seen, todo, pages = set(), ["/public"], {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = client.get(path)
        assert r.status_code == 200, path
        assert "csrf_token" not in r.text and "退出" not in r.text and "set-cookie" not in r.headers, path
        assert "/alerts/" not in r.text and "风险分" not in r.text and "/taskforce" not in r.text, path
        pages[path] = r.text
        for href in re.findall(r'href="(/public[^"#]*)"', r.text):
            if "month=" in href and href.split("month=")[1] not in months:  # the archive goes back for ever
                continue
            todo.append(href.replace("&amp;", "&"))
    assert {"/public", "/public/cases", "/public/monthly", "/public/spot-checks"} <= set(pages)
    assert {f"/public/items/{i}" for i in range(1, 9)} <= set(pages)
    assert {f"/public/items/{i}/policy" for i in range(1, 9)} <= set(pages)
    for path, html in pages.items():
        leaked = [f for f in forbidden if f in html]
        assert not leaked, (path, leaked[:5])
        assert not PHONE.findall(re.sub(r"<[^>]+>", " ", html)), (path, PHONE.findall(html))
    # what is published is there: the masked case, the month's counts and red summaries, the spot check
    assert "某经营主体冷链超温联合处置" in pages["/public/cases"] and "138****5678" in pages["/public/cases"]
    assert pages["/public/monthly"].count("已处置解除") == 2
    assert spot.name in pages["/public/monthly"] and spot.name in pages["/public/spot-checks"]
    for i in range(1, 9):  # every manual shows its six elements, the version date and the county's open points
        html = pages[f"/public/items/{i}"]
        assert all(label in html for _, label in MANUAL_ELEMENTS) and "待补充" not in html
        assert "发布日期 2026-12-01" in html and "待县确认" in html


def _login(client, username: str, pw: str):
    from fastapi.testclient import TestClient

    c = TestClient(client.app)
    tok = _csrf(c.get("/login").text)
    r = c.post(
        "/login",
        data={"username": username, "password": pw, "csrf_token": tok, "next": "/inbox"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    return c


def test_office_manual_edit_is_a_dated_version_and_the_public_page_follows_it(app):
    from web.users import UserStore

    client, pw = app
    office = _login(client, "office", pw)
    form = office.get("/taskforce/publish/manuals/7")
    assert form.status_code == 200 and "12320" in form.text
    fields = dict(re.findall(r'<textarea name="(\w+)"[^>]*>([^<]*)</textarea>', form.text))
    assert set(fields) == {k for k, _ in MANUAL_ELEMENTS}
    import html as _html

    data = {k: _html.unescape(v) for k, v in fields.items()}
    data["complaint_channel"] += "\n县卫生健康委咨询电话:0395-7212345 <script>alert(1)</script>"
    data["complaint_channel_confirm"] = ""
    data |= {"csrf_token": _csrf(form.text), "effective": (NOW - timedelta(days=1)).strftime("%Y-%m-%d")}
    data["note"] = "补充县卫生健康委咨询电话"
    assert client.get("/public/items/7").text.count("待县确认") >= 1  # cached before the edit
    r = office.post("/taskforce/publish/manuals/7", data=data, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/taskforce/publish/manuals/7?saved=1"
    page = client.get("/public/items/7").text  # the cache was emptied by the publication
    assert "第 2 版" in page and data["effective"] in page and "补充县卫生健康委咨询电话" in page
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert 'href="/public/items/7?version=0"' in page  # the earlier version is listed and still readable
    assert "第 1 版" in client.get("/public/items/7?version=0").text
    # a version dated later is saved but not yet shown
    data["effective"], data["note"] = (NOW + timedelta(days=30)).strftime("%Y-%m-%d"), "下月起施行的修订"
    data["measures"] = "下月起的新监管措施"
    assert office.post("/taskforce/publish/manuals/7", data=data, follow_redirects=False).status_code == 303
    assert "下月起的新监管措施" not in client.get("/public/items/7").text
    assert client.get("/public/items/7?version=2").status_code == 404
    assert "待生效" in office.get("/taskforce/publish/manuals/7").text
    # refused: an empty element, a missing CSRF token, a leader, anonymous
    bad = data | {"legal_basis": "  "}
    r = office.post("/taskforce/publish/manuals/7", data=bad, follow_redirects=False)
    assert r.status_code == 400 and "“设定依据”不能为空" in r.text
    r = office.post("/taskforce/publish/manuals/7", data=data | {"csrf_token": "x"}, follow_redirects=False)
    assert r.status_code == 403
    lpw = UserStore(client.app.state.ctx.settings.workbench_dir / "users.json").add(
        "leader1", role="leader", dept="", name="县领导"
    )[1]
    leader = _login(client, "leader1", lpw)
    lform = leader.get("/taskforce/publish/manuals/7")
    r = leader.post("/taskforce/publish/manuals/7", data=data | {"csrf_token": _csrf(lform.text)})
    assert r.status_code == 403
    r = client.post("/taskforce/publish/manuals/7", data=data, follow_redirects=False)  # anonymous
    assert r.status_code == 403 or r.headers["location"] == "/login"
    # the publication log chains every saved version and case
    pubs = client.app.state.publications
    assert [v.version for v in pubs.manual_versions(7)] == [2, 1]
    assert pubs.verify() >= 2
