"""The task-force office in the browser, on a real pipeline (broker, worker, workbench, Chromium):

- 研判 定性: an entity of a kind without an item sits in the 研判 queue and its alert goes to the office only; the
  office defines a new kind with its lead (消防) and cooperating departments; the next alert of that kind goes to
  the new lead at once (no restart), and the entity has moved to the kind;
- 研判 派发 / 合并 / 驳回 / 报市专班 on an alert: a 合并 leaves a row on the target alert's history and page;
- 议事会商: the office convenes a consultation on that alert (the invitations reach Alertmanager), records the minutes
  and a decision; the decision is a task on the owner department's task list, and the alert page shows the line.

Screenshots: var/screenshots/office_*.png.
"""

from __future__ import annotations

import shutil
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from riskwatch.settings import DATA_DIR
from riskwatch.tools.runner import wait_for
from schemas.events import LOCAL_TZ
from tests import factories as F
from tests.webtools import ACCOUNTS, browser_login, chromium, screenshot, start_web, wait_text

pytestmark = pytest.mark.timeout(480)
SHARED: dict[str, str] = {}  # the first flow's alert, for the consultation


class FakeAlertmanager:
    """Takes ``POST /api/v2/alerts`` and keeps what it got."""

    def __init__(self) -> None:
        got: list[dict] = []
        self.got = got

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                got.extend(orjson.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def office(broker, tmp_path_factory):
    import uuid

    from streams.runtime.topics import delete_topics
    from tests.conftest import Pipeline, free_port

    tmp = tmp_path_factory.mktemp("office")
    run = uuid.uuid4().hex[:8]
    data = tmp / "data"
    data.mkdir()
    shutil.copy(DATA_DIR / "catalog.yaml", data / "catalog.yaml")  # kinds_local.yaml is written beside it
    am = FakeAlertmanager()
    s = broker.model_copy(
        update=dict(
            topic_prefix=f"t{run}.",
            app_id=f"riskwatch-test-{run}",
            web_port=free_port(),
            clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
            state_dir=tmp / "state",
            partitions=2,
            catalog_path=data / "catalog.yaml",
            alertmanager_url=am.url,
            stall_exit_seconds=45.0,
            commit_stall_exit_seconds=60.0,
        )
    )
    p = Pipeline(s, tmp)
    web = start_web(s, tmp, accounts={**ACCOUNTS, "fire": ("dept", "fire", "孙七")})
    worker = p.start_worker(web_public_url=web.url)
    browser = chromium(tmp)
    yield p, worker, web, browser, am, data
    browser.quit()
    web.stop()
    p.close()
    am.server.shutdown()
    delete_topics(s, [s.topic_prefix, s.app_id + "-"])


def _alert(w, eid: str) -> dict:
    return wait_for(
        lambda: w.query(
            f"SELECT alert_id, departments, item_id FROM riskwatch.alerts FINAL WHERE entity_id = '{eid}' "
            "AND status = 'firing'"
        ),
        120,
        f"an alert on {eid}",
    )[0]


def test_the_office_defines_a_new_kind_and_the_next_alert_goes_to_its_lead(office):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, b, _, data = office
    p.send("events.registry", F.registered("E-ebike1", kind="new_business", name="舞泉镇某某电动车充电场"))
    p.flush()
    p.wait_consumed()
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor("E-ebike1", v))
    p.flush()
    first = _alert(w, "E-ebike1")
    assert first["departments"] == ["taskforce"] and first["item_id"] is None  # nobody's: the office decides
    p.wait_consumed()

    browser_login(b, web, "taskforce")
    b.get(web.url + "/taskforce/judge")
    wait_text(b, "#judge-entities", "舞泉镇某某电动车充电场", timeout=60, refresh=True)
    wait_text(b, "#judge-low", first["alert_id"], timeout=60, refresh=True)
    screenshot(b, "office_judge_queue")

    b.find_element(By.CSS_SELECTOR, '#judge-entities tr[data-entity="E-ebike1"] a.define-for').click()
    assert b.find_element(By.ID, "define-entity").get_attribute("value") == "E-ebike1"
    b.find_element(By.ID, "define-code").send_keys("ebike_charging")
    b.find_element(By.ID, "define-name").send_keys("电动自行车集中充电场所")
    Select(b.find_element(By.ID, "define-lead")).select_by_value("fire")
    for d in ("emergency", "housing"):
        b.find_element(By.CSS_SELECTOR, f'#define-form input[name="cooperating"][value="{d}"]').click()
    b.find_element(By.ID, "define-reason").send_keys("充电场所火灾风险突出,由县消防救援局牵头,应急、住建配合")
    b.find_element(By.ID, "define-submit").click()
    wait_text(b, "#judge-done", "已提交", timeout=30)
    assert "电动自行车集中充电场所" in b.find_element(By.ID, "local-kinds").text
    assert "ebike_charging" in (data / "kinds_local.yaml").read_text(encoding="utf-8")
    wait_text(b, "#judged", "定性", timeout=60, refresh=True)
    screenshot(b, "office_judge_defined")

    # the entity moved to the kind (the registry update), and the next alert of the kind goes to its new lead
    wait_for(
        lambda: w.query("SELECT kind FROM riskwatch.registry FINAL WHERE entity_id = 'E-ebike1' "
                        "AND kind = 'ebike_charging'"),
        90,
        "the entity's new kind",
    )  # fmt: skip
    p.send("events.registry", F.registered("E-ebike2", kind="ebike_charging", name="吴城镇某某充电站"))
    p.flush()
    p.wait_consumed()
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor("E-ebike2", v))
    p.flush()
    nxt = _alert(w, "E-ebike2")
    assert nxt["departments"][:3] == ["fire", "emergency", "housing"], nxt
    assert nxt["item_id"] is not None and nxt["item_id"] > 100

    browser_login(b, web, "fire")
    b.get(web.url + "/inbox")
    wait_text(b, "#inbox", "吴城镇某某充电站", timeout=60, refresh=True)
    screenshot(b, "office_new_lead_inbox")
    SHARED["alert_id"] = nxt["alert_id"]


