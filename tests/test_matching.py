"""Entity matching (edge/matching.py): identifiers exact, names and addresses fuzzy, aliases, the
township pseudo-entity, and the queue below the threshold — never an ``unknown`` entity."""

from __future__ import annotations

import re

import pytest
from stdnum.cn import uscc

from edge.matching import BadIdentifier, Candidates, Matched, Matcher, RegistryEntry, alias_key, normalise_name


def code(base: str) -> str:
    return base + uscc.calc_check_digit(base)


FOOD = code("91411121MA4000000")
DINER = code("92411121MA4000002")
REGISTRY = [
    RegistryEntry(FOOD, "舞阳县某某食品有限公司", "舞泉镇", "舞阳县舞泉镇人民路1号", "SC11041112100001"),
    RegistryEntry(DINER, "舞阳县老王饭店(个体)", "吴城镇", "吴城镇建设街8号", "JY24111210000002"),
    RegistryEntry("E-pharm", "舞阳县康宁大药房有限公司", "北舞渡镇", "北舞渡镇中心街20号", ""),
    RegistryEntry("E-pharm2", "舞阳县康宁大药房(莲花店)", "莲花镇", "莲花镇府前路3号", ""),
]


@pytest.fixture
def m() -> Matcher:
    return Matcher(REGISTRY)


def test_names_are_normalised():
    assert normalise_name("舞阳县某某食品有限公司") == "某某食品"
    assert normalise_name("舞阳县老王饭店(个体)") == "老王饭店"
    assert normalise_name("（河南省）舞阳县 某某食品 股份有限公司") == "某某食品"


def test_credit_code_matches_exactly_and_a_bad_check_digit_is_refused(m):
    r = m.match("完全不同的名字", "", FOOD, "", "")
    assert isinstance(r, Matched) and r.entity_id == FOOD
    assert (r.match.method.value, r.match.confidence) == ("credit_code", 1.0)
    bad = FOOD[:-1] + ("0" if FOOD[-1] != "0" else "1")
    with pytest.raises(BadIdentifier, match="校验位错误"):
        m.match("某某食品", "", bad, "", "")
    with pytest.raises(BadIdentifier, match="长度应为18位"):
        m.match("某某食品", "", "9141112", "", "")


def test_licence_matches_exactly(m):
    r = m.match("", "", "", "JY24111210000002", "")
    assert isinstance(r, Matched) and (r.entity_id, r.match.method.value) == (DINER, "licence")


def test_a_slightly_different_name_lands_on_the_right_entity_with_its_confidence(m):
    r = m.match("某某食品", "人民路1号", "", "", "舞泉镇")
    assert isinstance(r, Matched) and r.entity_id == FOOD
    assert r.match.method.value == "name_address" and 0.85 <= r.match.confidence <= 1.0
    r2 = m.match("舞阳某某食品厂", "人民路", "", "", "舞泉镇")
    assert isinstance(r2, Matched) and r2.entity_id == FOOD and r2.match.confidence < r.match.confidence
    r3 = m.match("老王饭店", "建设街", "", "", "吴城镇")
    assert isinstance(r3, Matched) and r3.entity_id == DINER


def test_below_threshold_or_ambiguous_gives_candidates(m):
    r = m.match("康宁大药房", "", "", "", "")  # two branches of one name: the office decides
    assert isinstance(r, Candidates) and {c.entity_id for c in r.candidates} >= {"E-pharm", "E-pharm2"}
    assert "人工确认" in r.reason
    r2 = m.match("王记饭店", "", "", "", "吴城镇")
    assert isinstance(r2, Candidates) and "低于阈值" in r2.reason
    assert r2.candidates[0].entity_id == DINER and 0.5 < r2.candidates[0].score < 0.85
    r3 = m.match("幸福超市", "光明路", "", "", "舞泉镇")
    assert isinstance(r3, Candidates) and r3.candidates == () and "没有相近" in r3.reason


def test_the_office_choice_is_remembered_as_an_alias(m):
    first = m.match("康宁大药房有限公司", "", "", "", "")
    assert isinstance(first, Candidates)
    m.remember(first.alias_key, "E-pharm")
    again = m.match("康宁大药房有限公司", "", "", "", "")
    assert isinstance(again, Matched) and (again.entity_id, again.match.method.value) == ("E-pharm", "alias")
    assert first.alias_key == alias_key("舞阳县康宁大药房有限公司", "") == "康宁大药房|"


