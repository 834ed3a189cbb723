"""The simulated departments (riskwatch.tools.simulator.departments, `riskwatch simulate departments`).

Pure tests of :class:`DepartmentPlayer` (determinism, who answers what and when, replayed through
the real life-cycle engine so late answers really cause urging), and one run of the CLI command
against the real broker.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.lifecycle import load_lifecycle
from riskwatch.tools.simulator.departments import CST, DepartmentPlayer
from schemas.events import Alert, DisposalFeedback

ROOT = Path(__file__).resolve().parent.parent
CAT = load_catalog()
LC = load_lifecycle(catalog=CAT)
START = datetime(2026, 3, 2, 8, 0, tzinfo=CST)
LEVEL_ZH = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}


def make_alert(
    alert_id: str,
    entity_id: str,
    item_id: int | None,
    level: str,
    first_seen: datetime,
    status: str = "firing",
    revision: int = 1,
    last_seen: datetime | None = None,
    departments: list[str] | None = None,
) -> dict:
    depts = departments or (list(CAT.receivers(item_id)) if item_id else [CAT.taskforce_office])
    last = last_seen or first_seen
    return {
        "alert_id": alert_id,
        "revision": revision,
        "fingerprint": f"{entity_id}|{item_id or 0}|rule.test",
        "entity_id": entity_id,
        "entity_name": "舞泉镇鑫源食品有限公司",
        "item_id": item_id,
        "rule": "rule.test",
        "level": level,
        "level_zh": LEVEL_ZH[level],
        "status": status,
        "score": 80.0,
        "title": "测试预警",
        "message": "测试预警",
        "lead_department": depts[0],
        "departments": depts,
        "first_seen": first_seen.isoformat(),
        "last_seen": last.isoformat(),
        "updated_at": last.isoformat(),
        "source_event_id": f"src-{alert_id}-{revision}",
    }


def random_alerts(n: int, seed: int = 1) -> list[dict]:
    """n firing alerts over every item and level (red ones also go to the task-force office, as routed)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        item = rng.choice([*CAT.items, None])
        level = rng.choice(["blue", "yellow", "orange", "red"])
        depts = list(CAT.receivers(item)) if item else [CAT.taskforce_office]
        if level == "red" and CAT.taskforce_office not in depts:
            depts.append(CAT.taskforce_office)
        out.append(
            make_alert(f"a{i:04d}", f"E{i:06d}", item, level, START + timedelta(minutes=7 * i), departments=depts)
        )
    return out


def play(alerts: list[dict], steps: int = 5, **kw) -> tuple[DepartmentPlayer, list[dict]]:
    """Feed all alerts, ask for due feedback at a few simulated times, then drain."""
    p = DepartmentPlayer(**kw)
    for a in alerts:
        p.on_alert(a)
    out = []
    for k in range(1, steps + 1):
        out += p.due(START + timedelta(days=2 * k))
    return p, out + p.drain()


def ts(fb: dict) -> datetime:
    return datetime.fromisoformat(fb["occurred_at"])


def by_plan(out: list[dict]) -> dict[tuple[str, str], list[dict]]:
    g: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for fb in out:
        g[(fb["alert_id"], fb["department"])].append(fb)
    return g


@pytest.fixture(scope="module")
def big():
    alerts = random_alerts(400)
    p, out = play(alerts, seed=3)
    return alerts, p, out


# --- determinism ------------------------------------------------------------------------------------
def test_same_seed_and_alerts_give_byte_identical_feedback_in_any_arrival_order():
    alerts = random_alerts(60)
    _, a = play(alerts, seed=5)
    _, b = play(alerts, seed=5)
    assert a and [orjson.dumps(x) for x in a] == [orjson.dumps(x) for x in b]
    _, c = play(alerts, seed=6)
    assert [orjson.dumps(x) for x in c] != [orjson.dumps(x) for x in a]
    # alerts of different entities come from different partitions, in any interleaving
    shuffled = list(alerts)
    random.Random(0).shuffle(shuffled)
    p = DepartmentPlayer(seed=5)
    for x in shuffled:
        p.on_alert(Alert.model_validate(x))  # model or dict: the same
    assert [orjson.dumps(x) for x in p.drain()] == [orjson.dumps(x) for x in a]


