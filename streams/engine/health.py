"""Device health in the engine: one :class:`DeviceHealth` record per device channel on the entity
state (``EntityState.health``), fed by every reading (:func:`on_reading`, from the sensor handler)
and scanned on the partition's event-time progress (:func:`scan`, from the runtime's offline timer).

The checks are ``detectors/device_health.py``; their thresholds ``riskwatch/data/devices.yaml``.
Alerts are entity alerts routed like any other (the entity's lead department), with rules
``device.offline.<channel>``, ``device.stuck.<channel>``, ``device.range.<channel>`` and
``device.step.<channel>``; the explanation names the device and its owner source. Offline resolves
at the device's next reading. Silence on a safety-critical channel raises the fused risk through the
signal ``silence.<channel>`` (``riskwatch/data/fusion.yaml``), growing while the silence lasts
(``devices.yaml`` ``silence``).

A device's expected interval is its registered ``interval_s`` (:func:`registered_interval`, the
device registry on the state) when there is one, else learnt from its readings.

>>> from datetime import datetime, timezone
>>> from riskwatch.domain.county import load_county
>>> from schemas.events import SensorReading
>>> from streams.engine.dispatch import EntityState, Processor
>>> p = Processor.from_county(load_county(), clock=lambda: 0.0)
>>> st = EntityState(kind="food_producer", name="鑫源食品", township="舞泉镇", registered=True)
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
>>> def r(i):
...     at = datetime.fromtimestamp(t0 + 60 * i, timezone.utc)
...     return SensorReading(event_id=f"s{i}", entity_id="E1", occurred_at=at, source="vendorA",
...                          device_id="d1", channel="cold_chain_temp", value=3.0 + i % 2, unit="C")
>>> for i in range(6):
...     _ = p.process(r(i), st, ("events.sensor", 0, i))
>>> round(interval_of(st, "d1:cold_chain_temp"))
60
>>> scan(p.cx, p.desk, "E1", st, t0 + 5 * 60 + 60).alerts        # 60 s of silence: not yet
[]
>>> out = scan(p.cx, p.desk, "E1", st, t0 + 5 * 60 + 100)        # 100 s > 1.5 × 60 s: offline
>>> [(a.rule, a.level.value, a.status.value) for a in out.alerts]
[('device.offline.cold_chain_temp', 'orange', 'firing')]
>>> st.risk.value("silence.cold_chain_temp", t0 + 400, p.cx.fusion) > 0
True
>>> [(a.rule, a.status.value) for a in p.process(r(7), st, ("events.sensor", 0, 7)).alerts]
[('device.offline.cold_chain_temp', 'resolved')]
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache

import orjson

from detectors.device_health import (
    DeviceHealth,
    HealthConfig,
    impossible_step,
    load_health,
    offline,
    out_of_range,
    skewed,
)
from detectors.rules import Hit
from schemas.events import Contribution, SensorReading
from schemas.vocabulary import DEVICE_FAULT_ZH, SENSOR_CHANNEL_ZH
from streams.engine.context import Context
from streams.engine.desk import Desk
from streams.engine.outcome import Outcome
from streams.engine.risk import fuse
from streams.engine.state import EntityState

OPEN = ("firing", "pending", "acknowledged", "in_progress", "escalated", "transferred")


# --- the device registry (the `devices` helper's EntityState.devices), through one accessor ---------
def registered_interval(st: EntityState, device_id: str, channel: str = "") -> float:
    """The channel's registered reporting interval (``DeviceEvent.channel_intervals_s``, else the device's
    ``interval_s``), 0.0 if the device is not registered."""
    d = st.devices.get(device_id)
    return float(d.interval(channel) or 0.0) if d is not None else 0.0


def has_devices(st: EntityState) -> bool:
    """Whether the entity has registered devices (then it is never evicted for silence)."""
    return bool(st.devices)


def owner_of(st: EntityState, device_id: str, rec: DeviceHealth) -> str:
    """The device's owner source: registered, else the source its readings come from."""
    d = st.devices.get(device_id)
    return (d.owner or rec.source) if d is not None else rec.source


def interval_of(st: EntityState, key: str, cfg: HealthConfig | None = None) -> float:
    """Expected reporting interval of ``<device_id>:<channel>`` (0.0: unknown yet): the longer of the
    registered one and the one learnt from its readings. A registration is per device, while a device's
    channels may report at different paces (an elevator's fault code every minute, its door cycles hourly):
    a channel slower than its device's registration by design would otherwise be "offline" between every
    two readings (the simulated county raised 98 such false alarms in 1.5 days)."""
    cfg = cfg or load_health()
    rec = st.health[key]
    device, _, channel = key.partition(":")
    return max(registered_interval(st, device, channel), cfg.learnt(rec.est))