def test_no_business_named_goes_to_the_township_pseudo_entity_never_unknown(m):
    r = m.match("", "", "", "", "舞泉镇")
    assert isinstance(r, Matched) and r.entity_id == "township:wuquan" and r.match.method.value == "township"
    r2 = m.match("", "", "", "", "火星乡")
    assert isinstance(r2, Candidates)  # queued for the office
    for name, tw in (("", ""), ("无名小店", "舞泉镇"), ("", "火星乡")):
        out = m.match(name, "", "", "", tw)
        assert not (isinstance(out, Matched) and out.entity_id == "unknown")


def test_from_store_rows():
    mm = Matcher.from_rows(
        [{"entity_id": "E1", "name": "甲食品有限公司", "township": "舞泉镇", "address": "", "licence": "L1"}],
        [{"alias_key": "乙|", "entity_id": "E1"}],
    )
    assert mm.match("乙").entity_id == "E1"
    assert mm.match("", "", "", "L1").entity_id == "E1"


# --- the workbench: the office resolves the queue; uploads; departments are refused ----------------------------
# A real `riskwatch web run` process, the real broker, and the stand-in data service of tests/webtools.py
# (the real embedded engine with the product's migrations) holding the registry and one queued complaint.
import datetime as _dt  # noqa: E402
import uuid  # noqa: E402

import httpx  # noqa: E402
import orjson  # noqa: E402

from edge.imports.layout import load_layout  # noqa: E402
from edge.imports.rows import Queued, RowConverter  # noqa: E402
from riskwatch.domain.catalog import load_catalog  # noqa: E402
from riskwatch.tools.runner import read_all, wait_for  # noqa: E402
from schemas.events import LOCAL_TZ, Complaint, MatchQueueItem  # noqa: E402
from sinks.rows import COLUMNS, match_queue_row  # noqa: E402
from tests.samples import COMPLAINT_HEADERS, COMPLAINT_ROWS, write_xlsx  # noqa: E402
from tests.samples import DINER as S_DINER  # noqa: E402
from tests.samples import FOOD as S_FOOD  # noqa: E402
from tests.webtools import csrf_of, start_store, start_web  # noqa: E402

TOPICS = ("events.complaint", "events.unmatched", "events.registry", "deadletter")


def _exec(port: int, sql: str) -> None:
    r = httpx.post(f"http://127.0.0.1:{port}/exec", content=sql.encode(), timeout=30).json()
    assert r.get("ok"), r


def _insert(port: int, table: str, row: tuple) -> None:
    def j(v):
        return v.isoformat(sep=" ", timespec="milliseconds")[:23] if isinstance(v, _dt.datetime) else v

    rec = {k: j(v) for k, v in zip(COLUMNS[table], row, strict=True)}
    _exec(port, f"INSERT INTO riskwatch.{table} FORMAT JSONEachRow {orjson.dumps(rec).decode()}")


@pytest.fixture(scope="module")
def office(broker, tmp_path_factory):
    from kafka.admin import KafkaAdminClient, NewTopic

    from kafka import KafkaConsumer

    tmp = tmp_path_factory.mktemp("matching-web")
    proc, port = start_store(tmp)
    s = broker.model_copy(update=dict(topic_prefix=f"t{uuid.uuid4().hex[:8]}.", web_port=port))
    names = [s.topic(t) for t in TOPICS]
    admin = KafkaAdminClient(**s.kafka_kwargs())
    admin.create_topics([NewTopic(t, 1, 1) for t in names])
    c = KafkaConsumer(**s.kafka_kwargs())
    wait_for(lambda: all(c.partitions_for_topic(t) for t in names), 30, "the test topics' leaders", interval=0.2)
    c.close()
    now = _dt.datetime.now(LOCAL_TZ)
    for eid, name, tw, addr in ((S_FOOD, "舞阳县某某食品有限公司", "舞泉镇", "舞泉镇人民路1号"),
                                (S_DINER, "舞阳县老王饭店(个体)", "吴城镇", "吴城镇建设街8号")):  # fmt: skip
        _insert(port, "registry", (eid, 1, name, "catering", tw, addr, "", None, None, "active", now, "e"))
    conv = RowConverter(load_layout("complaints"), load_catalog(), Matcher(REGISTRY), "import:12345:test")
    q = conv.convert(5, dict(zip(COMPLAINT_HEADERS, COMPLAINT_ROWS[3], strict=True)))
    assert isinstance(q, Queued)
    _insert(port, "match_queue", match_queue_row(q.item))
    w = start_web(s, tmp)
    yield w, port, q.item
    w.stop()
    proc.terminate()
    proc.wait(20)
    admin.delete_topics(names)
    admin.close()


