"""Device health (issue 21): offline on the partition's event time, stuck / range / step, risk that
rises while a safety-critical sensor is silent — in the engine, and end to end with the real broker
and worker, where a late pipeline (kill -9 and catch-up, a stopped worker, a broker restart) must
raise no offline alarm."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from riskwatch.domain.county import load_county
from riskwatch.tools.runner import wait_for
from schemas.events import EntityEvent, SensorReading
from streams.engine import health
from streams.engine.dispatch import EntityState, Processor
from tests import factories as F

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)


@pytest.fixture(scope="module")
def proc() -> Processor:
    return Processor.from_county(load_county(), clock=lambda: 0.0)


def _entity(p: Processor, eid: str = "E1") -> EntityState:
    st = EntityState()
    reg = EntityEvent(event_id=f"r-{eid}", entity_id=eid, occurred_at=T0, source="amr", action="registered",
                      name="舞泉镇鑫源食品有限公司", kind="food_producer", township="舞泉镇")  # fmt: skip
    p.process(reg, st, ("events.registry", 0, 0))
    return st


_n = iter(range(10**9))


def _read(p: Processor, st: EntityState, minute: float, v: float, device: str = "d1", eid: str = "E1"):
    ev = SensorReading(event_id=f"s{next(_n)}", entity_id=eid, occurred_at=T0 + timedelta(minutes=minute),
                       source="vendorA", device_id=device, channel="cold_chain_temp", value=v, unit="C")  # fmt: skip
    return p.process(ev, st, ("events.sensor", 0, next(_n)))


def _rules(out) -> list[tuple[str, str]]:
    return [(a.rule, a.status.value) for a in out.alerts]


def test_offline_after_k_intervals_of_partition_progress_resolves_on_return_and_risk_rises(proc):
    st = _entity(proc)
    for i in range(6):
        _read(proc, st, i, 3.0 + (i % 2) * 0.2)
    last = (T0 + timedelta(minutes=5)).timestamp()
    assert health.scan(proc.cx, proc.desk, "E1", st, last).alerts == []  # no progress: nothing
    assert health.scan(proc.cx, proc.desk, "E1", st, last + 89).alerts == []  # < 1.5 × 60 s
    out = health.scan(proc.cx, proc.desk, "E1", st, last + 91)
    assert _rules(out) == [("device.offline.cold_chain_temp", "firing")]
    a = out.alerts[0]
    assert a.departments and "vendorA" in a.explanation[0].detail  # the entity's lead + the owner source named
    risk1 = st.risk.score_one(last + 91, proc.cx.fusion)[0]
    later = last + 3 * 3600  # still silent three hours later: no second device alert, the risk is higher
    again = health.scan(proc.cx, proc.desk, "E1", st, later)
    assert [x.rule for x in again.alerts if x.rule.startswith("device.")] == []
    assert st.risk.score_one(later, proc.cx.fusion)[0] > risk1 > 0
    back = _read(proc, st, 200, 3.1)
    assert ("device.offline.cold_chain_temp", "resolved") in _rules(back)
    assert st.risk.value("silence.cold_chain_temp", later + 700, proc.cx.fusion) == 0.0


def test_the_expected_interval_is_the_longer_of_the_registered_and_the_learnt(proc):
    from streams.engine.state import Device

    st = _entity(proc)
    for i in range(6):
        _read(proc, st, i, 3.0)
    assert health.interval_of(st, "d1:cold_chain_temp") == 60.0  # learnt: a reading a minute
    st.devices["d1"] = Device("d1", ("cold_chain_temp",), interval_s=600)
    assert health.interval_of(st, "d1:cold_chain_temp") == 600.0  # registered slower: the registration
    # a channel of its own pace: the registered per-channel interval, never shorter than what is seen
    st.devices["d1"] = Device("d1", ("cold_chain_temp",), interval_s=30, channel_intervals={"cold_chain_temp": 1800})
    assert health.interval_of(st, "d1:cold_chain_temp") == 1800.0
    st.devices["d1"] = Device("d1", ("cold_chain_temp",), interval_s=30)
    assert health.interval_of(st, "d1:cold_chain_temp") == 60.0


def test_stuck_range_and_step(proc):
    st = _entity(proc)
    outs = [_read(proc, st, 10 * i, 4.0) for i in range(26)]  # 250 minutes of 4.0 (cold chain allows 240)
    assert ("device.stuck.cold_chain_temp", "firing") in _rules(outs[-1])
    assert ("device.stuck.cold_chain_temp", "resolved") in _rules(_read(proc, st, 260, 4.3))
    assert ("device.range.cold_chain_temp", "firing") in _rules(_read(proc, st, 270, 85.0))
    assert ("device.range.cold_chain_temp", "resolved") in _rules(_read(proc, st, 280, 4.0))
    assert ("device.step.cold_chain_temp", "firing") in _rules(_read(proc, st, 290, 40.0))  # 4 → 40 in 10 min
    assert ("device.step.cold_chain_temp", "resolved") in _rules(_read(proc, st, 300, 39.0))


def test_health_survives_the_state_format(proc):
    st = _entity(proc)
    for i in range(6):
        _read(proc, st, i, 3.0)
    st2 = EntityState.loads(st.dumps())
    assert st2.health["d1:cold_chain_temp"].to_data() == st.health["d1:cold_chain_temp"].to_data()


def test_a_gateway_clock_behind_is_not_silence(proc):
    """Readings that keep arriving stamped 90 min behind the partition's progress (the gateway's clock is
    behind): the device is heard at each scan, so no offline alarm and no silence risk; once they stop
    arriving it goes offline k × interval of progress after the last scan that heard it."""
    st = _entity(proc)
    for i in range(6):
        _read(proc, st, i, 3.0 + (i % 2) * 0.2)
    base = T0.timestamp()
    for m in range(6, 130):  # the clock jumps back 90 min: older than the last reading, then in order but late
        _read(proc, st, m - 90, 3.0 + (m % 2) * 0.2)
        assert health.scan(proc.cx, proc.desk, "E1", st, base + 60 * m + 30).alerts == [], m
    assert st.risk.value("silence.cold_chain_temp", base + 7200, proc.cx.fusion) == 0.0
    out = health.scan(proc.cx, proc.desk, "E1", st, base + 60 * 129 + 30 + 91)  # then silent: offline
    assert _rules(out) == [("device.offline.cold_chain_temp", "firing")]


def test_partition_progress_ignores_one_fast_gateway_clock():
    on_time = {f"gw{k}": [1000.0 + i for i in range(10)] for k in range(4)}
    assert health.progress_of(on_time) == 1007.0  # per source: the third latest entity
    assert health.progress_of({**on_time, "fast": [1000.0 + 7200 + i for i in range(10)]}) == 1007.0
    assert health.progress_of({"only": [100.0, 5000.0, 99.0, 98.0, 97.0, 96.0]}) == 99.0  # one entity ahead
    assert health.progress_of({}) == 0.0


# --- end to end: the real broker and worker ---------------------------------------------------------
def _send_reading(p, eid: str, device: str, minute: float, v: float = 3.0, partition: int = 0) -> None:
    ev = F.sensor(eid, v, at=T0 + timedelta(minutes=minute), device=device)
    p.producer.send(p.settings.topic("events.sensor"), value=orjson.dumps(ev), key=eid.encode(), partition=partition)


def _device_alerts(p) -> list[dict]:
    out = [orjson.loads(v) for _, v in p.read_topic("alerts.all")]
    return [a for a in out if a["rule"].startswith("device.")]


def _register(p, ents: list[str]) -> None:
    for e in ents:
        p.producer.send(
            p.settings.topic("events.registry"), value=orjson.dumps(F.registered(e)), key=e.encode(), partition=0
        )
    p.flush()
    p.wait_consumed()


def test_a_stopped_sensor_raises_offline_on_event_time_resolves_and_raises_risk(pipeline):
    p = pipeline
    p.start_worker(lifecycle_tick_seconds=1.0)
    _register(p, ["E-dead", "E-live"])
    for m in range(6):  # both report every minute (event time), on the same partition
        _send_reading(p, "E-dead", "d1", m)
        _send_reading(p, "E-live", "d2", m)
    for m in range(6, 12):  # E-dead's sensor stops; E-live's readings move the partition's event time on
        _send_reading(p, "E-live", "d2", m)
    p.flush()
    p.wait_consumed()
    got = wait_for(lambda: [a for a in _device_alerts(p) if a["entity_id"] == "E-dead"], 60, "an offline alert")
    a = got[0]
    assert a["rule"] == "device.offline.cold_chain_temp" and a["status"] == "firing"
    assert all(x["entity_id"] == "E-dead" for x in _device_alerts(p))  # the live sensor is not offline
    # within 2 × interval of its last reading (minute 5), in event time
    at = datetime.fromisoformat(a["first_seen"])
    assert at <= T0 + timedelta(minutes=5 + 2)
    risk = wait_for(
        lambda: p.worker.query("SELECT max(score) AS s FROM riskwatch.risk_scores WHERE entity_id = 'E-dead'"),
        60,
        "a risk score for the silent entity",
    )
    assert risk[0]["s"] > 0
    _send_reading(p, "E-dead", "d1", 13)  # it returns
    p.flush()
    wait_for(
        lambda: any(x["status"] == "resolved" for x in _device_alerts(p) if x["entity_id"] == "E-dead"),
        60,
        "the offline alert to resolve",
    )


def test_kill9_catch_up_and_a_stopped_worker_raise_no_offline_alarm(pipeline):
    p = pipeline
    w = p.start_worker(lifecycle_tick_seconds=1.0)
    ents = [f"E-k{i}" for i in range(4)]
    _register(p, ents)
    for m in range(10):
        for e in ents:
            _send_reading(p, e, "d1", m, 3.0 + (m % 2) * 0.1)
    p.flush()
    p.wait_consumed()
    w.kill9()  # readings keep coming while no worker runs: a backlog to catch up on
    for m in range(10, 40):
        for e in ents:
            _send_reading(p, e, "d1", m, 3.0 + (m % 2) * 0.1)
    p.flush()
    w = p.start_worker(lifecycle_tick_seconds=1.0)
    p.wait_consumed(timeout=180)
    w.stop()  # a stopped worker: no events flow, wall time passes
    time.sleep(3)  # wall time passes (3 offline-scan ticks) with the worker down
    p.start_worker(lifecycle_tick_seconds=1.0)
    for e in ents:
        _send_reading(p, e, "d1", 40)
    p.flush()
    p.wait_consumed(timeout=180)
    assert _device_alerts(p) == []


def test_a_broker_restart_raises_no_offline_alarm(pipeline):
    """Restarts the suite's broker, as tests/test_faults.py does (the suite runs one test at a time)."""
    from kafka import KafkaProducer
    from riskwatch.tools.broker import Broker

    p = pipeline
    p.start_worker(lifecycle_tick_seconds=1.0)
    ents = [f"E-b{i}" for i in range(4)]
    _register(p, ents)
    for m in range(10):
        for e in ents:
            _send_reading(p, e, "d1", m)
    p.flush()
    p.wait_consumed()
    broker = Broker(p.settings)
    broker.stop()
    broker.start()
    p.producer.close()
    p.producer = KafkaProducer(bootstrap_servers=p.settings.kafka_bootstrap, acks="all", linger_ms=5)
    for m in range(10, 20):
        for e in ents:
            _send_reading(p, e, "d1", m)
    p.flush()
    p.wait_consumed(timeout=240)
    assert _device_alerts(p) == []


