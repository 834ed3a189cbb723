"""The workbench in a real Chromium, on the real broker, a real worker and the real ClickHouse engine.

Flow of issue #10: sensor readings raise an item-1 alert; amr logs in, finds it in the inbox, opens
it, acknowledges it with a comment; the page shows 已签收 once the worker processed it;
``alert_history`` holds the feedback with the user as actor; police (not a receiver) does not see
it, gets 403 for its URL and for a forged action, and nothing is produced. Screenshots go to
var/screenshots/."""

from __future__ import annotations

import orjson
import pytest

from riskwatch.tools.runner import wait_for
from tests import factories as F
from tests.webtools import browser_login, csrf_of, screenshot, start_web, wait_text

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(scope="module")
def shared(web_stack):
    """The browser modules' one pipeline, worker, app and browser (``web_stack``, tests/conftest.py): this
    module's flows use entities of their own, so they do not disturb each other or the other modules'."""
    return web_stack


def _feedback_msgs(p, dept: str | None = None) -> list[dict]:
    """The workbench writes to the logged-in user's department's topic (events.feedback.<dept>); topics are not
    ordered among each other, so "the latest" is asked of one department's topic."""
    depts = [dept] if dept else list(p.catalog.departments)
    return [orjson.loads(v) for d in depts for _, v in p.read_topic(f"events.feedback.{d}")]