def test_departments_and_leaders_get_403_on_the_office_pages(office):
    w, _, item = office
    for user in ("amr", "leader"):
        c = w.client(user)
        for path in ("/taskforce/matching", "/taskforce/imports"):
            r = c.get(path)
            assert r.status_code == 403 and "仅限专班办公室" in r.text, (user, path)
        tok = csrf_of(c.get("/inbox").text)
        r = c.post(f"/taskforce/matching/{item.queue_id}/choose", data={"csrf_token": tok, "entity_id": S_DINER})
        assert r.status_code == 403
    assert read_all(w.settings, w.settings.topic("events.complaint")) == []


def test_the_office_sees_the_queued_complaint_and_choosing_re_emits_it(office):
    w, _, item = office
    c = w.client("taskforce")
    page = c.get("/taskforce/matching")
    assert page.status_code == 200 and "王记饭店" in page.text and "饭菜不新鲜" in page.text
    assert "舞阳县老王饭店(个体)" in page.text and "75%" in page.text and "低于阈值" in page.text
    r = c.post(f"/taskforce/matching/{item.queue_id}/choose", data={"entity_id": S_DINER})
    assert r.status_code == 403  # no CSRF token: refused
    r = c.post(
        f"/taskforce/matching/{item.queue_id}/choose", data={"csrf_token": csrf_of(page.text), "entity_id": "nope"}
    )
    assert r.status_code == 400 and "名录库中没有在业主体" in r.text
    r = c.post(
        f"/taskforce/matching/{item.queue_id}/choose", data={"csrf_token": csrf_of(page.text), "entity_id": S_DINER}
    )
    assert r.status_code == 303 and f"entity={S_DINER}" in r.headers["location"]
    s = w.settings
    msgs = wait_for(lambda: read_all(s, s.topic("events.complaint")), 30, "the re-emitted complaint")
    ev = Complaint.model_validate_json(msgs[0].value)
    assert (ev.entity_id, ev.event_id, ev.match.method.value) == (S_DINER, item.queue_id, "office")
    assert ev.text == "王记饭店饭菜不新鲜" and msgs[0].key == S_DINER.encode()
    done = MatchQueueItem.model_validate_json(read_all(s, s.topic("events.unmatched"))[0].value)
    assert (done.status, done.resolved_entity_id, done.alias_key) == ("resolved", S_DINER, "王记饭店|")
    assert done.resolved_by.endswith("王五") and done.version > item.version


def test_the_office_registers_a_new_entity_for_a_queued_complaint(office):
    from schemas.events import EntityEvent

    w, port, _ = office
    conv = RowConverter(load_layout("complaints"), load_catalog(), Matcher(REGISTRY), "import:12345:test")
    row = [
        "GD20261127020",
        "2026-11-27 16:00:00",
        "新开的奶茶店没有健康证",
        "蜜语奶茶",
        "文峰乡政府路6号",
        "卫生状况",
        "文峰乡",
    ]
    q = conv.convert(7, dict(zip(COMPLAINT_HEADERS, row, strict=True)))
    assert isinstance(q, Queued) and q.item.candidates == []
    _insert(port, "match_queue", match_queue_row(q.item))
    c = w.client("taskforce")
    tok = csrf_of(c.get("/taskforce/matching").text)
    form = {
        "csrf_token": tok,
        "name": "舞阳县蜜语奶茶店",
        "kind": "catering",
        "township": "文峰乡",
        "address": "政府路6号",
    }
    r = c.post(f"/taskforce/matching/{q.item.queue_id}/register", data={**form, "credit_code": "91411121MA40000001"})
    assert r.status_code == 400 and "校验位错误" in r.text
    r = c.post(f"/taskforce/matching/{q.item.queue_id}/register", data=form)
    assert r.status_code == 303
    s = w.settings
    reg = [EntityEvent.model_validate_json(m.value) for m in read_all(s, s.topic("events.registry"))]
    new = [e for e in reg if e.name == "舞阳县蜜语奶茶店"]
    assert len(new) == 1 and new[0].entity_id.startswith("new-") and new[0].action.value == "registered"
    got = [Complaint.model_validate_json(m.value) for m in read_all(s, s.topic("events.complaint"))]
    mine = [e for e in got if e.event_id == q.item.queue_id]
    assert len(mine) == 1 and mine[0].entity_id == new[0].entity_id and mine[0].match.method.value == "office"


