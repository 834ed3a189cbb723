"""The alert life cycle in the running worker (real broker, real ClickHouse engine): firing,
refused feedback, urging and escalation after deadlines, acknowledgement, disposal, resolution,
and the audit trail on ``alerts.events`` and in ``alert_history``.

The worker runs with ``lifecycle_clock=event`` (deadlines follow the events' own time), so the test
moves time forward by sending events, never by sleeping."""

from __future__ import annotations

from datetime import timedelta

import orjson

from riskwatch.tools.runner import wait_for
from tests import factories as F

T0 = F.BASE


def _msgs(p, topic: str) -> list[dict]:
    return [orjson.loads(v) for _, v in p.read_topic(topic)]


def _advance(p, minutes: float) -> None:
    """Move the worker's event clock: an in-limit reading of another entity at T0 + minutes."""
    p.send("events.sensor", F.sensor("E-clock", 0.8, channel="boiler_pressure", at=T0 + timedelta(minutes=minutes)))
    p.flush()


def _feedback(p, alert_id: str, dept: str, status: str, minutes: float) -> None:
    fb = F.feedback("E-boil", alert_id, dept, status)
    fb["occurred_at"] = (T0 + timedelta(minutes=minutes)).isoformat()
    p.send(f"events.feedback.{fb['department']}", fb)
    p.flush()


def test_full_lifecycle_with_urging_escalation_and_refused_feedback(pipeline):
    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    for e in ("E-boil", "E-clock"):
        p.send("events.registry", F.registered(e, kind="special_equipment", name="舞阳县鑫源热力有限公司"))
    p.flush()
    p.wait_consumed()

    # boiler over pressure: red, special equipment (item deadlines: acknowledge within 1 h)
    p.send("events.sensor", F.sensor("E-boil", 1.6, channel="boiler_pressure", at=T0))
    p.flush()
    firing = wait_for(
        lambda: [a for a in _msgs(p, "alerts.amr") if a["notification"] == "firing"], 60, "the firing alert"
    )
    a = firing[0]
    aid, receivers = a["alert_id"], a["departments"]
    assert a["level"] == "red" and a["status"] == "firing" and set(a["recipients"]) == set(receivers)
    assert "taskforce" in receivers and "medinsure" not in receivers
    assert a["ack_due"] is not None

    # feedback from a department that is not a receiver → dead letter with the reason
    _feedback(p, aid, "medinsure", "acknowledged", 10)
    dead = wait_for(
        lambda: [d for d in _msgs(p, "deadletter") if d["topic"].endswith("events.feedback.medinsure")],
        60,
        "refused feedback",
    )
    assert "medinsure" in dead[0]["error"] and "not a receiver" in dead[0]["error"]

    # the lead acknowledges in time; the others do not
    _feedback(p, aid, "amr", "acknowledged", 20)
    # the feedback and the clock event are on different topics, which Kafka does not order: processed
    # first, the clock event could move the deadline past the acknowledgement (an urge to amr too)
    p.wait_consumed()
    _advance(p, 61)  # past the 1 h acknowledgement deadline
    urges = wait_for(lambda: [x for x in _msgs(p, "alerts.all") if x["notification"] == "urge"], 60, "an urging notice")
    assert set(urges[0]["recipients"]) == set(receivers) - {"amr"}  # only those who did not respond
    wait_for(  # the department topics are written with alerts.all, each a moment apart
        lambda: all(any(x["notification"] == "urge" for x in _msgs(p, f"alerts.{d}")) for d in urges[0]["recipients"]),
        60,
        "the urge on each recipient's topic",
    )
    assert not any(x["notification"] == "urge" for x in _msgs(p, "alerts.amr"))

    _advance(p, 60 * 6)  # still no answer from them: escalation to the task-force office
    esc = wait_for(
        lambda: [x for x in _msgs(p, "alerts.taskforce") if x["notification"] == "escalate"], 60, "an escalation"
    )
    assert esc[0]["recipients"] == ["taskforce"] and "督办" in esc[0]["message"]

    # the lead disposes: resolved (resolve_on_disposed: lead), every receiver is told at once
    _feedback(p, aid, "amr", "in_progress", 60 * 6 + 10)
    _feedback(p, aid, "amr", "disposed", 60 * 7)
    resolved = wait_for(
        lambda: [x for x in _msgs(p, "alerts.all") if x["notification"] == "resolved"], 60, "the resolution"
    )
    assert resolved[0]["status"] == "resolved" and set(resolved[0]["recipients"]) == set(receivers)

    # the audit trail: alerts.events, one seq per transition, and the same in ClickHouse
    # (alerts.events is another topic than alerts.all: its last transition may land a moment later)
    events = wait_for(
        lambda: (
            (ev := [e for e in _msgs(p, "alerts.events") if e["alert_id"] == aid])
            and any(e["kind"] == "status" and e["to_status"] == "resolved" for e in ev)
            and ev
        ),
        60,
        "the resolution on alerts.events",
    )
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    statuses = [e["to_status"] for e in events if e["kind"] == "status"]
    assert statuses == ["pending", "firing", "acknowledged", "disposing", "resolved"]
    assert [e["actor"] for e in events if e["kind"] == "feedback"] == ["amr", "amr", "amr"]
    assert any(e["kind"] == "reminder" for e in events)
    p.wait_consumed()
    rows = wait_for(
        lambda: (
            (
                r := w.query(
                    f"SELECT seq, kind, to_status, actor FROM riskwatch.alert_history FINAL "
                    f"WHERE alert_id = '{aid}' ORDER BY seq"
                )
            )
            and len(r) == len(events)
            and r
        ),
        60,
        "the history in ClickHouse",
    )
    assert [(r["seq"], r["kind"], r["to_status"], r["actor"]) for r in rows] == [
        (e["seq"], e["kind"], e["to_status"], e["actor"]) for e in events
    ]
    final = w.query(f"SELECT status, notification FROM riskwatch.alerts FINAL WHERE alert_id = '{aid}'")
    assert final == [{"status": "resolved", "notification": "resolved"}]