def test_outputs_are_valid_disposal_feedback_with_unique_ids_in_time_order(big):
    _, _, out = big
    assert len(out) > 1000
    assert len({fb["event_id"] for fb in out}) == len(out)
    assert [ts(fb) for fb in out] == sorted(ts(fb) for fb in out)
    for fb in out:
        ev = DisposalFeedback.model_validate_json(orjson.dumps(fb), context={"catalog": CAT})
        assert ev.occurred_at.utcoffset() == timedelta(hours=8)
        assert ev.source == ev.department
        assert ev.comment  # Chinese text for the record
        assert bool(ev.result) == (ev.status == "disposed")


# --- who answers what, and when -----------------------------------------------------------------------
def test_every_receiver_answers_unless_silent_and_the_lead_disposes(big):
    alerts, p, out = big
    groups = by_plan(out)
    plans = [x for x in p.truth() if x["role"] != "outsider"]
    assert len(plans) == sum(len(a["departments"]) for a in alerts)
    for plan in plans:
        got = groups.get((plan["alert_id"], plan["department"]), [])
        assert [g["event_id"] for g in got] == plan["event_ids"]
        if plan["behaviour"] == "silent":
            assert got == []
            continue
        assert got[0]["status"] == plan["answer"] in ("acknowledged", "not_ours")
        statuses = [g["status"] for g in got]
        if plan["role"] == "lead":
            assert statuses == ["acknowledged", "in_progress", "disposed"]
        else:
            assert statuses in (["acknowledged"], ["acknowledged", "in_progress"], ["not_ours"])
    behaviours = Counter(x["behaviour"] for x in plans)
    n = len(plans)
    assert 0.11 < behaviours["late"] / n < 0.19, behaviours  # default late_rate 0.15
    assert 0.025 < behaviours["silent"] / n < 0.08, behaviours  # default silent_rate 0.05
    s = p.summary()
    assert s["never"] == behaviours["silent"]
    assert s["late"] == behaviours["late"]
    assert s["sent"] == len(out) and s["pending"] == 0
    assert s["feedback"] == dict(sorted(Counter(fb["status"] for fb in out).items()))


def test_late_answers_come_after_the_lifecycle_ack_deadline_and_on_time_ones_before(big):
    alerts, p, out = big
    groups = by_plan(out)
    alert = {a["alert_id"]: a for a in alerts}
    checked = Counter()
    for plan in p.truth():
        a = alert[plan["alert_id"]]
        d = LC.deadline(a["item_id"], a["level"])  # lifecycle.yaml, per item and level
        anchor = datetime.fromisoformat(plan["anchor"])
        assert anchor == datetime.fromisoformat(a["first_seen"])
        assert datetime.fromisoformat(plan["ack_deadline"]) - anchor == timedelta(hours=d.ack_hours)
        assert datetime.fromisoformat(plan["dispose_deadline"]) - anchor == timedelta(hours=d.dispose_hours)
        got = groups.get((plan["alert_id"], plan["department"]), [])
        if not got:
            continue
        first = ts(got[0])
        assert first > anchor
        if plan["behaviour"] == "late":
            assert first > datetime.fromisoformat(plan["ack_deadline"]), plan
        else:
            assert first <= datetime.fromisoformat(plan["ack_deadline"]), plan
            if plan["role"] == "lead":
                assert ts(got[-1]) < datetime.fromisoformat(plan["dispose_deadline"]), plan
        checked[plan["behaviour"]] += 1
    assert checked["late"] > 50 and checked["on_time"] > 500
    # special equipment (item 8) red: acknowledge within 1 h, not the default 2 h
    assert LC.deadline(8, "red").ack_hours == 1 and LC.deadline(1, "red").ack_hours == 2
    red8 = [x for x in p.truth() if x["item_id"] == 8 and x["level"] == "red"]
    assert red8 and all(
        datetime.fromisoformat(x["ack_deadline"]) - datetime.fromisoformat(x["anchor"]) == timedelta(hours=1)
        for x in red8
    )