def test_a_consultation_decision_becomes_a_task_on_the_departments_list(office):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p, w, web, b, am, _ = office
    aid = SHARED.get("alert_id")
    if aid is None:  # run on its own: an alert of the office's own
        p.send("events.registry", F.registered("E-cons", kind="food_producer", name="舞泉镇某某食品厂"))
        p.flush()
        p.wait_consumed()
        for v in (11.0, 11.5, 11.8):
            p.send("events.sensor", F.sensor("E-cons", v))
        p.flush()
        aid = _alert(w, "E-cons")["alert_id"]
    browser_login(b, web, "taskforce")
    b.get(web.url + "/taskforce/consultations")
    b.find_element(By.ID, "c-title").send_keys("电动自行车充电场所冷链与消防隐患会商")
    b.find_element(By.ID, "c-alerts").send_keys(aid)
    for d in ("fire", "emergency"):
        b.find_element(By.CSS_SELECTOR, f'#convene-form input[name="departments"][value="{d}"]').click()
    b.find_element(By.ID, "c-agenda").send_keys("一、通报预警情况;二、明确整改责任;三、确定检查时限")
    b.find_element(By.ID, "convene").click()
    wait_text(b, "#consult-done", "已通知参会部门", timeout=30)
    assert {a["labels"]["department"] for a in am.got if a["labels"]["notification"] == "consultation"} == {
        "fire",
        "emergency",
    }
    cid = b.find_element(By.CSS_SELECTOR, "#consult-done a").text
    wait_text(b, "#consultations", "已召集", timeout=60, refresh=True)
    screenshot(b, "office_consultations")

    b.get(f"{web.url}/taskforce/consultations/{cid}")
    b.find_element(By.ID, "m-minutes").send_keys("会议认为充电场所需立即开展联合检查,由应急管理局负责落实。")
    b.find_elements(By.CSS_SELECTOR, "input.d-text")[0].send_keys("三日内对充电场所开展安全生产检查")
    Select(b.find_elements(By.CSS_SELECTOR, "select.d-dept")[0]).select_by_value("emergency")
    due = (datetime.now(LOCAL_TZ) + timedelta(days=3)).strftime("%Y-%m-%d")
    b.execute_script("arguments[0].value = arguments[1]", b.find_elements(By.CSS_SELECTOR, "input.d-due")[0], due)
    b.find_element(By.ID, "record-minutes").click()
    wait_text(b, "#c-status", "已形成决定", timeout=90, refresh=True)
    wait_text(b, "#decisions", "已下达", timeout=90, refresh=True)
    screenshot(b, "office_consultation_decided")

    task = wait_for(
        lambda: w.query(f"SELECT task_id, department, ref FROM riskwatch.events_task FINAL WHERE ref = '{cid}'"),
        60,
        "the decision's task",
    )[0]
    assert task["department"] == "emergency" and task["task_id"] == f"{cid}-D1"
    # the office chain: convened and concluded, linked
    links = w.query(f"SELECT seq, prev_hash, hash, status FROM riskwatch.consultations FINAL "
                    f"WHERE consultation_id = '{cid}' ORDER BY seq")  # fmt: skip
    assert [r["status"] for r in links] == ["convened", "concluded"]

    entity = w.query(f"SELECT entity_id FROM riskwatch.alerts FINAL WHERE alert_id = '{aid}'")[0]["entity_id"]
    b.get(f"{web.url}/entities/{entity}")  # the dossier: one line per consultation on the entity's alerts
    wait_text(b, "#consultation-line", "电动自行车充电场所冷链与消防隐患会商", timeout=30, refresh=True)

    browser_login(b, web, "emergency")
    b.get(web.url + "/tasks")
    wait_text(b, "main", "三日内对充电场所开展安全生产检查", timeout=60, refresh=True)
    screenshot(b, "office_decision_task")

    browser_login(b, web, "fire")
    b.get(f"{web.url}/alerts/{aid}")
    wait_text(b, "#consultation-line", "议事会商", timeout=30, refresh=True)


