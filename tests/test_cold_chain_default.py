"""An unrated freezer (registered without a set point, as 20 % of the simulator's ledger and many real
ones) warming after a compressor fault — INC7-140 of the 60-minute soak: -19 ℃ to -8.9 ℃ within hours of
registration, before the stream detector's one-day warm-up. The county default of its operating band
(rules.yaml cold_chain_temp default_bands: freezer, -18 ℃ + 3 ℃) opens the case; a chiller's 8 ℃ never would."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from riskwatch.domain.county import load_county
from schemas.events import DeviceEvent, SensorReading
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.handlers import device, sensor
from streams.engine.outcome import Outcome
from streams.engine.state import EntityState

T0 = datetime(2026, 3, 3, tzinfo=UTC).timestamp()


def _run(values: list[float], set_point_max_c: float | None = None) -> list:
    cx = Context.of(load_county())
    desk = Desk(cx)
    st = EntityState(kind="food_producer", registered=True)
    reg = DeviceEvent(
        event_id="dev-F1", entity_id="E1", occurred_at=datetime.fromtimestamp(T0, UTC), source="amr",
        action="registered", device_id="F1", channels=["cold_chain_temp"], unit="C", interval_s=300,
        set_point_max_c=set_point_max_c,
    )  # fmt: skip
    device.handle(cx, desk, reg, st, Outcome())
    alerts = []
    for i, v in enumerate(values):
        t = T0 + 300 * (i + 1)
        ev = SensorReading(
            event_id=f"s{i}", entity_id="E1", occurred_at=datetime.fromtimestamp(t, UTC), source="iot-gw-01",
            device_id="F1", channel="cold_chain_temp", value=v, unit="C",
        )  # fmt: skip
        out = Outcome()
        out.at = t
        sensor.handle(cx, desk, ev, st, out)
        alerts += [(i, a) for a in out.alerts]
    return alerts


def _compressor_fault(base: float, target: float) -> list[float]:
    """2 h at ``base`` (small wobble), a 5-hour ramp to ``target``, 2 h held there."""
    steady = [base + 0.3 * math.sin(i) for i in range(24)]
    ramp = [base + (target - base) * (k / 60) ** 1.8 for k in range(1, 61)]
    return steady + ramp + [target] * 24


def test_unrated_freezer_warming_to_minus_8_9_raises_the_freezer_default() -> None:
    alerts = _run(_compressor_fault(-19.0, -8.9))
    assert alerts, "an unrated freezer at -8.9 ℃ must raise an alert"
    i, a = alerts[0]
    assert a.rule == "rule.sensor.cold_chain_temp" and a.level == "orange"
    assert "冷冻库" in a.title
    assert i < 24 + 60  # during the ramp, on the third reading above -15 ℃
    assert "按冷冻库县默认-18.0℃" in a.explanation[0].detail


def test_steady_unrated_freezer_with_door_openings_stays_quiet() -> None:
    values = [-19.0 + 2.5 * max(0.0, math.sin(i / 6)) for i in range(288)]  # to -16.5 ℃ at loading
    assert _run(values) == []


def test_unrated_chiller_keeps_the_absolute_limit() -> None:
    assert _run(_compressor_fault(3.5, 7.5)) == []
    assert _run(_compressor_fault(3.5, 9.5))[0][1].title == "冷链温度超过8℃上限"


def test_registered_set_point_wins_over_the_band() -> None:
    alerts = _run(_compressor_fault(-24.0, -19.0), set_point_max_c=-22.0)  # -20 ℃ is its own limit
    assert alerts and "设定温度上限-22.0℃" in alerts[0][1].explanation[0].detail
    assert alerts[0][1].title == "冷链温度超过设定温度上限"


def test_simulator_registers_most_cold_stores_with_a_set_point() -> None:
    """The simulated ledger, like real ones, gives cold stores their set-point range; `unrated_share` do without."""
    import orjson

    from riskwatch.tools.simulator import SimConfig, Simulator

    sim = Simulator(SimConfig(seed=7, days=0.05, scale=0.5, bad_rate=0.0))
    devs = [orjson.loads(m[2]) for m in sim.events() if m[0] == "events.device"]
    freezers = [d for d in devs if "-FRZ" in d["device_id"]]
    chillers = [d for d in devs if "-CHL" in d["device_id"] or "-VAC" in d["device_id"]]
    assert freezers and chillers
    rated = [d for d in freezers if d.get("set_point_max_c") is not None]
    assert {(d["set_point_min_c"], d["set_point_max_c"]) for d in rated} == {(-21.0, -17.0)}
    assert 0 < len(freezers) - len(rated) < len(freezers) / 2  # some unrated, as in real ledgers
    assert {d.get("set_point_max_c") for d in chillers} <= {6.0, None}