def test_not_ours_only_from_cooperating_departments():
    alerts = random_alerts(300, seed=2)
    p, out = play(alerts, seed=4, not_ours_rate=0.4)
    receivers = {a["alert_id"]: a["departments"] for a in alerts}
    lead = {a["alert_id"]: a["lead_department"] for a in alerts}
    not_ours = [fb for fb in out if fb["status"] == "not_ours"]
    assert len(not_ours) > 40
    for fb in not_ours:
        assert fb["department"] in receivers[fb["alert_id"]]
        assert fb["department"] != lead[fb["alert_id"]]
        assert fb["department"] != CAT.taskforce_office
    assert max(Counter(fb["alert_id"] for fb in not_ours).values()) == 1  # at most one per alert
    _, none = play(alerts, seed=4, not_ours_rate=0.0)
    assert not any(fb["status"] == "not_ours" for fb in none)


def test_unauthorised_feedback_comes_from_non_receivers_and_is_marked():
    alerts = random_alerts(300, seed=2)
    receivers = {a["alert_id"]: a["departments"] for a in alerts}
    p, out = play(alerts, seed=4, unauthorised_rate=0.2)
    bad = [fb for fb in out if DepartmentPlayer.is_unauthorised(fb)]
    assert 30 < len(bad) < 100
    assert p.summary()["unauthorised"] == len(bad)
    for fb in out:
        assert (fb["department"] not in receivers[fb["alert_id"]]) == DepartmentPlayer.is_unauthorised(fb["event_id"])
    outsiders = [x for x in p.truth() if x["role"] == "outsider"]
    assert sorted(e for x in outsiders for e in x["event_ids"]) == sorted(fb["event_id"] for fb in bad)
    # the default rate is rare (~2% of alerts)
    p2, out2 = play(random_alerts(1000, seed=9), seed=4)
    assert 5 <= p2.summary()["unauthorised"] <= 40


def _fire(alert: dict):
    """Open the alert in the real life-cycle engine at first_seen; it fires after its pending period.
    Returns the engine state and the firing revision as the pipeline publishes it (with ack_due)."""
    a = Alert.model_validate(alert)
    st, _ = LC.open(
        a.alert_id, a.entity_id, a.rule, a.item_id, a.level.value, a.departments, at=a.first_seen, title=a.title
    )
    fired = a.first_seen + timedelta(minutes=LC.pending_minutes(a.level.value))
    notes = LC.tick(st, fired)
    assert st.status == "firing" and st.fired_at == fired.timestamp()
    assert st.ack_due is not None and st.dispose_due is not None
    rev = {
        **alert,
        "revision": 2,
        "last_seen": fired.isoformat(),
        "updated_at": fired.isoformat(),
        "ack_due": datetime.fromtimestamp(st.ack_due, CST).isoformat(),
        "dispose_due": datetime.fromtimestamp(st.dispose_due, CST).isoformat(),
    }
    return st, notes, rev


def _replay(st, notes: list, fbs: list[dict], until: datetime):
    """The feedback through the engine, with ticks at every deadline (the pipeline's timer)."""
    rejected: dict[str, str] = {}

    def advance(t: float) -> None:
        while st.is_open:
            due = [x for x in (st.ack_due, st.dispose_due) if x is not None]
            if not due or min(due) > t:
                return
            notes.extend(LC.tick(st, min(due)))

    for fb in fbs:
        t = ts(fb).timestamp()
        assert t > st.fired_at  # nobody answers an alert before it was sent
        advance(t)
        if not st.is_open:
            break  # resolved: the player would have seen the revision and cancelled the rest
        res = LC.on_feedback(st, fb["department"], fb["status"], t, fb["comment"])
        if res.rejected:
            rejected[fb["event_id"]] = res.rejected
        notes.extend(res.notifications)
    advance(until.timestamp())
    return notes, rejected