# --- the alert page: a device-health alert and a process alert on the same entity are linked -------
def test_related_alerts_query_links_device_and_process_alerts(tmp_path):
    from clickhouse_connect.driver.binding import finalize_query

    from schemas.events import Alert
    from schemas.vocabulary import Level
    from sinks.clickhouse import INSERT_SETTINGS, make_client
    from sinks.migrations import migrate
    from sinks.query import run_read_query
    from sinks.rows import COLUMNS, alert_row
    from web.routes.alert import RELATED_SQL

    def alert(aid: str, rule: str, entity: str, hours: float) -> tuple:
        at = T0 + timedelta(hours=hours)
        return alert_row(
            Alert(
                alert_id=aid,
                revision=1,
                fingerprint=f"{entity}|1|{rule}",
                entity_id=entity,
                rule=rule,
                level=Level.orange,
                level_zh="橙色",
                status="firing",
                score=70,
                title=rule,
                message="m",
                lead_department="amr",
                departments=["amr"],
                first_seen=at,
                last_seen=at,
                updated_at=at,
                source_event_id="e",
            )  # fmt: skip
        )

    c = make_client(f"chdb://{tmp_path / 'ch'}")
    migrate(c, "riskwatch")
    rows = [
        alert("D1", "device.offline.cold_chain_temp", "E1", 0),
        alert("P1", "rule.sensor.cold_chain_temp", "E1", 2),
        alert("P2", "rule.sensor.cold_chain_temp", "E1", 80),  # days later: not related
        alert("P3", "rule.sensor.cold_chain_temp", "E2", 1),  # another entity
    ]
    c.insert("alerts", rows, column_names=list(COLUMNS["alerts"]), database="riskwatch", settings=INSERT_SETTINGS)

    def rel(aid: str, dev: bool, at_h: float) -> list[str]:
        lo, hi = T0 + timedelta(hours=at_h - 24), T0 + timedelta(hours=at_h + 24)
        params = dict(e="E1", a=aid, dev=int(dev), lo=int(lo.timestamp() * 1000), hi=int(hi.timestamp() * 1000))
        cols, out = run_read_query(c, finalize_query(RELATED_SQL.replace("{db}", "riskwatch"), params))
        return [dict(zip(cols, r, strict=True))["alert_id"] for r in out]

    assert rel("D1", True, 0) == ["P1"]
    assert rel("P1", False, 2) == ["D1"]
    c.close()


def test_eval_simulated_reports_device_faults_per_kind():
    from riskwatch.tools.evals.simulated import run

    r = run(seed=3, days=1.5, scale=0.1, progress=False)
    d = r["device_health"]
    assert {"offline", "stuck"} <= set(d["by_kind"]), d
    off = d["by_kind"]["offline"]
    assert off["detectable"] > 0 and off["recall"] >= 0.85, off
    done, total = (int(x) for x in off["within_bound"].split("/"))
    assert done == total, off  # every detected gap within 2 × interval + the commit interval
    assert d["false_after_kill"] == 0, d
    assert not any(a.startswith("device.") for a in r["false_by_rule"])  # kept out of the alert metrics
    skew = d["by_kind"]["skew"]  # skewed gateway clocks: RiskwatchSourceClockSkew emulated, per source
    assert skew["detectable"] >= 2 and skew["recall"] == 1.0 and d["skew_false_alarms"] == 0, d
    assert d["skewed_false_device_alarms"] == 0 and d["skewed_false_alerts"] == 0, d