# --- a partition's progress --------------------------------------------------------------------
def quorum_time(latest: list[float], quorum: int = 3) -> float:
    """The time by which ``quorum`` of ``latest`` (fewer on few: half of them, at least one) have all got.

    >>> quorum_time([100.0, 5000.0, 90.0, 95.0, 99.0, 98.0]), quorum_time([10.0, 20.0]), quorum_time([7.0])
    (99.0, 20.0, 7.0)
    """
    k = max(1, min(quorum, len(latest) // 2))
    return sorted(latest, reverse=True)[k - 1]


def progress_of(latest: dict[str, list[float]], quorum: int = 3) -> float:
    """How far a partition's devices have got, from each source's entities' latest device readings
    (``{source: [latest per entity]}``): per source the time by which a quorum of its entities reported,
    then the time by which ``quorum`` sources (on few sources: a majority, at least one) got there. One
    entity ahead of the rest (a test incident sent at the wall clock's now into a replayed past) or one
    gateway whose clock runs fast for all its entities must not make every other device look silent.

    >>> progress_of({"gw1": [100.0, 101.0, 99.0, 98.0], "gw2": [99.0, 100.0], "skewed": [7300.0, 7301.0]})
    100.0
    >>> progress_of({"gw1": [100.0, 5000.0, 98.0, 99.0, 97.0, 96.0]})
    99.0
    """
    per_source = sorted((quorum_time(ts, quorum) for ts in latest.values() if ts), reverse=True)
    if not per_source:
        return 0.0
    k = max(1, min(quorum, (len(per_source) + 1) // 2))
    return per_source[k - 1]


# --- per source: counted on /metrics, alarmed by Prometheus (deploy/prometheus/rules.yml) ---------
@cache
def skew_bound() -> float:
    """How far (seconds) an event's time may be off its Kafka record timestamp (devices.yaml)."""
    return load_health().sources.clock_skew_s


def clock_skewed(occurred_at: float, record_ts: float | None) -> bool:
    """Whether an event's time disagrees with its Kafka record timestamp (seconds) beyond the bound."""
    return bool(record_ts) and skewed(occurred_at, float(record_ts or 0.0), skew_bound())


def source_of(raw: bytes) -> str:
    """The ``source`` a refused message claims (best effort: its JSON's top-level field), else ``unknown``.

    >>> source_of(b'{"source": "iot-gw-03", "value": "x"}'), source_of(b"not json")
    ('iot-gw-03', 'unknown')
    """
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "unknown"
    src = d.get("source") if type(d) is dict else None
    if type(src) is not str or not src or len(src) > 64:
        src = d.get("gateway_id") if type(d) is dict else None
    return src if type(src) is str and 0 < len(src) <= 64 else "unknown"


# --- a reading ----------------------------------------------------------------------------------
def on_reading(cx: Context, desk: Desk, ev: SensorReading, st: EntityState, out: Outcome) -> None:
    """A reading: offline resolves; range, step and stuck are checked; the interval learns."""
    cfg = load_health()
    ch = cfg.channel(ev.channel)
    key = f"{ev.device_id}:{ev.channel}"
    rec = st.health.get(key)
    if rec is None:
        rec = st.health[key] = DeviceHealth(ev.channel.value, ev.source)
    t, v = out.at, ev.value
    if "offline" in rec.faults:
        rec.faults.remove("offline")
        rec.silent_n = 0
        st.risk.signals.pop(f"silence.{rec.channel}", None)  # gone, not a zero (fusion skips signal-less entities)
        if not any("offline" in r.faults for r in st.health.values() if r.channel == rec.channel):
            _clear(desk, ev, st, out, rec, "offline")
    in_order = t >= rec.last_t
    bad = out_of_range(v, *ch.range)  # not a value of the process: no step from or to it, not remembered
    if bad:
        _raise(
            cx, desk, ev, st, out, rec, "range", v, f"读数 {v:g}{ev.unit} 超出量程 [{ch.range[0]:g}, {ch.range[1]:g}]"
        )
    elif "range" in rec.faults:
        _clear(desk, ev, st, out, rec, "range")
    if in_order and not bad and not math.isnan(rec.last_v) and impossible_step(rec.last_v, v, ch.max_step):
        _raise(
            cx, desk, ev, st, out, rec, "step", v, f"读数由 {rec.last_v:g} 跳变为 {v:g}{ev.unit}(上限 {ch.max_step:g})"
        )
    elif in_order and "step" in rec.faults:
        _clear(desk, ev, st, out, rec, "step")
    if in_order and ch.max_stuck_min is not None:
        same_for = rec.stuck.update(t, v, cfg.stuck_eps)
        if same_for > ch.max_stuck_min * 60.0 and "stuck" not in rec.faults:
            _raise(cx, desk, ev, st, out, rec, "stuck", v, f"读数 {v:g}{ev.unit} 已持续 {same_for / 60:.0f} 分钟未变化")
        elif same_for == 0.0 and "stuck" in rec.faults:
            _clear(desk, ev, st, out, rec, "stuck")
    if in_order and not bad:
        rec.last_v = v
    rec.est.add(t, cfg.gap_window)


# --- time passing (event time of the partition) -------------------------------------------------
def scan(cx: Context, desk: Desk, entity_id: str, st: EntityState, progress: float) -> Outcome:
    """The entity's devices against ``progress``, the event time its partition has reached: a device
    silent for more than k × its interval goes offline (an alert; risk rises on safety-critical channels)."""
    out = Outcome()
    out.at = progress
    cfg = load_health()
    ev: SensorReading | None = None
    moved: SensorReading | None = None  # the risk moved (silence learnt): fused once, at the end
    if st.closed:  # a closed business's devices are expected to fall silent
        return out
    for key, rec in st.health.items():
        iv = interval_of(st, key, cfg)
        ch = cfg.channel(rec.channel)
        if rec.est.n != rec.seen_n:  # readings arrived since the last scan, yet none newer than the last one,
            # or more than an interval behind the progress twice running: its gateway's clock is behind, and
            # the device is alive all the same (once is a batch that moved the progress past a device's last
            # readings: a device that then stops is silent)
            lagging = bool(iv) and progress - rec.last_t > iv
            if rec.last_t <= rec.seen_t or (lagging and rec.lagging):
                rec.heard_t = progress
            rec.seen_n, rec.seen_t, rec.lagging = rec.est.n, rec.last_t, lagging
        if not offline(rec.alive_t, progress, iv, ch.offline_k):
            continue
        device_id = key.split(":", 1)[0]
        if "offline" not in rec.faults:  # stamped when it went offline: k × interval after its last reading
            ev = _tick_event(entity_id, device_id, rec, st, min(progress, rec.alive_t + ch.offline_k * iv))
            last = datetime.fromtimestamp(rec.last_t, UTC).isoformat(timespec="seconds")
            silent = (progress - rec.last_t) / 60.0
            _raise(cx, desk, ev, st, out, rec, "offline", silent,
                   f"最后一次读数 {last},已 {silent:.0f} 分钟无数据(应每 {iv / 60:g} 分钟上报)")  # fmt: skip
        past = progress - rec.alive_t - ch.offline_k * iv  # seconds silent past the threshold
        n = int(past / (cfg.silence.step_minutes * 60.0)) + 1
        if ch.safety_critical and n > rec.silent_n:
            rec.silent_n = n
            st.risk.learn_one(progress, f"silence.{rec.channel}", cfg.silence.value(past / 3600.0), cx.fusion)
            moved = _tick_event(entity_id, device_id, rec, st, progress)
    if moved is not None:  # only then: a fusion update at another time would move risk levels by itself
        fuse(cx, desk, moved, st, out)
    return out


def _tick_event(entity_id: str, device_id: str, rec: DeviceHealth, st: EntityState, at: float) -> SensorReading:
    """The event an offline alert is stamped with: the device's last value at the partition's progress."""
    return SensorReading(
        event_id=f"health:{device_id}:{rec.channel}:{int(at)}",
        entity_id=entity_id,
        occurred_at=datetime.fromtimestamp(at, UTC),
        source=owner_of(st, device_id, rec) or "health",
        device_id=device_id,
        channel=rec.channel,
        value=0.0 if math.isnan(rec.last_v) else rec.last_v,
        unit="",
    )


def _raise(
    cx: Context, desk: Desk, ev: SensorReading, st: EntityState, out: Outcome, rec: DeviceHealth, kind: str,
    value: float, detail: str,
) -> None:  # fmt: skip
    cfg = load_health()
    ch = cfg.channel(rec.channel)
    label = SENSOR_CHANNEL_ZH.get(rec.channel, rec.channel)
    owner = owner_of(st, ev.device_id, rec)
    rule = f"device.{kind}.{rec.channel}"
    hit = Hit(rule, cfg.level(kind, ch.safety_critical), f"{label}传感器{DEVICE_FAULT_ZH[kind]}", value, confirm=2)
    why = [Contribution(signal=rule, value=round(value, 4), detail=f"设备 {ev.device_id}(数据来源 {owner}):{detail}")]
    desk.raise_alert(ev, st, out, hit, why)
    # the desk learns a rule alert into the fused risk; a device fault is not the process's risk (a
    # silent safety-critical channel counts, as silence.<channel>), and a signal kept at weight 0
    # still kept the entity's fusion updating at every reading (measured: spurious model.risk alerts)
    st.risk.signals.pop(rule, None)
    if kind not in rec.faults:
        rec.faults.append(kind)


def _clear(desk: Desk, ev: SensorReading, st: EntityState, out: Outcome, rec: DeviceHealth, kind: str) -> None:
    if kind in rec.faults:
        rec.faults.remove(kind)
    rule = f"device.{kind}.{rec.channel}"
    for oa in list(st.alerts.values()):
        if oa.rule == rule and oa.status not in ("resolved", "closed"):
            desk.clear(ev, st, out, oa)
