"""A device registry event (设备台账: registered, updated, removed): the entity's devices, with the
unit their readings take when they give none and the ratings their limits are computed from
(``detectors/rules.py``: a limit relative to a rating). A device whose registered unit cannot be
converted for one of its channels is refused (a dead letter saying why), so no reading is ever
judged in a unit nobody can read.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import DeviceEvent
>>> cx = Context.of(load_county()); st, out = EntityState(), Outcome()
>>> ev = DeviceEvent(event_id="d1", entity_id="E1", occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     source="amr", action="registered", device_id="B-1", channels=["boiler_pressure"], unit="MPa",
...     rated_pressure_mpa=1.0)
>>> handle(cx, Desk(cx), ev, st, out); st.devices["B-1"].rated_pressure_mpa, out.rejected
(1.0, None)
"""

from __future__ import annotations

from riskwatch.domain.units import known
from schemas.events import DeviceAction, DeviceEvent
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome
from streams.engine.state import Device, EntityState


def handle(cx: Context, desk: Desk, ev: DeviceEvent, st: EntityState, out: Outcome) -> None:
    old = st.devices.get(ev.device_id)
    t = ev.occurred_at.timestamp()
    if old is not None and t < old.registered_at:
        return  # an older registry event arriving late: the newer one stands
    if ev.action == DeviceAction.removed:
        st.devices.pop(ev.device_id, None)
        return
    channels = tuple(c.value for c in ev.channels)
    if ev.unit:
        for c in channels:
            why = known(c, ev.unit)
            if why is not None:
                out.rejected = f"device {ev.device_id!r}: registered {why}"
                return
    st.devices[ev.device_id] = Device(
        ev.device_id,
        channels,
        ev.unit,
        ev.rated_pressure_mpa,
        ev.rated_temp_c,
        ev.rated_load_kg,
        ev.set_point_min_c,
        ev.set_point_max_c,
        ev.medium,
        ev.interval_s,
        ev.calibrated_on.isoformat() if ev.calibrated_on else "",
        ev.owner,
        t,
        {c.value: v for c, v in ev.channel_intervals_s.items()},
    )
