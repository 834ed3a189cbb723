"""Units of sensor readings: each channel's canonical unit, vendor spellings, and the conversion.

Every reading is compared with its rule in its channel's canonical unit (``CANONICAL``: MPa for
pressures, ℃ for temperatures, % for humidity, mm/s for vibration, a count for codes and cycles).
A vendor that sends kPa or ℉ is converted, not believed: 1050 kPa is 1.05 MPa. Conversions go
through one pint ``UnitRegistry``, asked once per (unit, channel): the answer is cached as an
affine map ``canonical = scale * value + offset`` (pint per reading costs tens of µs; the cached
map costs a dict look-up). An unknown unit, or one that does not fit the channel (kg on a
pressure), raises :class:`UnitError` with a Chinese-free reason the dead letter carries.

>>> to_canonical("boiler_pressure", 1050.0, "kPa")
1.05
>>> to_canonical("cold_chain_temp", 41.0, "℉")
5.0
>>> to_canonical("cold_chain_temp", 4.0, "C"), to_canonical("storage_humidity", 60.0, "%RH")
(4.0, 60.0)
>>> known("boiler_pressure", "kg")
"unit 'kg' does not fit channel boiler_pressure (canonical MPa): [mass] is not [mass] / [length] / [time] ** 2"
>>> known("boiler_pressure", "zap")
"unknown unit 'zap' for channel boiler_pressure (canonical MPa)"
"""

from __future__ import annotations

from functools import cache

import pint

# channel -> its canonical unit, as pint spells it ("" : a dimensionless count or code)
CANONICAL: dict[str, str] = {
    "cold_chain_temp": "degC",
    "boiler_pressure": "MPa",
    "boiler_temp": "degC",
    "vessel_pressure": "MPa",
    "elevator_fault": "",
    "elevator_door_cycles": "",
    "pump_vibration": "mm/s",
    "storage_humidity": "percent",
    "storage_temp": "degC",
}
# how the canonical unit is shown to people (alert details, the dossier)
DISPLAY: dict[str, str] = {"degC": "℃", "MPa": "MPa", "percent": "%", "mm/s": "mm/s", "": ""}
# vendor and Chinese spellings -> pint's (compared after strip(); keys as written by the gateways)
ALIASES: dict[str, str] = {
    "℃": "degC",
    "°C": "degC",
    "ºC": "degC",
    "C": "degC",
    "c": "degC",
    "摄氏度": "degC",
    "度": "degC",
    "℉": "degF",
    "°F": "degF",
    "F": "degF",
    "f": "degF",
    "华氏度": "degF",
    "%": "percent",
    "%RH": "percent",
    "％": "percent",
    "RH": "percent",
    "mpa": "MPa",
    "Mpa": "MPa",
    "兆帕": "MPa",
    "kpa": "kPa",
    "Kpa": "kPa",
    "KPa": "kPa",
    "千帕": "kPa",
    "BAR": "bar",
    "Bar": "bar",
    "PSI": "psi",
    "mm/S": "mm/s",
    "MM/S": "mm/s",
    "次": "",
    "count": "",
    "code": "",
    "次/h": "",
    "cycles/h": "",
    "次/小时": "",
}

_UREG: pint.UnitRegistry = pint.UnitRegistry(cache_folder=None)


class UnitError(ValueError):
    """A reading's unit is not known, or does not measure what its channel measures."""


def display(channel: str) -> str:
    """The canonical unit of ``channel`` as people read it (``℃``, ``MPa``, ``%``)."""
    return DISPLAY.get(CANONICAL.get(channel, ""), CANONICAL.get(channel, ""))


@cache
def affine(channel: str, unit: str) -> tuple[float, float]:
    """``(scale, offset)`` with ``canonical = scale * value + offset`` for a reading of ``channel`` in
    ``unit`` (cached: pint is asked once per pair). :class:`UnitError` if it cannot be converted."""
    canon = CANONICAL.get(channel)
    u = unit.strip()
    if canon is None:  # a channel without a unit policy: taken as sent
        return 1.0, 0.0
    name = ALIASES.get(u, u)
    if name == canon:
        return 1.0, 0.0
    if canon == "":
        if name == "":
            return 1.0, 0.0
        raise UnitError(f"unit {unit!r} does not fit channel {channel} (a count or code has no unit)")
    try:
        src = _UREG.Quantity(0.0, _UREG.parse_units(name))
        one = _UREG.Quantity(1.0, _UREG.parse_units(name))
    except Exception:  # noqa: BLE001 — pint raises several kinds for a name it cannot parse
        raise UnitError(f"unknown unit {unit!r} for channel {channel} (canonical {display(channel)})") from None
    try:
        b = float(src.to(canon).magnitude)
        a = float(one.to(canon).magnitude) - b
    except pint.DimensionalityError as e:
        raise UnitError(
            f"unit {unit!r} does not fit channel {channel} (canonical {display(channel)}): "
            f"{e.dim1 or 'dimensionless'} is not {e.dim2 or 'dimensionless'}"
        ) from None
    return a, b


_MAPS: dict[tuple[str, str], tuple[float, float]] = {}  # a plain dict: cheaper to ask than functools.cache


def to_canonical(channel: str, value: float, unit: str) -> float:
    """``value`` in ``unit`` converted to ``channel``'s canonical unit (rounded to 9 decimals: 41 ℉ is 5.0 ℃)."""
    ab = _MAPS.get((channel, unit))
    if ab is None:
        ab = _MAPS[(channel, unit)] = affine(channel, unit)
    a, b = ab
    if a == 1.0 and b == 0.0:
        return value
    return round(a * value + b, 9)


def known(channel: str, unit: str) -> str | None:
    """None if ``unit`` converts for ``channel``, else the reason (for a device's registered unit)."""
    try:
        affine(channel, unit)
    except UnitError as e:
        return str(e)
    return None
