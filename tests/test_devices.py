"""Devices (设备台账): registration on events.device, limits from a device's rating, units converted.

The engine tests drive :class:`~streams.engine.batch.EntityBatch` with bytes, as the runtime does
(no Kafka); the last test runs the real broker and worker (``pipeline``) for the done-when checks of
issue #21 that belong here: a boiler rated 1.6 MPa at 1.5 MPa raises nothing, one rated 1.0 MPa at
1.05 MPa raises a red alert naming the rating, kPa and ℉ are converted, an unknown unit is a dead
letter with the reason.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from riskwatch.domain.county import load_county
from riskwatch.domain.units import to_canonical
from sinks import rows
from streams.engine.batch import Destinations, EntityBatch, Message, Record
from streams.engine.dispatch import Processor
from streams.engine.ingest import Decoder
from streams.engine.state import EntityState
from tests.conftest import wait_for
from tests.webtools import browser_login, chromium, screenshot, start_web, wait_text

COUNTY = load_county()
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
DEST = Destinations(
    "alerts.all",
    "alerts.events",
    "inspection.plans",
    {d: f"alerts.{d}" for d in COUNTY.catalog.departments},
    "notices",
    "deadletter",
)


class Engine:
    """An entity batch over stored states (each load reads the state's bytes back, as the worker does)."""

    def __init__(self) -> None:
        self.states: dict[bytes, EntityState] = {}
        self.offset = 0
        self.batch = EntityBatch(
            Processor.from_county(COUNTY, clock=lambda: T0.timestamp()),
            Decoder(COUNTY.catalog),
            DEST,
            rows,
            load=lambda key: EntityState.loads(self.states[key].dumps() if key in self.states else None),
            partition_of={},
        )

    def run(self, *msgs: tuple[str, dict | bytes]):
        recs = []
        for topic, v in msgs:
            self.offset += 1
            recs.append(Record(Message(topic, 0, self.offset, b"E1"), v if isinstance(v, bytes) else orjson.dumps(v)))
        out = self.batch.run(recs)
        self.states.update(out.states)
        return out


def body(n: str, minutes: float = 0, **kw) -> dict:
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    return {"event_id": n, "entity_id": "E1", "occurred_at": at, "source": "test", **kw}


def entity(kind: str = "special_equipment") -> tuple[str, dict]:
    ev = body("reg", action="registered", name="舞泉镇鑫源锅炉房", kind=kind, township="舞泉镇")
    return "events.registry", ev


def device(dev: str = "B1", channel: str = "boiler_pressure", **kw) -> tuple[str, dict]:
    return "events.device", body(f"dev-{dev}-{len(kw)}", action="registered", device_id=dev, channels=[channel], **kw)


def reading(n: int, value: float, unit: str = "MPa", channel: str = "boiler_pressure", dev: str = "B1"):
    ev = body(f"s{n}", minutes=n, device_id=dev, channel=channel, value=value, unit=unit)
    return "events.sensor", ev


def sent(out, topic: str) -> list[dict]:
    return [orjson.loads(v) for t, _, v in out.sends if t == topic]


def details(alert: dict) -> str:
    return " ".join(c["detail"] for c in alert["explanation"])


# --- limits from ratings ----------------------------------------------------------------------------
def test_a_boiler_rated_1_6_mpa_at_1_5_mpa_raises_no_alert() -> None:
    e = Engine()
    out = e.run(entity(), device(unit="MPa", rated_pressure_mpa=1.6), reading(1, 1.5))
    assert sent(out, "alerts.all") == [] and sent(out, "deadletter") == []
    assert e.states[b"E1"].devices["B1"].rated_pressure_mpa == 1.6


def test_a_boiler_rated_1_0_mpa_at_1_05_mpa_raises_a_red_alert_naming_the_rating() -> None:
    out = Engine().run(entity(), device(unit="MPa", rated_pressure_mpa=1.0), reading(1, 1.05))
    [alert] = sent(out, "alerts.all")
    assert alert["rule"] == "rule.sensor.boiler_pressure" and alert["level"] == "red"
    assert "锅炉压力1.05MPa,超过额定工作压力1.0MPa" in details(alert)


def test_at_95_percent_of_its_rating_a_boiler_is_orange() -> None:
    out = Engine().run(entity(), device(unit="MPa", rated_pressure_mpa=1.0), reading(1, 0.97))
    [alert] = sent(out, "alerts.all")
    assert alert["level"] == "orange" and "额定工作压力1.0MPa的95%" in details(alert)


def test_a_boiler_without_a_rating_is_judged_on_the_county_default_and_says_so() -> None:
    out = Engine().run(entity(), reading(1, 1.3))  # no device registered at all
    [alert] = sent(out, "alerts.all")
    assert alert["level"] == "red" and "未登记额定工作压力,按县默认1.25MPa" in details(alert)


def test_a_cold_store_breaches_above_its_set_point_plus_the_margin() -> None:
    e = Engine()
    e.run(entity("food_producer"), device("F1", "cold_chain_temp", unit="℃", set_point_max_c=-18.0))
    quiet = e.run(*(reading(i, -17.0, "℃", "cold_chain_temp", "F1") for i in range(1, 4)))
    assert sent(quiet, "alerts.all") == []
    out = e.run(*(reading(i, -15.0, "℃", "cold_chain_temp", "F1") for i in range(4, 7)))  # confirm: 3
    [alert] = sent(out, "alerts.all")
    assert alert["level"] == "orange" and "超过设定温度上限-18.0℃+2℃" in details(alert)


# --- units -----------------------------------------------------------------------------------------
def test_kpa_readings_are_converted_before_the_limit() -> None:
    e = Engine()
    e.run(entity(), device(unit="MPa", rated_pressure_mpa=1.0))
    assert sent(e.run(reading(1, 500.0, "kPa")), "alerts.all") == []
    [alert] = sent(e.run(reading(2, 1050.0, "kPa")), "alerts.all")
    assert alert["level"] == "red" and "锅炉压力1.05MPa" in details(alert)


def test_a_reading_without_a_unit_takes_its_devices_registered_unit() -> None:
    e = Engine()
    e.run(entity(), device(unit="kPa", rated_pressure_mpa=1.0))
    assert sent(e.run(reading(1, 900.0, "")), "alerts.all") == []
    [alert] = sent(e.run(reading(2, 1100.0, "")), "alerts.all")
    assert alert["level"] == "red"


def test_fahrenheit_is_converted() -> None:
    assert to_canonical("cold_chain_temp", 41.0, "℉") == 5.0 and to_canonical("cold_chain_temp", 50.0, "F") == 10.0
    e = Engine()
    e.run(entity("food_producer"))
    assert sent(e.run(*(reading(i, 41.0, "℉", "cold_chain_temp", "F1") for i in range(1, 4))), "alerts.all") == []
    out = e.run(*(reading(i, 50.0, "°F", "cold_chain_temp", "F1") for i in range(4, 7)))  # 10 ℃ > 8 ℃
    [alert] = sent(out, "alerts.all")
    assert alert["rule"] == "rule.sensor.cold_chain_temp" and "10℃" in details(alert)


def test_an_unknown_or_incompatible_unit_is_a_dead_letter_with_the_reason() -> None:
    e = Engine()
    e.run(entity(), device(unit="MPa", rated_pressure_mpa=1.0))
    out = e.run(reading(1, 1.5, "blorp"), reading(2, 1.5, "kg"))
    dls = sent(out, "deadletter")
    assert [d["offset"] for d in dls] == [3, 4] and sent(out, "alerts.all") == []
    assert "unknown unit 'blorp' for channel boiler_pressure" in dls[0]["error"]
    assert "unit 'kg' does not fit channel boiler_pressure" in dls[1]["error"]
    assert b'"blorp"' in base64.b64decode(dls[0]["payload_b64"])
    assert out.counts[("events.sensor", "dead")] == 2


def test_a_bad_unit_in_a_gateway_batch_refuses_that_reading_only() -> None:
    e = Engine()
    e.run(entity(), device(unit="MPa", rated_pressure_mpa=1.6))
    readings = [
        {k: v for k, v in reading(i, 1.0, u)[1].items() if k not in ("entity_id",)} for i, u in ((1, "MPa"), (2, "zz"))
    ]
    batch = {"kind": "sensor_batch", "entity_id": "E1", "gateway_id": "gw-1", "readings": readings}
    out = e.run(("events.sensor", batch))
    [dl] = sent(out, "deadletter")
    assert dl["indexes"] == [1] and "unknown unit 'zz'" in dl["reasons"][0]
    assert out.counts[("events.sensor", "ok")] == 1


def test_kpa_readings_in_a_gateway_batch_are_converted() -> None:
    """A batch reading is built without pydantic's validation: converting it must not crash the worker
    (it did: its shared, frozen set of fields could not be updated by model_copy)."""
    e = Engine()
    e.run(entity(), device(unit="MPa", rated_pressure_mpa=1.0))
    readings = [{k: v for k, v in reading(i, 1050.0, "kPa")[1].items() if k not in ("entity_id",)} for i in range(1, 4)]
    out = e.run(
        ("events.sensor", {"kind": "sensor_batch", "entity_id": "E1", "gateway_id": "gw-1", "readings": readings})
    )
    assert not sent(out, "deadletter") and out.counts[("events.sensor", "ok")] == 3
    assert any(a["level"] == "red" for a in sent(out, "alerts.all"))


def test_a_device_registered_with_a_unit_that_does_not_fit_its_channel_is_refused() -> None:
    out = Engine().run(entity(), device(unit="kg"))
    [dl] = sent(out, "deadletter")
    assert "device 'B1': registered unit 'kg' does not fit channel boiler_pressure" in dl["error"]


# --- the registry ----------------------------------------------------------------------------------
def test_devices_are_stored_with_the_state_and_in_the_devices_table_and_removal_forgets_them() -> None:
    e = Engine()
    out = e.run(entity(), device(unit="MPa", rated_pressure_mpa=1.0, interval_s=30, calibrated_on="2026-03-15"))
    [row] = out.rows["devices"]
    cols = dict(zip(rows.COLUMNS["devices"], row, strict=True))
    assert cols["device_id"] == "B1" and cols["rated_pressure_mpa"] == 1.0 and cols["action"] == "registered"
    st = EntityState.loads(e.states[b"E1"].dumps())
    assert st.devices["B1"].interval_s == 30 and st.devices["B1"].calibrated_on == "2026-03-15"
    removed = body("dev-B1-rm", minutes=5, action="removed", device_id="B1", channels=["boiler_pressure"])
    e.run(("events.device", removed))
    assert e.states[b"E1"].devices == {}


def test_an_older_device_event_arriving_late_does_not_replace_a_newer_one() -> None:
    e = Engine()
    newer = body("dev-new", minutes=10, action="updated", device_id="B1", channels=["boiler_pressure"],
                 rated_pressure_mpa=1.6)  # fmt: skip
    older = body("dev-old", minutes=0, action="registered", device_id="B1", channels=["boiler_pressure"],
                 rated_pressure_mpa=1.0)  # fmt: skip
    e.run(entity(), ("events.device", newer), ("events.device", older))
    assert e.states[b"E1"].devices["B1"].rated_pressure_mpa == 1.6


# --- the real broker and worker -----------------------------------------------------------------------
@pytest.mark.timeout(480)
def test_devices_through_the_broker_and_the_worker(pipeline, tmp_path) -> None:
    p = pipeline
    web = start_web(p.settings, tmp_path)
    p.start_worker(web_public_url=web.url)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)

    def ev(eid: str, n: str, minutes: float = 0, **kw) -> dict:
        at = (now + timedelta(minutes=minutes)).isoformat()
        return {"event_id": n, "entity_id": eid, "occurred_at": at, "source": "iot-gw", **kw}

    def reg(eid: str) -> dict:
        return ev(
            eid, f"reg-{eid}", action="registered", name=f"{eid}锅炉房", kind="special_equipment", township="舞泉镇"
        )

    def dev(eid: str, rated: float, unit: str = "MPa") -> dict:
        return ev(eid, f"dev-{eid}", action="registered", device_id=f"{eid}-B", channels=["boiler_pressure"],
                  unit=unit, rated_pressure_mpa=rated, owner="iot-gw")  # fmt: skip

    def read(eid: str, i: int, value: float, unit: str) -> dict:
        return ev(eid, f"s-{eid}-{i}", minutes=1 + i, device_id=f"{eid}-B", channel="boiler_pressure",
                  value=value, unit=unit)  # fmt: skip

    cases = {  # entity: (rating, value, unit)
        "E-d16": (1.6, 1.5, "MPa"),
        "E-d10": (1.0, 1.05, "MPa"),
        "E-kpa": (1.0, 1050.0, "kPa"),
        "E-kok": (1.0, 500.0, "kPa"),
    }
    for eid, (rated, _, _) in cases.items():
        p.send("events.registry", reg(eid))
        p.send("events.device", dev(eid, rated))
    p.flush()
    p.wait_consumed()
    for eid, (_, value, unit) in cases.items():
        p.send("events.sensor", read(eid, 1, value, unit))
    p.send("events.sensor", read("E-d10", 2, 1.0, "psi-ish"))  # an unknown unit
    p.flush()
    p.wait_consumed()

    alerts = [orjson.loads(v) for _, v in p.read_topic("alerts.all")]
    by_entity = {a["entity_id"]: a for a in alerts if a["rule"] == "rule.sensor.boiler_pressure"}
    assert set(by_entity) == {"E-d10", "E-kpa"}, by_entity.keys()
    assert by_entity["E-d10"]["level"] == "red" and by_entity["E-kpa"]["level"] == "red"
    assert "超过额定工作压力1.0MPa" in details(by_entity["E-d10"])
    assert "锅炉压力1.05MPa" in details(by_entity["E-kpa"])
    dead = [orjson.loads(v) for _, v in p.read_topic("deadletter")]
    assert len(dead) == 1 and "unknown unit 'psi-ish'" in dead[0]["error"]

    stored = wait_for(
        lambda: (
            (
                r := p.worker.query(
                    "SELECT device_id, rated_pressure_mpa FROM riskwatch.devices FINAL ORDER BY device_id"
                )
            )
            and len(r) == 4
            and r
        ),
        60,
        "devices in ClickHouse",
    )
    assert {r["device_id"]: r["rated_pressure_mpa"] for r in stored}["E-d16-B"] == 1.6

    # the dossier (一企一档) lists the device with its rating, interval and last reading
    try:
        html = wait_for(
            lambda: (
                (t := web.client("taskforce").get("/entities/E-d10").text)
                and "E-d10-B" in t
                and "暂无读数" not in t
                and t
            ),
            60,
            "the device and its last reading on the dossier",
        )
        assert "设备台账" in html and "额定压力 1MPa" in html and "60 秒" in html and "iot-gw" in html
        browser = chromium(tmp_path)
        try:
            browser_login(browser, web, "taskforce")
            browser.get(f"{web.url}/entities/E-d10")
            wait_text(browser, "#devices", "E-d10-B", timeout=30)
            screenshot(browser, "dossier_devices")
        finally:
            browser.quit()
    finally:
        web.stop()