def test_department_acknowledges_alert_in_browser_and_non_receiver_is_refused(shared):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, browser = shared
    p.send("events.registry", F.registered("E-food", kind="food_producer", name="舞泉镇鑫源食品有限公司"))
    # registry, complaints and readings are different topics: no order between them unless the test waits
    # (an event of a not yet registered entity goes to the task-force office, without item 1)
    p.flush()
    p.wait_consumed()
    c = F.complaint("E-food", category="hygiene")
    c["text"] = "后厨有老鼠<script>alert(1)</script> 联系电话13812345678"
    p.send("events.complaint", c)
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor("E-food", v))
    p.flush()
    alert = wait_for(
        lambda: w.query(
            "SELECT alert_id, departments FROM riskwatch.alerts FINAL "
            "WHERE entity_id = 'E-food' AND item_id = 1 AND status = 'firing'"
        ),
        90,
        "the item-1 alert",
    )[0]
    aid = alert["alert_id"]
    assert set(alert["departments"]) >= {"amr", "emergency", "eco"} and "police" not in alert["departments"]
    # the alert row comes from alerts.all (the alert sink), the complaint's row from the entity agent's next
    # commit: the alert page below shows the complaint, so wait until every input is stored
    p.wait_consumed()
    sent = [orjson.loads(v) for _, v in p.read_topic("alerts.amr")]
    assert any(m["alert_id"] == aid and m["url"] == f"{web.url}/alerts/{aid}" for m in sent)

    # amr: inbox → alert page → 签收 with a comment
    browser_login(browser, web, "amr")
    wait_text(browser, "#inbox a.alert-link", "", timeout=30, refresh=True)
    rows = browser.find_elements(By.CSS_SELECTOR, f'#inbox tr[data-alert-id="{aid}"]')
    assert rows, "the alert is listed in amr's inbox"
    screenshot(browser, "inbox")
    rows[0].find_element(By.CSS_SELECTOR, "a.alert-link").click()
    wait_for(lambda: f"/alerts/{aid}" in browser.current_url, 30, "the alert page")
    assert "待签收" in browser.find_element(By.ID, "alert-status").text
    page = browser.page_source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page  # escaped
    assert "13812345678" not in page  # masked
    screenshot(browser, "alert")
    before = len(_feedback_msgs(p))
    browser.find_element(By.ID, "ack-comment").send_keys("已安排执法人员现场核查")
    browser.find_element(By.ID, "btn-ack").click()
    wait_for(lambda: "wait=" in browser.current_url, 30, "the action to be submitted")
    # the page says it waits for the worker, then shows the new state (it refreshes itself)
    wait_text(browser, "#alert-status", "已签收", timeout=90)
    # the status comes from the alerts table, the confirmation also needs the alert_history row (another
    # topic, another insert): the page may show the new status while it still waits for that row
    wait_text(browser, "#confirmed", "", timeout=90)
    amr_row = browser.find_element(By.CSS_SELECTOR, '#receivers tr[data-dept="amr"]')
    assert "已签收" in amr_row.text and "张三" in amr_row.text
    screenshot(browser, "alert_acknowledged")
    hist = w.query(
        f"SELECT actor, comment FROM riskwatch.alert_history FINAL WHERE alert_id = '{aid}' AND kind = 'feedback'"
    )
    assert [h["actor"] for h in hist] == ["amr/张三"] and "已安排执法人员现场核查" in hist[0]["comment"]
    fb = _feedback_msgs(p)
    amr_fb = _feedback_msgs(p, "amr")
    assert len(fb) == before + 1 and amr_fb[-1]["department"] == "amr" and amr_fb[-1]["user"] == "张三"

    # the dossier and the public service manual
    browser.get(f"{web.url}/entities/E-food")
    wait_text(browser, "h1", "舞泉镇鑫源食品有限公司", timeout=30)
    screenshot(browser, "dossier")
    browser.get(f"{web.url}/public/items/1")
    wait_text(browser, "h1", "食品生产企业综合监管", timeout=30)
    screenshot(browser, "public_manual")

    # police: not a receiver — not listed, 403 on the URL, 403 on a forged action, nothing produced
    browser_login(browser, web, "police")
    assert not browser.find_elements(By.CSS_SELECTOR, f'#inbox tr[data-alert-id="{aid}"]')
    browser.get(f"{web.url}/alerts/{aid}")
    assert "无权查看" in browser.find_element(By.TAG_NAME, "h1").text
    police = web.client("police")
    assert police.get(f"/alerts/{aid}").status_code == 403
    tok = csrf_of(police.get("/inbox").text)
    r = police.post(f"/alerts/{aid}/feedback", data={"csrf_token": tok, "action": "acknowledged", "comment": "x"})
    assert r.status_code == 403
    p.flush()
    assert len(_feedback_msgs(p)) == before + 1  # nothing produced for police

    # emergency answers 非本部门 (the office sees it to decide); a later 签收 of emergency is refused by the worker
    em = web.client("emergency")
    tok = csrf_of(em.get(f"/alerts/{aid}").text)
    r = em.post(
        f"/alerts/{aid}/feedback", data={"csrf_token": tok, "action": "not_ours", "comment": "不属于本部门监管范围"}
    )
    wait_for(lambda: "反馈已由处理引擎确认" in em.get(r.headers["location"]).text, 90, "the not_ours feedback")
    r = em.post(f"/alerts/{aid}/feedback", data={"csrf_token": tok, "action": "acknowledged"})
    wait_for(lambda: "处理引擎未受理本次反馈" in em.get(r.headers["location"]).text, 90, "the worker's refusal shown")
    office = web.client("taskforce").get("/taskforce").text
    assert f"/alerts/{aid}" in office and "不属于本部门监管范围" in office

    n = len(_feedback_msgs(p))  # amr's and emergency's feedback so far

    # an action the worker has not confirmed: the page waits (refreshing), after a minute it says so and stops
    import time

    from web.records import Records
    from web.sqlite import state_path

    rec = Records(state_path(web.settings.workbench_dir))  # events emergency submitted (?wait= looks only at its own)
    rec.submitted("emergency", aid, "web-not-processed", at=time.time())
    rec.submitted("emergency", aid, "web-not-processed-2", at=time.time() - 61)
    page = em.get(f"/alerts/{aid}?wait=web-not-processed&since={int(time.time() * 1000)}").text
    assert 'id="waiting"' in page and 'http-equiv="refresh"' in page
    page = em.get(f"/alerts/{aid}?wait=web-not-processed-2&since={int(time.time() * 1000) - 61_000}").text
    assert 'id="stalled"' in page and "不会丢失" in page and 'http-equiv="refresh"' not in page

    # a county leader reads everything and acts on nothing
    leader = web.client("leader")
    assert leader.get(f"/alerts/{aid}").status_code == 200 and "只读账号" in leader.get(f"/alerts/{aid}").text
    r = leader.post(
        f"/alerts/{aid}/feedback", data={"csrf_token": csrf_of(leader.get("/inbox").text), "action": "acknowledged"}
    )
    assert r.status_code == 403
    assert leader.get("/taskforce").status_code == 200 and police.get("/taskforce").status_code == 403
    p.flush()
    assert len(_feedback_msgs(p)) == n

    # the task-force office decides (改派): agri becomes responsible, emergency (which refused) is released
    assert amr_client_reassign(web, aid).status_code == 403  # only the office may
    browser_login(browser, web, "taskforce")
    browser.get(f"{web.url}/taskforce")
    browser.find_element(By.CSS_SELECTOR, f'#not-ours a[href="/alerts/{aid}#reassign"]').click()
    wait_for(lambda: f"/alerts/{aid}" in browser.current_url, 30, "the alert page")
    Select(browser.find_element(By.ID, "assign-to")).select_by_value("agri")
    browser.find_element(By.ID, "reassign-reason").send_keys("经研判属农产品种植环节,由县农业农村局负责")
    browser.find_element(By.ID, "btn-reassign").click()
    wait_text(browser, "#receivers", "县农业农村局", timeout=90)
    wait_text(browser, "#confirmed", "", timeout=90)  # as above: the receivers before the history row
    assert "已改派他部门" in browser.find_element(By.CSS_SELECTOR, '#receivers tr[data-dept="emergency"]').text
    assert "专班改派 → 县农业农村局" in browser.find_element(By.ID, "timeline").text
    headline = browser.find_element(
        By.CSS_SELECTOR, "p.message"
    ).text  # who is responsible now, not emergency's release
    assert "由县农业农村局负责" in headline and "无需继续处置" not in headline, headline
    screenshot(browser, "alert_reassigned")
    hist = w.query(
        f"SELECT actor, comment FROM riskwatch.alert_history FINAL WHERE alert_id = '{aid}' "
        "AND kind IN ('feedback', 'receivers') AND actor LIKE 'taskforce%' ORDER BY seq"
    )
    assert [h["actor"] for h in hist] == ["taskforce/王五"] * 2 and hist[1]["comment"] == "+agri -emergency"
    a = w.query(f"SELECT departments FROM riskwatch.alerts FINAL WHERE alert_id = '{aid}'")[0]
    assert a["departments"] == ["amr", "eco", "agri"]
    assert any(
        m["alert_id"] == aid and m["notification"] == "receiver_added"
        for m in (orjson.loads(v) for _, v in p.read_topic("alerts.agri"))
    )
    assert f"/alerts/{aid}" not in web.client("taskforce").get("/taskforce").text  # decided: off the office's list
    # emergency (released) is told on alerts.emergency, with this page's link: it reads it, it no longer acts
    freed = wait_for(
        lambda: [
            m
            for m in (orjson.loads(v) for _, v in p.read_topic("alerts.emergency"))
            if m["alert_id"] == aid and m["notification"] == "released"
        ],
        60,
        "emergency's release",
    )
    assert (
        len(freed) == 1
        and freed[0]["recipients"] == ["emergency"]
        and "县应急管理局无需继续处置" in freed[0]["message"]
    )
    page = wait_for(
        lambda: (r := em.get(f"/alerts/{aid}")).status_code == 200 and "改派释放 → 县应急管理局" in r.text and r,
        60,
        "the released department's read-only page",
    )
    assert 'id="released-note"' in page.text and 'id="btn-ack"' not in page.text and 'id="btn-notours"' not in page.text
    assert (
        em.post(
            f"/alerts/{aid}/feedback", data={"csrf_token": csrf_of(page.text), "action": "acknowledged"}
        ).status_code
        == 403
    )
    # a 改派 sent by a department straight to Kafka (on its own topic) is refused by the worker into the dead letters
    forged = F.feedback("E-food", aid, "amr", "reassign")
    forged.update(assign_to=["police"], comment="x")
    p.send("events.feedback.amr", forged)
    p.flush()
    dl = wait_for(
        lambda: w.query("SELECT error FROM riskwatch.dead_letters WHERE position(error, 'office''s decision') > 0"),
        90,
        "the forged reassign in the dead letters",
    )
    assert "amr" in dl[0]["error"]
    n = len(_feedback_msgs(p))  # with the office's decision and the forged one

    # bad input from amr: each refused with its status, nothing produced
    amr = web.client("amr")
    tok = csrf_of(amr.get("/inbox").text)
    url = f"/alerts/{aid}/feedback"
    assert amr.get("/alerts/NO-SUCH-ALERT").status_code == 404
    assert (
        amr.post("/alerts/NO-SUCH-ALERT/feedback", data={"csrf_token": tok, "action": "acknowledged"}).status_code
        == 404
    )
    assert amr.post(url, data={"csrf_token": tok, "action": "in_progress", "comment": ""}).status_code == 400
    assert amr.post(url, data={"csrf_token": tok, "action": "delete"}).status_code == 400
    big = b"%PDF-" + b"0" * (web.settings.workbench_max_upload_bytes + 1)
    r = amr.post(
        f"{url}?csrf_token={tok}",
        data={"action": "disposed", "result": "x", "verdict": "not_confirmed"},
        files={"attachment": ("r.pdf", big, "application/pdf")},
    )
    assert r.status_code == 413 and "附件不能超过" in r.text
    r = amr.post(
        f"{url}?csrf_token={tok}",
        data={"action": "disposed", "result": "x", "verdict": "not_confirmed"},
        files={"attachment": ("r.exe", b"MZ..", "application/pdf")},
    )
    assert r.status_code == 400 and "只接受" in r.text
    r = amr.post(
        f"{url}?csrf_token={tok}",
        data={"action": "disposed", "result": "x", "verdict": "not_confirmed"},
        files={"attachment": ("r.pdf", b"MZ..", "application/pdf")},
    )
    assert r.status_code == 400  # a .pdf that is not a PDF
    p.flush()
    assert len(_feedback_msgs(p)) == n
    # Kafka down: the action is refused with a message, not lost silently (a second app, same worker)
    from tests.conftest import free_port

    dead = start_web(
        p.settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}),
        p.tmp / "dead",
        accounts={"amr": ("dept", "amr", "张三")},
    )
    try:
        d = dead.client("amr")
        r = d.post(
            url, data={"csrf_token": csrf_of(d.get("/inbox").text), "action": "in_progress", "comment": "现场核查中"}
        )
        assert r.status_code == 503 and "操作未提交" in r.text and "Kafka" in r.text
    finally:
        dead.stop()

    # an allowed attachment is stored content-addressed and the feedback carries its hash
    import hashlib

    pdf = b"%PDF-1.4 disposal report"
    r = amr.post(
        f"{url}?csrf_token={tok}",
        data={"action": "disposed", "result": "已整改,冷库温控恢复", "verdict": "confirmed", "measures": "rectify"},
        files={"attachment": ("report.pdf", pdf, "application/pdf")},
    )
    assert r.status_code == 303
    sha = hashlib.sha256(pdf).hexdigest()
    assert (web.settings.workbench_dir / "attachments" / sha[:2] / f"{sha}.pdf").read_bytes() == pdf
    assert _feedback_msgs(p, "amr")[-1]["attachment_sha256"] == sha
    wait_for(lambda: "已解除" in amr.get(r.headers["location"]).text, 90, "the disposal to resolve the alert")
    assert amr.get(f"/attachments/{sha}").content == pdf
    assert police.get(f"/attachments/{sha}").status_code == 403

    # public pages with a real alert in the store: no alert id, no score, no phone or ID number
    pub = web.client()
    for path in ("/public", "/public/spot-checks", "/public/items/1"):
        html = pub.get(path).text
        assert aid not in html and "风险分" not in html and "13812345678" not in html and "138****5678" not in html