def test_the_office_uploads_an_export_and_sees_the_report(office, tmp_path):
    w, _, _ = office
    c = w.client("taskforce")
    tok = csrf_of(c.get("/taskforce/imports").text)
    rows = [list(r) for r in COMPLAINT_ROWS]
    rows[1][1] = "2026-02-30 10:00"  # bad date, row 3
    p = write_xlsx(tmp_path / "12345工单.xlsx", COMPLAINT_HEADERS, rows)
    files = {"file": (p.name, p.read_bytes(), "application/octet-stream")}
    r = c.post("/taskforce/imports", data={"kind": "complaints"}, files=files)
    assert r.status_code == 403  # the token rides in the action URL
    before = len(read_all(w.settings, w.settings.topic("events.complaint")))
    r = c.post(f"/taskforce/imports?csrf_token={tok}", data={"kind": "complaints", "dry_run": "1"}, files=files)
    assert r.status_code == 200 and "试运行" in r.text and "拒收 1 行" in r.text
    assert len(read_all(w.settings, w.settings.topic("events.complaint"))) == before  # dry run: nothing sent
    r = c.post(f"/taskforce/imports?csrf_token={tok}", data={"kind": "complaints"}, files=files)
    assert r.status_code == 200 and "已发送 2 条事件" in r.text and "拒收 1 行" in r.text
    assert "来电时间「2026-02-30 10:00」不是有效的日期时间" in r.text and '<td class="num">3</td>' in r.text
    assert "import:12345:taskforce" in r.text
    link = re.search(r'href="(/taskforce/imports/reports/[^"]+)"', r.text)
    assert link and "行号,标识,状态,原因" in c.get(link.group(1)).content.decode("utf-8-sig")
    s = w.settings
    got = wait_for(lambda: len(read_all(s, s.topic("events.complaint"))) >= before + 2 or None, 30, "complaints")
    assert got
    sources = {Complaint.model_validate_json(m.value).source for m in read_all(s, s.topic("events.complaint"))[before:]}
    assert sources == {"import:12345:taskforce"}
    bad = write_xlsx(tmp_path / "缺列.xlsx", COMPLAINT_HEADERS[:3], [r[:3] for r in rows])
    r = c.post(f"/taskforce/imports?csrf_token={tok}", data={"kind": "complaints"},
               files={"file": (bad.name, bad.read_bytes(), "application/octet-stream")})  # fmt: skip
    assert r.status_code == 400 and "缺少必需的列" in r.text and "被反映单位" in r.text
    big = {"file": ("big.csv", b"x" * (w.settings.workbench_max_upload_bytes + 1), "text/csv")}
    assert c.post(f"/taskforce/imports?csrf_token={tok}", data={"kind": "complaints"}, files=big).status_code == 413


def test_screenshots_of_the_matching_page_and_the_import_report(office, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from tests.webtools import browser_login, chromium, screenshot

    w, port, _ = office
    conv = RowConverter(load_layout("complaints"), load_catalog(), Matcher(REGISTRY), "import:12345:op")
    row = ["GD20261127009", "2026-11-27 14:00:00", "康宁药房卖的感冒药过期", "康宁大药房", "", "药品销售", ""]
    q = conv.convert(9, dict(zip(COMPLAINT_HEADERS, row, strict=True)))
    assert isinstance(q, Queued)
    _insert(port, "match_queue", match_queue_row(q.item))
    d = chromium(tmp_path)
    try:
        browser_login(d, w, "taskforce")
        d.get(w.url + "/taskforce/matching")
        assert "康宁大药房" in d.page_source
        screenshot(d, "taskforce_matching")
        d.get(w.url + "/taskforce/imports")
        rows = [list(r) for r in COMPLAINT_ROWS]
        rows[1][5] = "噪音扰民"
        p = write_xlsx(tmp_path / "12345工单-11月.xlsx", COMPLAINT_HEADERS, rows)
        Select(d.find_element(By.NAME, "kind")).select_by_value("complaints")
        d.find_element(By.NAME, "file").send_keys(str(p))
        d.find_element(By.NAME, "dry_run").click()
        d.find_element(By.CSS_SELECTOR, "#import-form button").click()
        wait_for(lambda: d.find_elements(By.ID, "import-report"), 30, "the import report")
        assert "噪音扰民" in d.page_source
        screenshot(d, "taskforce_import_report")
    finally:
        d.quit()