def test_late_and_silent_departments_get_urged_and_escalated_by_the_lifecycle_engine():
    """Alerts wait out their pending period in the engine; the player answers the firing revision
    (which carries the engine's ack_due); the engine urges exactly the late and silent ones."""
    fired = {a["alert_id"]: _fire(a) for a in random_alerts(250, seed=7)}
    p = DepartmentPlayer(seed=8, unauthorised_rate=0.1)
    for _, _, rev in fired.values():
        p.on_alert({**rev, "status": "pending", "revision": 1, "ack_due": None, "dispose_due": None})  # ignored
        p.on_alert(rev)
    assert p.summary()["ignored_revisions"] == len(fired)
    out = p.drain()
    fbs = defaultdict(list)
    for fb in out:
        fbs[fb["alert_id"]].append(fb)
    plans = defaultdict(list)
    for x in p.truth():
        plans[x["alert_id"]].append(x)
    seen = Counter()
    for aid, (st, notes, _rev) in fired.items():
        assert all(datetime.fromisoformat(x["ack_deadline"]).timestamp() == st.ack_due for x in plans[aid])
        assert all(datetime.fromisoformat(x["anchor"]).timestamp() == st.fired_at for x in plans[aid])
        notes, rejected = _replay(st, list(notes), fbs[aid], START + timedelta(days=60))
        urged = {d for n in notes if n.kind == "urge" for d in n.departments}
        kinds = {n.kind for n in notes}
        receivers = [x for x in plans[aid] if x["role"] != "outsider"]
        # unauthorised feedback is refused, everything else is accepted
        for x in plans[aid]:
            for e in x["event_ids"]:
                if e in rejected:
                    assert x["role"] == "outsider", rejected[e]
                    seen["rejected"] += 1
        resolved = st.resolved_at
        for x in receivers:
            ack_deadline = datetime.fromisoformat(x["ack_deadline"]).timestamp()
            if x["behaviour"] in ("late", "silent") and (resolved is None or resolved > ack_deadline):
                assert x["department"] in urged, (x, [n.kind for n in notes])
                seen[f"urged_{x['behaviour']}"] += 1
        if all(x["behaviour"] == "on_time" for x in receivers):
            assert not kinds & {"urge", "escalate"}, (aid, kinds)
            assert st.status == "resolved"  # the lead disposed in time
            seen["on_time"] += 1
        lead = next(x for x in receivers if x["role"] == "lead")
        if lead["behaviour"] == "silent":
            assert "escalate" in kinds and st.status != "resolved"
            seen["escalated"] += 1
    assert seen["urged_late"] > 20 and seen["urged_silent"] > 5 and seen["on_time"] > 50
    assert seen["escalated"] > 3 and seen["rejected"] > 5


# --- revisions ----------------------------------------------------------------------------------------
def test_resolved_revision_cancels_and_resolved_or_stale_alerts_are_ignored():
    p = DepartmentPlayer(seed=1, late_rate=0, silent_rate=0, unauthorised_rate=0, not_ours_rate=0)
    a1 = make_alert("a1", "E1", 1, "orange", START)
    p.on_alert(a1)
    assert 5 <= p.pending <= 7  # amr: ack, in_progress, disposed; emergency and eco: ack (+ maybe in_progress)
    first = p.due(START + timedelta(hours=8))  # orange: acknowledge within 8 h
    assert {fb["department"] for fb in first if fb["status"] == "acknowledged"} == {"amr", "emergency", "eco"}
    p.on_alert(
        make_alert("a1", "E1", 1, "orange", START, status="resolved", revision=2, last_seen=START + timedelta(hours=9))
    )
    assert p.pending == 0 and p.drain() == []
    assert p.summary()["cancelled"] >= 1
    p.on_alert(a1)  # stale revision 1 again (a replay): ignored
    p.on_alert(make_alert("a2", "E2", 1, "orange", START, status="resolved", revision=3))  # already over
    p.on_alert(make_alert("a2", "E2", 1, "orange", START, status="firing", revision=2))  # older: ignored
    p.on_alert(make_alert("a3", "E3", 1, "orange", START, status="pending"))  # not notified yet
    assert p.pending == 0 and p.drain() == []
    assert p.summary()["ignored_revisions"] == 4