def amr_client_reassign(web, aid: str):
    amr = web.client("amr")
    return amr.post(
        f"/alerts/{aid}/reassign",
        data={"csrf_token": csrf_of(amr.get("/inbox").text), "assign_to": "police", "reason": "x"},
    )


def test_lead_enters_joint_inspection_result_in_browser_and_it_completes_the_tasks(shared):
    """amr (lead of item 1) enters the result of a joint inspection with emergency; the worker
    stores it and the plan's tasks are done: a later task of emergency is not merged with them
    again. The task-force office sees its tables and decides an entity without an item; the public
    spot-check page shows the result without personal data."""
    from datetime import timedelta

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, browser = shared
    p.send("events.registry", F.registered("E-joint", kind="food_producer", name="舞阳县鑫盛食品厂"))
    p.send("events.registry", F.registered("E-new", kind="new_business", name="舞泉镇社区团购自提点"))
    p.flush()
    p.wait_consumed()
    p.send(
        "events.task.taskforce",
        F.task("E-joint", "amr", 1, "spot_check", due=F.BASE + timedelta(days=10), task_id="SC-w-1-amr"),
    )
    p.send(
        "events.task.emergency",
        F.task("E-joint", "emergency", 1, "plan", due=F.BASE + timedelta(days=12), task_id="PL-em-1"),
    )
    p.flush()
    plan = wait_for(
        lambda: w.query(
            "SELECT inspection_id, departments FROM riskwatch.inspection_plans FINAL WHERE entity_id = 'E-joint'"
        ),
        90,
        "the joint plan",
    )[0]
    assert plan["departments"] == ["amr", "emergency"]
    iid = plan["inspection_id"]

    browser_login(browser, web, "amr")
    browser.get(f"{web.url}/tasks")
    row = browser.find_element(By.CSS_SELECTOR, f'#plans tr[data-plan="{iid}"]')
    assert "待检查" in row.text and "县应急管理局" in row.text
    row.find_element(By.LINK_TEXT, "录入结果").click()
    browser.find_element(By.ID, "check_0_yes").click()
    browser.find_element(By.ID, "check_1_no").click()
    browser.find_element(By.ID, "v0_code").send_keys("V12")
    Select(browser.find_element(By.ID, "v0_severity")).select_by_value("serious")
    browser.find_element(By.ID, "v0_description").send_keys("原料进货查验台账缺失<b>")
    Select(browser.find_element(By.ID, "outcome")).select_by_value("pass_with_conditions")
    screenshot(browser, "inspection_form")
    browser.find_element(By.ID, "btn-result").click()
    wait_text(browser, "#plan-state", "已完成", timeout=90)
    rows = w.query(
        "SELECT departments, outcome, violation_severities, inspectors FROM riskwatch.events_inspection FINAL "
        f"WHERE inspection_id = '{iid}'"
    )
    assert rows == [
        {
            "departments": ["amr", "emergency"],
            "outcome": "pass_with_conditions",
            "violation_severities": ["serious"],
            "inspectors": ["amr/张三"],
        }
    ]
    # the plan's tasks are done in the worker: a new emergency task is not merged with the old amr task
    p.send(
        "events.task.emergency",
        F.task("E-joint", "emergency", 1, "plan", due=F.BASE + timedelta(days=13), task_id="PL-em-2"),
    )
    p.flush()
    p.wait_consumed()
    assert sum(orjson.loads(v)["entity_id"] == "E-joint" for _, v in p.read_topic("inspection.plans")) == 1
    browser.get(f"{web.url}/tasks")
    assert "已完成" in browser.find_element(By.CSS_SELECTOR, '#tasks tr[data-task="SC-w-1-amr"]').text

    # public: the spot-check result is published (entity, date, departments, outcome) — nothing else
    browser.get(f"{web.url}/public/spot-checks")
    wait_text(browser, "#spot-checks", "舞阳县鑫盛食品厂", timeout=60, refresh=True)
    assert "限期整改" in browser.find_element(By.ID, "spot-checks").text
    assert "张三" not in browser.page_source and "原料进货查验台账缺失" not in browser.page_source

    # the task-force office: tables, and deciding the entity without an item (a registry update)
    browser_login(browser, web, "taskforce")
    browser.get(f"{web.url}/taskforce")
    assert "督促反馈" in browser.page_source and "待研判主体" in browser.page_source
    row = browser.find_element(By.CSS_SELECTOR, '#unassigned tr[data-entity="E-new"]')
    Select(row.find_element(By.NAME, "kind")).select_by_value("food_producer")
    screenshot(browser, "taskforce")
    row.find_element(By.TAG_NAME, "button").click()
    wait_for(
        lambda: (
            w.query("SELECT kind FROM riskwatch.registry FINAL WHERE entity_id = 'E-new'")
            == [{"kind": "food_producer"}]
        ),
        90,
        "the registry update",
    )


