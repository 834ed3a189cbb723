"""双告知 and 检查督导 in a real Chromium, on the real broker, a real worker and the real ClickHouse engine.

Flow 4: a new registration's 双告知 reaches 县市场监管局 (amr): it is listed in amr's inbox, amr opens
it and 认领s it; the notice's history records amr/张三 in its hash chain; police (not a recipient)
gets 403 for its page and for a forged answer, and nothing is produced; a second notice disputed by
amr (有异议, with its reason) is on the office's supervision page.

Flow 5: the office sends a 督导单 about that notice from its supervision page; amr sees it in its
inbox, answers it; the office's page lists it as 已答复 with the answer. Screenshots go to
var/screenshots/ (notice_*, supervision_*)."""

from __future__ import annotations

import orjson
import pytest

from riskwatch.tools.runner import wait_for
from streams.engine.notices import notice_id_of
from tests import factories as F
from tests.webtools import browser_login, csrf_of, screenshot, wait_text

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def shared(web_stack):
    """The browser modules' one pipeline, worker, app and browser (``web_stack``, tests/conftest.py): this
    module's flows use entities of their own, so they do not disturb each other or the other modules'."""
    return web_stack


def _notice_of(p, entity_id: str) -> dict:
    return wait_for(
        lambda: [n for _, v in p.read_topic("notices") if (n := orjson.loads(v)).get("entity_id") == entity_id],
        60,
        f"the notice of {entity_id}",
    )[0]


def _answers(p, dept: str) -> list[dict]:
    return [orjson.loads(v) for _, v in p.read_topic(f"events.notice.{dept}")]


def test_dual_notification_confirmed_and_a_supervision_note_answered(shared):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, browser = shared
    p.send("events.registry", F.registered("E-dual", kind="food_producer", name="舞泉镇新开食品有限公司"))
    p.send("events.registry", F.registered("E-dual2", kind="retail_pharmacy", name="舞泉镇康宁大药房"))
    p.flush()
    nid = notice_id_of(_notice_of(p, "E-dual"))
    nid2 = notice_id_of(_notice_of(p, "E-dual2"))
    row = wait_for(
        lambda: w.query(f"SELECT department, status, deadline FROM riskwatch.notices FINAL WHERE notice_id = '{nid}'"),
        90,
        "the delivered notice",
    )
    assert [(r["department"], r["status"]) for r in row] == [("amr", "delivered")]
    deliveries = [orjson.loads(v) for _, v in p.read_topic("notices.delivery")]
    assert any(d["notice_id"] == nid and d["notification"] == "notice" for d in deliveries)  # → Alertmanager

    # amr: inbox → the notice → 认领
    browser_login(browser, web, "amr")
    wait_text(browser, "#notices a.notice-link", "舞泉镇新开食品有限公司", timeout=60, refresh=True)
    screenshot(browser, "notice_inbox")
    browser.find_element(By.CSS_SELECTOR, f'#notices tr[data-notice-id="{nid}"] a.notice-link').click()
    wait_for(lambda: f"/notices/{nid}" in browser.current_url, 30, "the notice page")
    assert "待认领" in browser.find_element(By.ID, "recipients").text
    screenshot(browser, "notice_page")
    browser.find_element(By.CSS_SELECTOR, "#confirm-form button").click()
    wait_text(browser, "#recorded", "已认领", timeout=90)
    screenshot(browser, "notice_confirmed")
    hist = w.query(f"SELECT kind, actor, seq, prev_hash, hash FROM riskwatch.notice_history FINAL "
                   f"WHERE notice_id = '{nid}' ORDER BY seq")  # fmt: skip
    assert [(h["kind"], h["actor"]) for h in hist] == [("delivered", "system"), ("confirmed", "amr/张三")]
    assert hist[1]["prev_hash"] == hist[0]["hash"]

    # police: not a recipient — 403 on the page and on a forged answer, nothing produced
    police = web.client("police")
    assert police.get(f"/notices/{nid}").status_code == 403
    tok = csrf_of(police.get("/inbox").text)
    r = police.post(f"/notices/{nid}/answer", data={"action": "confirm", "csrf_token": tok})
    assert r.status_code == 403 and not _answers(p, "police")

    # amr disputes the second notice (有异议 with a reason): it waits on the office's page
    amr = web.client("amr")
    tok = csrf_of(amr.get(f"/notices/{nid2}").text)
    r = amr.post(
        f"/notices/{nid2}/answer", data={"action": "dispute", "comment": "该药房由县卫健委审批", "csrf_token": tok}
    )
    assert r.status_code == 303
    wait_for(
        lambda: w.query(f"SELECT 1 FROM riskwatch.notices FINAL WHERE notice_id = '{nid2}' AND status = 'disputed'"),
        90,
        "the dispute",
    )

    # the office: supervision page → 督导单 to amr about the first notice
    browser_login(browser, web, "taskforce")
    browser.get(f"{web.url}/supervision")
    wait_text(browser, "#notice-queue", "该药房由县卫健委审批", timeout=60, refresh=True)
    assert browser.find_element(By.CSS_SELECTOR, '#overdue-by-dept tr[data-dept="amr"]')
    Select(browser.find_element(By.CSS_SELECTOR, "#note-form select[name=department]")).select_by_value("amr")
    browser.find_element(By.CSS_SELECTOR, "#note-form input[name=subject]").send_keys(nid)
    browser.find_element(By.CSS_SELECTOR, "#note-form textarea[name=text]").send_keys(
        "请核实新开食品企业的许可情况并反馈"
    )
    browser.find_element(By.CSS_SELECTOR, "#note-form button").click()
    wait_text(browser, "#note-sent", "已发出", timeout=30)
    note = wait_text(browser, "#note-list", "请核实新开食品企业的许可情况", timeout=90, refresh=True)
    screenshot(browser, "supervision_sent")
    sid = browser.find_element(By.CSS_SELECTOR, "#note-list tr[data-notice-id]").get_attribute("data-notice-id")
    assert note and sid.startswith("S")
    assert _answers(p, "taskforce")[-1]["action"] == "send"

    # amr: the 督导单 in its inbox → answer
    browser_login(browser, web, "amr")
    wait_text(browser, "#notices", "请核实新开食品企业的许可情况", timeout=60, refresh=True)
    browser.find_element(By.CSS_SELECTOR, f'#notices tr[data-notice-id="{sid}"] a.notice-link').click()
    wait_for(lambda: f"/notices/{sid}" in browser.current_url, 30, "the note's page")
    browser.find_element(By.CSS_SELECTOR, "#answer-form textarea[name=comment]").send_keys(
        "已现场核实,许可证在有效期内"
    )
    browser.find_element(By.CSS_SELECTOR, "#answer-form button").click()
    wait_text(browser, "#recorded", "已答复", timeout=90)
    screenshot(browser, "supervision_answered_by_dept")

    # the office sees the answer
    browser_login(browser, web, "taskforce")
    browser.get(f"{web.url}/supervision")
    wait_text(browser, f'#note-list tr[data-notice-id="{sid}"]', "已现场核实", timeout=60, refresh=True)
    assert "已答复" in browser.find_element(By.CSS_SELECTOR, f'#note-list tr[data-notice-id="{sid}"]').text
    screenshot(browser, "supervision_page")
    hist = w.query(f"SELECT kind, actor FROM riskwatch.notice_history FINAL WHERE notice_id = '{sid}' ORDER BY seq")
    assert [(h["kind"], h["actor"]) for h in hist] == [("delivered", "taskforce/王五"), ("answered", "amr/张三")]