def test_dispatch_reject_and_a_city_referral_answered_through_the_city_link(office):
    from tests.webtools import csrf_of

    p, w, web, _, _, _ = office
    for user in ("amr", "leader"):
        assert web.client(user).get("/taskforce/judge").status_code == 403
    c = web.client("taskforce")
    page = c.get("/taskforce/judge")
    assert page.status_code == 200
    tok = csrf_of(page.text)
    p.send("events.registry", F.registered("E-kiosk", kind="new_business", name="舞泉镇某某直播带货点"))
    p.flush()
    p.wait_consumed()
    for v in (11.0, 11.5, 11.8):
        p.send("events.sensor", F.sensor("E-kiosk", v))
    p.flush()
    aid = _alert(w, "E-kiosk")["alert_id"]
    base = {"csrf_token": tok, "subject": "alert", "subject_id": aid, "entity_id": "E-kiosk"}

    # no reason: refused, nothing recorded
    r = c.post("/taskforce/judge/act", data={**base, "action": "reject", "reason": ""})
    assert r.status_code == 400 and "理由" in r.text
    # 派发 to amr and police: a task each, and the alert's receivers change (改派, in the alert's own chain)
    why = "直播带货点售卖冷链食品,市场监管牵头"
    form = {**base, "action": "dispatch", "departments": ["amr", "police"], "due_days": "5", "reason": why}
    r = c.post("/taskforce/judge/act", data=form)
    assert r.status_code == 303, r.text
    tasks = wait_for(
        lambda: (rows := w.query(f"SELECT department FROM riskwatch.events_task FINAL WHERE ref = '{aid}' "
                                 "AND startsWith(task_id, 'J-')")) and len(rows) == 2 and rows,
        90,
        "the dispatched tasks",
    )  # fmt: skip
    assert sorted(t["department"] for t in tasks) == ["amr", "police"]
    wait_for(
        lambda: w.query(f"SELECT 1 FROM riskwatch.alerts FINAL WHERE alert_id = '{aid}' AND has(departments, 'amr')"),
        90,
        "the alert reassigned to amr",
    )
    hist = w.query(f"SELECT actor, comment FROM riskwatch.alert_history FINAL WHERE alert_id = '{aid}' "
                   "AND kind = 'feedback'")  # fmt: skip
    assert any("专班研判派发" in h["comment"] and h["actor"].startswith("taskforce") for h in hist)

    # 合并: an unmatched complaint joins the alert; the alert's own history and page show it, its receivers are told
    merge = {**base, "action": "merge", "target": aid, "reason": "同一地址的冷链食品投诉"}
    assert c.post("/taskforce/judge/act", data=merge).status_code == 400  # not into itself
    r = c.post("/taskforce/judge/act", data={**merge, "subject": "complaint", "subject_id": "Q-merge1"})
    assert r.status_code == 303, r.text
    row = wait_for(
        lambda: w.query(f"SELECT actor, comment FROM riskwatch.alert_history FINAL WHERE alert_id = '{aid}' "
                        "AND kind = 'feedback' AND startsWith(comment, 'merged')"),
        90,
        "the merge row on the target alert",
    )[0]  # fmt: skip
    assert row["actor"].startswith("taskforce/") and "未匹配投诉 Q-merge1:同一地址的冷链食品投诉" in row["comment"]
    for d in ("amr", "police"):  # one revision on each receiver's topic (alerts.<dept>)
        told = [m for _, v in p.read_topic(f"alerts.{d}") if (m := orjson.loads(v))["alert_id"] == aid]
        assert [sorted(m["recipients"]) for m in told if m["notification"] == "merged"] == [["amr", "police"]]
    page = c.get(f"/alerts/{aid}").text
    assert "合并线索" in page and "Q-merge1" in page

    # 报市专班: the referral leaves on office.city; the city's answer (a task relayed by the city link) closes it
    r = c.post("/taskforce/judge/act", data={**base, "action": "city", "reason": "跨县经营,请市专班协调管辖"})
    assert r.status_code == 303
    jid = r.headers["location"].split("done=")[1]
    ref = f"R-{jid[2:]}"
    sent = [orjson.loads(v) for _, v in p.read_topic("office.city")]
    assert any(m["target"] == ref and m["status"] == "awaiting_city" for m in sent)
    page = wait_for(lambda: (t := c.get("/taskforce/judge").text) and ref in t and t, 60, "the referral listed")
    assert "待市专班答复" in page
    answer = F.task("E-kiosk", department="commerce", item_id=None, task_id=f"city-{ref}")
    answer.update(ref=ref, note="市专班:由县商务局牵头核查", source="city")
    p.send("events.task.city", answer)
    p.flush()
    wait_for(lambda: "市专班已答复" in c.get("/taskforce/judge").text, 90, "the city's answer on the page")

    # the office chain: every decision a link, in order, none missing
    links = w.query(
        "SELECT seq, prev_hash, hash FROM (SELECT seq, prev_hash, hash FROM riskwatch.judgements FINAL "
        "UNION ALL SELECT seq, prev_hash, hash FROM riskwatch.consultations FINAL) ORDER BY seq"
    )
    assert [x["seq"] for x in links] == list(range(1, len(links) + 1))
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(links, links[1:], strict=False))