def test_added_receivers_answer_and_a_refired_alert_starts_a_new_round():
    p = DepartmentPlayer(seed=2, late_rate=0, silent_rate=0, unauthorised_rate=0, not_ours_rate=0)
    t1 = START + timedelta(minutes=30)
    p.on_alert(make_alert("a1", "E1", 1, "orange", START))
    p.on_alert(
        make_alert(
            "a1", "E1", 1, "red", START, revision=2, last_seen=t1, departments=["amr", "emergency", "eco", "taskforce"]
        )
    )  # red adds the task force
    out = p.drain()
    tf = [fb for fb in out if fb["department"] == "taskforce"]
    assert tf and tf[0]["status"] == "acknowledged"
    assert t1 < ts(tf[0]) <= t1 + timedelta(hours=LC.deadline(1, "red").ack_hours)
    assert Counter(fb["department"] for fb in out if fb["status"] == "acknowledged") == {
        "amr": 1,
        "emergency": 1,
        "eco": 1,
        "taskforce": 1,
    }
    t2 = START + timedelta(days=5)
    p.on_alert(make_alert("a1", "E1", 1, "red", START, status="resolved", revision=3, last_seen=t2))
    t3 = t2 + timedelta(hours=1)
    p.on_alert(
        make_alert(
            "a1",
            "E1",
            1,
            "red",
            START,
            status="firing",
            revision=4,
            last_seen=t3,
            departments=["amr", "emergency", "eco", "taskforce"],
        )
    )
    again = p.drain()
    assert {fb["department"] for fb in again if fb["status"] == "acknowledged"} == {
        "amr",
        "emergency",
        "eco",
        "taskforce",
    }
    assert all(ts(fb) > t3 for fb in again)
    assert not {fb["event_id"] for fb in again} & {fb["event_id"] for fb in out}


def test_due_returns_only_what_is_due_in_time_order():
    alerts = random_alerts(40)
    p = DepartmentPlayer(seed=9)
    for a in alerts:
        p.on_alert(a)
    total = p.pending
    cut = START + timedelta(days=1)
    assert p.next_due() is not None and p.next_due() > START
    early = p.due(cut)
    assert early and all(ts(fb) <= cut for fb in early)
    assert p.pending == total - len(early) and p.drain(until=cut) == []
    mid = p.drain(until=START + timedelta(days=3))
    assert all(cut < ts(fb) <= START + timedelta(days=3) for fb in mid)
    rest = p.drain()
    assert rest and all(ts(fb) > START + timedelta(days=3) for fb in rest)
    assert p.pending == 0 and p.next_due() is None and p.due(START + timedelta(days=999)) == []
    assert len(early) + len(mid) + len(rest) == total


@pytest.mark.parametrize(
    "kw",
    [dict(late_rate=1.5), dict(silent_rate=-0.1), dict(late_rate=0.7, silent_rate=0.5), dict(unauthorised_rate=2.0)],
)
def test_rates_are_checked(kw):
    with pytest.raises(ValueError):
        DepartmentPlayer(**kw)