def test_police_answers_a_case_transfer_in_browser_and_others_are_refused(shared):
    """Two counterfeit-drug inspections (D05) are transferred to 县公安局 (行刑衔接). Police finds
    them in its inbox (it is not a receiver of the alerts themselves), sees the transfer and the
    evidence bundle hash, accepts one in the browser and declines the other with a reason over HTTP;
    the worker records ``police/李四`` and returns the declined case to amr. amr (the lead) and the
    leader get 403 for an answer, a decline without reason 400, a second answer 400: nothing produced."""
    from selenium.webdriver.common.by import By

    p, w, web, browser = shared
    drugs = (("E-drug", "舞泉镇康源大药房"), ("E-drug2", "舞泉镇仁和大药房"))
    for eid, name in drugs:
        p.send("events.registry", F.registered(eid, kind="retail_pharmacy", name=name))
    p.flush()
    p.wait_consumed()  # registered before inspected: amr leads (not the office)
    for eid, _ in drugs:
        insp = F.inspection(eid, item_id=2)
        insp["violations"] = [{"code": "D05", "severity": "critical", "description": "销售假药"}]
        p.send("events.inspection.amr", insp)
    p.flush()
    rows = wait_for(
        lambda: (
            (
                r := w.query(
                    "SELECT alert_id, entity_id, evidence_hash, departments FROM riskwatch.alerts FINAL "
                    "WHERE entity_id IN ('E-drug', 'E-drug2') AND transfer = 'transferred'"
                )
            )
            and len(r) == 2
            and r
        ),
        90,
        "the two case transfers",
    )
    by = {r["entity_id"]: r for r in rows}
    aid, aid2, sha = by["E-drug"]["alert_id"], by["E-drug2"]["alert_id"], by["E-drug"]["evidence_hash"]
    assert sha and "police" not in by["E-drug"]["departments"] and "amr" in by["E-drug2"]["departments"]

    # police: the inbox lists both transfers; the alert page shows the transfer, the hash, the export command
    browser_login(browser, web, "police")
    browser.get(f"{web.url}/inbox?transfer=pending&status=all")
    wait_text(browser, f'#inbox tr[data-alert-id="{aid}"]', "案件移送·待受理", timeout=30, refresh=True)
    assert browser.find_elements(By.CSS_SELECTOR, f'#inbox tr[data-alert-id="{aid2}"]')
    assert "移送待受理" in browser.find_element(By.ID, "count-transfers").text
    screenshot(browser, "inbox_transfer")
    browser.find_element(By.CSS_SELECTOR, f'#inbox tr[data-alert-id="{aid}"] a.alert-link').click()
    wait_for(lambda: f"/alerts/{aid}" in browser.current_url, 30, "the alert page")
    assert "待受理" in browser.find_element(By.ID, "transfer-state").text
    assert "县公安局" in browser.find_element(By.ID, "transfer-to").text
    assert (
        sha in browser.find_element(By.ID, "transfer-hash").text and sha in browser.find_element(By.ID, "bundles").text
    )
    assert f"riskwatch evidence export {aid}" in browser.find_element(By.ID, "export-cmd").text
    assert not browser.find_elements(By.ID, "btn-ack")  # police is no receiver of the alert itself
    screenshot(browser, "alert_transfer")

    # refusals: nothing produced
    before = len(_feedback_msgs(p))
    amr, leader, police = web.client("amr"), web.client("leader"), web.client("police")
    assert "btn-accept" not in amr.get(f"/alerts/{aid}").text
    for c, code in ((amr, 403), (leader, 403)):
        r = c.post(f"/alerts/{aid}/transfer", data={"csrf_token": csrf_of(c.get("/inbox").text), "action": "accepted"})
        assert r.status_code == code, (r.status_code, r.text[:300])
    tok = csrf_of(police.get("/inbox").text)
    r = police.post(f"/alerts/{aid2}/transfer", data={"csrf_token": tok, "action": "declined", "comment": " "})
    assert r.status_code == 400 and "不能为空" in r.text
    assert len(_feedback_msgs(p)) == before

    # police accepts in the browser (the page waits for the worker) and declines the other over HTTP
    browser.find_element(By.ID, "accept-comment").send_keys("已立案 舞公刑立字〔2026〕001号")
    browser.find_element(By.ID, "btn-accept").click()
    r = police.post(
        f"/alerts/{aid2}/transfer",
        data={"csrf_token": tok, "action": "declined", "comment": "涉案金额未达立案标准,退回"},
    )
    assert r.status_code == 303 and "wait=" in r.headers["location"]
    wait_text(browser, "#transfer-state", "已受理", timeout=90)
    assert "李四" in browser.find_element(By.ID, "transfer-answer").text
    assert not browser.find_elements(By.ID, "btn-accept")
    screenshot(browser, "alert_transfer_accepted")
    hist = wait_for(
        lambda: (
            (
                x := w.query(
                    f"SELECT alert_id, to_status, actor FROM riskwatch.alert_history FINAL WHERE "
                    f"alert_id IN ('{aid}', '{aid2}') AND kind = 'transfer' AND to_status != 'returned' ORDER BY "
                    f"alert_id, seq"
                )
            )
            and len(x) == 4
            and x
        ),
        60,
        "the answers in alert_history",
    )
    assert sorted((h["alert_id"], h["to_status"], h["actor"]) for h in hist) == sorted(
        [
            (aid, "transferred", "router"),
            (aid, "accepted", "police/李四"),
            (aid2, "transferred", "router"),
            (aid2, "declined", "police/李四"),
        ]
    )
    page = wait_for(lambda: (t := amr.get(f"/alerts/{aid2}").text) and "已退回" in t and t, 60, "amr sees the return")
    assert "涉案金额未达立案标准" in page
    r = police.post(f"/alerts/{aid}/transfer", data={"csrf_token": tok, "action": "declined", "comment": "x"})
    assert r.status_code == 400  # already answered