def test_silence_holds_notifications_and_its_expiry_is_announced(pipeline):
    import subprocess
    import sys
    import urllib.request

    from riskwatch.tools.runner import settings_env

    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    p.send("events.registry", F.registered("E-maint", kind="special_equipment", name="舞阳县热力公司二号锅炉房"))
    p.send("events.registry", F.registered("E-clock", kind="special_equipment"))
    p.flush()
    p.wait_consumed()
    env = {**__import__("os").environ, **settings_env(p.settings)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "riskwatch.cli.main",
            "silence",
            "add",
            "--entity",
            "E-maint",
            "--hours",
            "2",
            "--starts",
            T0.isoformat(),
            "--by",
            "amr",
            "--comment",
            "锅炉年检停机",
            "--id",
            "S-test",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    metrics = f"http://{w.settings.web_host}:{w.settings.web_port}/metrics"
    wait_for(
        lambda: "riskwatch_silences_known 1.0" in urllib.request.urlopen(metrics, timeout=10).read().decode(),
        30,
        "the worker to read the silence",
    )

    p.send("events.sensor", F.sensor("E-maint", 1.6, channel="boiler_pressure", at=T0 + timedelta(minutes=5)))
    p.flush()
    p.wait_consumed()
    revs = wait_for(lambda: [a for a in _msgs(p, "alerts.all") if a["entity_id"] == "E-maint"], 60, "the alert's state")
    assert revs[0]["status"] == "firing" and revs[0]["notification"] is None  # recorded, not notified
    assert not [a for a in _msgs(p, "alerts.amr") if a["entity_id"] == "E-maint"]

    _advance(p, 60 * 3)  # the silence ended at T0 + 2 h; the alert is still open
    exp = wait_for(
        lambda: [a for a in _msgs(p, "alerts.amr") if a["notification"] == "silence_expired"],
        60,
        "the silence-expired notice",
    )
    assert "静默期结束" in exp[0]["message"]
    events = wait_for(  # alerts.events is written with alerts.amr, a moment apart
        lambda: (
            (
                ev := [
                    e
                    for e in _msgs(p, "alerts.events")
                    if e["alert_id"] == revs[0]["alert_id"] and e["kind"] == "silence"
                ]
            )
            and any("ended" in e["comment"] for e in ev)
            and ev
        ),
        60,
        "the silence's end on alerts.events",
    )
    assert any("S-test" in e["comment"] for e in events)


def test_tasks_of_several_departments_become_one_joint_inspection(pipeline):
    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    # a hospital canteen (catering: item 1, lead amr); health and edu have their own plans for it
    p.send("events.registry", F.registered("E-joint", kind="catering", name="舞阳县人民医院职工食堂"))
    p.flush()
    p.wait_consumed()
    # a spot-check draw for amr (the office's, on its task topic) and a health plan a few days apart:
    # one visit, led by item 1's lead
    p.send(
        "events.task.taskforce",
        F.task("E-joint", "amr", 1, "spot_check", due=T0 + timedelta(days=10), task_id="SC-t-1-amr"),
    )
    p.send(
        "events.task.health",
        F.task("E-joint", "health", None, "plan", due=T0 + timedelta(days=12), task_id="PL-health-9"),
    )
    p.send(
        "events.task.edu", F.task("E-joint", "edu", None, "plan", due=T0 + timedelta(days=60), task_id="PL-edu-far")
    )  # outside the window
    p.flush()
    p.wait_consumed()
    plans = wait_for(lambda: [orjson.loads(v) for _, v in p.read_topic("inspection.plans")], 60, "a joint inspection")
    assert len(plans) == 1
    ji = plans[0]
    assert ji["joint"] and ji["lead"] == "amr" and ji["departments"] == ["amr", "health"]
    assert set(ji["task_ids"]) == {"SC-t-1-amr", "PL-health-9"} and ji["item_ids"] == [1]
    rows = wait_for(
        lambda: w.query("SELECT inspection_id, lead, departments FROM riskwatch.inspection_plans FINAL"),
        60,
        "the plan in ClickHouse",
    )
    assert rows == [{"inspection_id": ji["inspection_id"], "lead": "amr", "departments": ["amr", "health"]}]
    stored = w.query("SELECT count() AS n FROM riskwatch.events_task FINAL WHERE entity_id = 'E-joint'")
    assert stored == [{"n": 3}]
    # the same task again (a re-published draw) plans nothing new
    p.send(
        "events.task.taskforce",
        F.task("E-joint", "amr", 1, "spot_check", due=T0 + timedelta(days=10), task_id="SC-t-1-amr"),
    )
    p.flush()
    p.wait_consumed()
    assert len(p.read_topic("inspection.plans")) == 1


def test_reassign_tells_the_released_lead_and_moves_its_onsite_check(pipeline):
    """专班改派 in the running worker: amr (lead) answers 非本部门, the office makes housing responsible;
    amr gets a ``released`` message on alerts.amr, housing ``receiver_added`` on alerts.housing, and
    the alert's on-site check (AT-<alert>) is housing's in ClickHouse, off amr's 任务 list."""
    from web.routes.tasks import TASKS_SQL

    p = pipeline
    w = p.start_worker(lifecycle_clock="event", lifecycle_tick_seconds=0.5)
    p.send("events.registry", F.registered("E-boil", kind="special_equipment", name="舞阳县鑫源热力有限公司"))
    p.flush()
    p.wait_consumed()
    p.send("events.sensor", F.sensor("E-boil", 1.6, channel="boiler_pressure", at=T0))  # red: an on-site check for amr
    p.flush()
    aid = wait_for(
        lambda: [a for a in _msgs(p, "alerts.amr") if a["notification"] == "firing"], 60, "the firing alert"
    )[0]["alert_id"]

    def amr_tasks(dept: str) -> list[str]:
        sql = TASKS_SQL.replace("{where}", f"department = '{dept}'").replace("{db}", "riskwatch")
        return [r["task_id"] for r in w.query(sql)]

    assert wait_for(lambda: f"AT-{aid}" in amr_tasks("amr"), 60, "amr's on-site check in ClickHouse")
    _feedback(p, aid, "amr", "not_ours", 10)
    fb = F.feedback("E-boil", aid, "taskforce", "reassign")
    fb.update(
        assign_to=["housing"],
        comment="属城镇集中供热设施,由县住建局牵头",
        user="王五",
        occurred_at=(T0 + timedelta(minutes=20)).isoformat(),
    )
    p.send(f"events.feedback.{fb['department']}", fb)
    p.flush()
    freed = wait_for(lambda: [a for a in _msgs(p, "alerts.amr") if a["notification"] == "released"], 60, "amr released")
    assert len(freed) == 1 and freed[0]["recipients"] == ["amr"] and "amr" not in freed[0]["departments"]
    assert (
        "已改由县住建局负责(理由:属城镇集中供热设施" in freed[0]["message"]
        and "县市场监管局无需继续处置" in freed[0]["message"]
    )
    added = [a for a in _msgs(p, "alerts.housing") if a["notification"] == "receiver_added"]
    assert added and added[0]["lead_department"] == "housing"
    assert not [a for a in _msgs(p, "alerts.all") if a["notification"] == "released" and a["recipients"] != ["amr"]]
    p.wait_consumed()
    row = wait_for(
        lambda: w.query(f"SELECT department, due FROM riskwatch.events_task FINAL WHERE task_id = 'AT-{aid}'"),
        60,
        "the moved task",
    )
    assert [r["department"] for r in row] == ["housing"]  # one row: the new version of the task
    assert f"AT-{aid}" not in amr_tasks("amr") and f"AT-{aid}" in amr_tasks("housing")