def test_an_entity_with_registered_devices_is_never_evicted(pipeline) -> None:
    """Both entities are silent past the TTL (their events are two days old, the TTL one day): the
    one without devices is evicted, the one with a device keeps its state (its device event's id is
    still known: sent again, it is a duplicate)."""
    from tests import factories as F
    from tests.test_groups_and_eviction import _metric

    p = pipeline
    w = p.start_worker(entity_ttl_days=1.0, eviction_interval_seconds=1.0)
    dev = F.device("E-kept", "E-kept-B", unit="MPa", rated_pressure_mpa=1.0)
    p.send("events.registry", F.registered("E-gone"))
    p.send("events.registry", F.registered("E-kept"))
    p.send("events.device", dev)
    p.flush()
    p.wait_consumed()
    wait_for(lambda: _metric(w, "riskwatch_evicted_entities_total") >= 1, 60, "the entity without devices evicted")
    import time

    time.sleep(3.0)  # a few more scans
    assert _metric(w, "riskwatch_evicted_entities_total") == 1
    p.send("events.device", dev)  # the same event again, at another offset
    p.flush()
    p.wait_consumed()
    dead = [orjson.loads(v) for _, v in p.read_topic("deadletter")]
    assert len(dead) == 1 and "duplicate event_id" in dead[0]["error"], dead