# --- CLI --------------------------------------------------------------------------------------------------
def test_departments_subcommand_is_listed_and_does_not_run_the_event_simulation(tmp_path):
    from typer.testing import CliRunner

    from riskwatch.cli.simulate import app

    res = CliRunner().invoke(app, ["--help"])
    assert res.exit_code == 0 and "departments" in res.output
    # were the callback to simulate anyway, these options keep it small and away from Kafka and var/
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    res = CliRunner().invoke(
        app,
        [
            "--out",
            str(out),
            "--truth",
            str(truth),
            "--days",
            "0.01",
            "--scale",
            "0.01",
            "--quiet",
            "departments",
            "--help",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "--late-rate" in res.output and "--idle-seconds" in res.output
    assert not out.exists() and not truth.exists()  # the callback returned before simulating


def test_cli_answers_the_alerts_of_a_real_broker(broker, tmp_path):
    from kafka import KafkaProducer
    from riskwatch.tools.runner import read_all, settings_env
    from streams.runtime import topics as T

    run = uuid.uuid4().hex[:8]
    s = broker.model_copy(update=dict(topic_prefix=f"t{run}.", app_id=f"riskwatch-test-{run}", partitions=1))
    T.ensure_topics(s, CAT)
    t0 = datetime.now(UTC).replace(microsecond=0).astimezone(CST) - timedelta(days=20)
    # every firing revision's last_seen (simulated now) is before any feedback is due (>= 3 min after first_seen),
    # until the last alert jumps simulated time 10 days ahead: the output does not depend on poll batches
    alerts = [
        make_alert(f"k{i}", f"E{i:06d}", item, level, t0 + timedelta(seconds=i))
        for i, (item, level) in enumerate(
            [
                (1, "orange"),
                (8, "red"),
                (5, "yellow"),
                (7, "orange"),
                (4, "red"),
                (2, "yellow"),
                (None, "orange"),
                (6, "red"),
            ]
        )
    ]
    alerts.append(make_alert("gone", "E000100", 1, "red", t0 + timedelta(seconds=10)))
    alerts.append(
        make_alert(
            "gone",
            "E000100",
            1,
            "red",
            t0 + timedelta(seconds=10),
            status="resolved",
            revision=2,
            last_seen=t0 + timedelta(seconds=120),
        )
    )
    alerts.append(make_alert("jump", "E000200", 3, "orange", t0 + timedelta(days=10)))
    producer = KafkaProducer(**s.kafka_kwargs(), acks="all")
    for a in alerts:
        producer.send(
            s.topic(T.ALERTS_ALL), key=a["entity_id"].encode(), value=Alert.model_validate(a).model_dump_json().encode()
        )
    producer.send(s.topic(T.ALERTS_ALL), key=b"E000300", value=b"{not an alert")
    producer.flush(30)
    producer.close()

    rates = dict(seed=11, late_rate=0.3, silent_rate=0.1, unauthorised_rate=0.5, not_ours_rate=0.5)
    args = [
        sys.executable,
        "-m",
        "riskwatch.cli.main",
        "simulate",
        "departments",
        "--idle-seconds",
        "3",
        "--truth",
        str(tmp_path / "truth.jsonl"),
    ]
    for k, v in rates.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, **settings_env(s)}
    r = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = orjson.loads(r.stdout.strip().splitlines()[-1])

    # each department answers on its own topic (events.feedback.<dept>): the same bytes in its order
    by_dept = {d: read_all(s, s.topic(f"events.feedback.{d}")) for d in CAT.departments}
    recs = [r for rs in by_dept.values() for r in rs]
    expected_player = DepartmentPlayer(**rates)
    for a in alerts:
        expected_player.on_alert(a)
    expected = expected_player.drain()
    assert len(recs) == len(expected)
    for d, rs in by_dept.items():  # same bytes, another process
        mine = [fb for fb in expected if fb["department"] == d]
        assert [rec.value for rec in rs] == [orjson.dumps(fb) for fb in mine], d
        assert [rec.key for rec in rs] == [fb["entity_id"].encode() for fb in mine], d
    got = [orjson.loads(rec.value) for rec in recs]
    for fb in got:
        DisposalFeedback.model_validate(fb, context={"catalog": CAT})
    assert not [fb for fb in got if fb["alert_id"] == "gone"]  # resolved before anyone answered
    receivers = {a["alert_id"]: a["departments"] for a in alerts}
    unauth = [fb for fb in got if DepartmentPlayer.is_unauthorised(fb)]
    assert unauth and all(fb["department"] not in receivers[fb["alert_id"]] for fb in unauth)
    assert all(fb["department"] in receivers[fb["alert_id"]] for fb in got if not DepartmentPlayer.is_unauthorised(fb))
    assert {fb["alert_id"] for fb in got} == {f"k{i}" for i in range(8)} | {"jump"}
    assert summary["sent"] == len(got) and summary["unauthorised"] == len(unauth)
    assert summary["feedback"] == dict(sorted(Counter(fb["status"] for fb in got).items()))
    assert summary["late"] == expected_player.summary()["late"] > 0
    assert summary["never"] == expected_player.summary()["never"]
    assert summary["bad_alerts"] == 1 and summary["alerts"] == len(alerts) and summary["pending"] == 0
    truth = [orjson.loads(x) for x in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert truth == expected_player.truth()
