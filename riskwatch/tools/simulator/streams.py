"""Event generators: the simulated county's registry, sensor, video, complaint and inspection streams.

``generate(config)`` yields ``(topic, key, value)``: the base topic name (``events.sensor`` …; the
CLI adds the prefix, and :func:`wire_topic` names the department's own topic of an inspection
result), the entity id as key bytes and the JSON value bytes. Values are valid against
``schemas.events`` except the deliberately malformed messages (``bad_rate``), which are recorded in
the ground truth. Same config (seed, start, now, days, scale, …) → byte-identical sequence.

Time advances in steps of ``sample_minutes`` (default 5 min simulated); each step's events are
sorted by send time, which is ``occurred_at`` (+08:00) but for the readings of a gateway whose clock is
off for a while (``simulator.yaml`` ``clock_skew``, ground truth ``record: clock_skew``). Nothing is sent
later than ``config.end`` (≤ the wall clock); only a fast gateway clock stamps a reading later.

The hot loop avoids pydantic: sensor values are computed vectorised per channel template with
numpy and written into prebuilt byte templates; other events are dicts serialised with orjson.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from riskwatch.domain.catalog import Catalog, load_catalog
from riskwatch.tools.simulator.county import CST, ROADS, County, Entity, SimConfig, build_county
from riskwatch.tools.simulator.incidents import Incident, schedule_incidents
from riskwatch.tools.simulator.words import (
    BEAUTY_SYMPTOMS,
    DEFECTS,
    DISHES,
    DRUGS,
    FOODS,
    FOREIGN,
    HOSPITALS,
    PROCEDURES,
    PRODUCTS,
    RX,
    SYMPTOMS,
)
from streams.engine.identity import sender_topic

T_REGISTRY = "events.registry"
T_SENSOR = "events.sensor"
T_VIDEO = "events.video"
T_COMPLAINT = "events.complaint"
T_INSPECTION = "events.inspection"
T_DEVICE = "events.device"
TOPICS = (T_REGISTRY, T_SENSOR, T_VIDEO, T_COMPLAINT, T_INSPECTION, T_DEVICE)


def wire_topic(topic: str, value: bytes, catalog: Catalog | None = None) -> str:
    """The topic a message is produced to (unprefixed): an inspection result goes to the inspecting
    (lead, first) department's own topic ``events.inspection.<dept>``, as that department's app
    would send it; a malformed one without a known department to the task-force office's."""
    if topic != T_INSPECTION:
        return topic
    cat = catalog or _default_catalog()
    try:
        dept = orjson.loads(value)["departments"][0]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        dept = None
    return sender_topic(
        T_INSPECTION, dept if isinstance(dept, str) and dept in cat.departments else cat.taskforce_office
    )


@cache
def _default_catalog() -> Catalog:
    return load_catalog()


Message = tuple[str, bytes, bytes]


def generate(config: SimConfig | None = None) -> Iterator[Message]:
    """The simulated event sequence as ``(topic, key, value)``; no Kafka needed."""
    return Simulator(config or SimConfig()).events()


class GatewayBatcher:
    """Groups one entity's sensor readings into gateway batch messages (``schemas.events.SensorBatch``):
    ``k`` readings, or fewer once the oldest has waited ``hold_s`` simulated seconds.

    >>> g = GatewayBatcher(2, 600)
    >>> r = lambda i: orjson.dumps({"schema_version": 1, "event_id": f"e{i}", "entity_id": "E1",
    ...     "occurred_at": "2026-11-27T08:00:00+08:00", "source": "iot-gw-01", "device_id": "d1",
    ...     "channel": "storage_temp", "unit": "C", "value": 20.5})
    >>> list(g.add(0.0, b"E1", r(1)))
    []
    >>> [(topic, key, value)] = g.add(1.0, b"E1", r(2))
    >>> topic, key, len(orjson.loads(value)["readings"])
    ('events.sensor', b'E1', 2)
    >>> orjson.loads(value)["readings"][0]  # doctest: +NORMALIZE_WHITESPACE
    {'event_id': 'e1', 'occurred_at': '2026-11-27T08:00:00+08:00', 'device_id': 'd1',
     'channel': 'storage_temp', 'unit': 'C', 'value': 20.5}
    """

    def __init__(self, k: int, hold_s: float):
        self.k, self.hold_s = k, hold_s
        self.buf: dict[bytes, tuple[float, str, list]] = {}  # key -> (first reading's time, gateway, readings)
        self._checked = 0.0

    def add(self, t: float, key: bytes, value: bytes) -> list[Message]:
        d = orjson.loads(value)
        entity, gw = d.pop("entity_id"), d.pop("source")
        d.pop("schema_version", None)
        hit = self.buf.get(key)
        if hit is None:
            hit = self.buf[key] = (t, gw, [])
        hit[2].append(d)
        out = self.due(t)
        if len(hit[2]) >= self.k and key in self.buf:
            out.append(self._emit(key, entity))
        return out

    def due(self, t: float) -> list[Message]:
        """Batches whose oldest reading has waited ``hold_s`` (checked once a simulated minute)."""
        if t - self._checked < 60:
            return []
        self._checked = t
        old = [key for key, (t0, _, _) in self.buf.items() if t - t0 >= self.hold_s]
        return [self._emit(key) for key in old]

    def flush(self) -> list[Message]:
        return [self._emit(key) for key in list(self.buf)]

    def _emit(self, key: bytes, entity: str | None = None) -> Message:
        _, gw, readings = self.buf.pop(key)
        return (
            T_SENSOR,
            key,
            orjson.dumps(
                {
                    "schema_version": 1,
                    "kind": "sensor_batch",
                    "entity_id": entity or key.decode(),
                    "gateway_id": gw,
                    "readings": readings,
                }
            ),
        )


# --- text material --------------------------------------------------------------------------------

TEXTS: dict[str, list[str]] = {
    "food_quality": [
        "{date}在{name}购买的{food}有异味,疑似变质,要求退货赔偿,商家拒绝处理。",
        "在{name}买的{food}打开后发现有{foreign},希望市场监管部门查处。",
        "{name}销售的{food}已经过了保质期,生产日期标注不清,请相关部门核查。",
        "{name}的{food}包装上没有生产厂家和许可证编号,怀疑是三无产品。",
    ],
    "hygiene": [
        "{name}后厨卫生条件很差,地面有积水和垃圾,操作人员不戴口罩帽子,请监管部门检查。",
        "{date}在{name}就餐时发现餐具不洁,碗里有残留物,服务员态度恶劣。",
        "{name}门口污水横流,苍蝇很多,食材直接堆放在地上。",
        "在{name}吃饭时看到老鼠从后厨跑出来,卫生太差了。",
    ],
    "food_poisoning": [
        "{date}在{name}就餐后,家里{n}人出现{symptom}症状,已到{hospital}就诊,怀疑食物中毒。",
        "昨天中午在{name}吃了{dish},下午开始{symptom},同桌{n}人都有类似症状。",
        "孩子在{name}吃了{dish}后{symptom},医生说是细菌性食物中毒,请求调查。",
    ],
    "counterfeit_drug": [
        "在{name}买的{drug}包装和以前不一样,批号查不到,怀疑是假药。",
        "{name}卖的{drug}吃了没有效果,药盒印刷模糊,追溯码扫不出来。",
    ],
    "drug_sales": [
        "{name}没有处方就卖{rx}等处方药,也没有药师在岗。",
        "{name}让用医保卡刷生活用品和保健品,违规套取医保基金。",
        "{name}的药品和日用品混放,阴凉柜温度显示很高。",
    ],
    "medical_beauty_injury": [
        "{date}在{name}做了{proc},术后{bsym},机构不予处理,给我做手术的人好像没有执业资格。",
        "在{name}做{proc}后{bsym},对方推卸责任,要求赔偿。",
    ],
    "product_quality": [
        "在{name}买的{product}用了{n}天就出问题,{defect},要求退换遭拒。",
        "{name}销售的{product}{defect},存在安全隐患,请质监部门检查。",
    ],
    "equipment_safety": [
        "{name}的电梯经常突然停运,{date}有人被困{n}0分钟,物业不处理。",
        "{name}锅炉房没有人值守,锅炉一直冒汽,担心有安全隐患。",
        "{name}的叉车司机没有证,车辆也没有年检。",
    ],
    "pricing": [
        "{name}的商品标价{p1}元,结账时收了{p2}元,存在价格欺诈。",
        "{name}收费不明码标价,结账时乱收费。",
    ],
    "other": [
        "{name}营业执照上的地址和实际经营地址不一致,请核查。",
        "{name}办会员卡后关门跑路,卡里还有余额{p2}元。",
        "{name}夜间占道经营,影响通行。",
    ],
}
TRAPPED = ["{name}的电梯突然停在两层中间,我们{n}个人被困,打了物业电话半天没人来,太危险了。"]
SURGE_OPENERS = ["我也遇到了同样的问题:", "和其他人一样,", "", "", "紧急投诉:", "又一起:"]
UNKNOWN_PLACES = ("集市", "路边摊", "流动摊贩", "网上直播间", "早市")

VIOLATIONS: dict[str, list[tuple[str, str, str]]] = {
    "food": [
        ("F01", "minor", "从业人员未按规定佩戴口罩、帽子"),
        ("F02", "minor", "进货查验记录不完整"),
        ("F06", "minor", "食品添加剂未专柜存放、专人管理"),
        ("F03", "serious", "使用超过保质期的食品原料"),
        ("F04", "serious", "冷链贮存温度记录缺失或超标"),
        ("F07", "serious", "从业人员健康证明过期"),
        ("F05", "critical", "生产经营场所有鼠迹、虫害"),
        ("F08", "critical", "使用非食品原料生产食品"),
    ],
    "drug": [
        ("D01", "minor", "药品陈列未按分类管理要求"),
        ("D04", "minor", "温湿度监测记录不完整"),
        ("D07", "minor", "医保结算存在串换刷卡疑点"),
        ("D02", "serious", "处方药未凭处方销售"),
        ("D03", "serious", "阴凉区温湿度超标且未采取调控措施"),
        ("D06", "serious", "执业药师不在岗"),
        ("D08", "serious", "使用过期医疗器械"),
        ("D05", "critical", "购进、销售假劣药品"),
        ("D09", "critical", "超范围开展诊疗项目或非卫生技术人员执业"),
    ],
    "industrial": [
        ("I01", "minor", "产品标识标注不规范"),
        ("I05", "minor", "原材料进货台账不全"),
        ("I02", "serious", "未取得生产许可证生产列入目录产品"),
        ("I03", "serious", "出厂检验记录缺失"),
        ("I04", "critical", "生产、销售不合格产品"),
    ],
    "special_equipment": [
        ("S01", "minor", "特种设备安全技术档案不完整"),
        ("S05", "minor", "电梯维保记录不全"),
        ("S02", "serious", "特种设备超期未检验"),
        ("S03", "serious", "作业人员无证上岗"),
        ("S04", "critical", "安全附件(安全阀、压力表)失效"),
        ("S06", "critical", "应急救援预案未落实"),
    ],
}
CHECKLISTS: dict[str, list[str]] = {
    "food": ["证照公示", "从业人员健康证明", "进货查验记录", "贮存条件", "环境卫生", "添加剂管理"],
    "drug": ["许可证照", "药师在岗", "处方药管理", "温湿度监测", "购销记录", "医保结算"],
    "industrial": ["生产许可证", "出厂检验", "产品标识", "原料台账"],
    "special_equipment": ["使用登记", "定期检验", "作业人员持证", "安全附件", "维保记录", "应急预案"],
}
COMPLAINT_SOURCE = {
    "12315": "12315-platform",
    "12345": "12345-hotline",
    "online": "online-portal",
    "walk_in": "walk-in-desk",
}

PHONE_PREFIX = (
    130,
    131,
    132,
    133,
    135,
    136,
    137,
    138,
    139,
    150,
    151,
    152,
    155,
    157,
    158,
    159,
    166,
    177,
    180,
    182,
    183,
    185,
    186,
    187,
    188,
    189,
    198,
    199,
)
_ID_W = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def fake_phone(rng: random.Random) -> str:
    return f"{rng.choice(PHONE_PREFIX)}{rng.randrange(10**8):08d}"


def fake_id_number(rng: random.Random) -> str:
    """An 18-digit resident ID number of the county (411121) with a valid check digit. Fake."""
    birth = datetime(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    body = f"411121{birth:%Y%m%d}{rng.randrange(1000):03d}"
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, _ID_W, strict=True)) % 11]
    return body + check


def _pick(rng: random.Random, weighted: dict) -> Any:
    total = sum(weighted.values())
    x = rng.random() * total
    for v, w in weighted.items():
        x -= w
        if x < 0:
            return v
    return next(reversed(weighted))


# --- sensor groups ----------------------------------------------------------------------------------
class _Group:
    """All streams of one channel template, vectorised."""

    def __init__(
        self,
        tmpl: str,
        spec: dict,
        rows: list[tuple[int, Entity, str]],
        np_rng: np.random.Generator,
        step_s: float,
        profiles: dict,
        kpa_gateways: tuple[str, ...] = (),
    ):
        self.tmpl, self.spec = tmpl, spec
        self.kind = "derived" if spec.get("derived") else spec.get("kind", "gauge")
        n = self.n = len(rows)
        self.channel, self.unit = spec["channel"], spec["unit"]
        self.decimals = int(spec.get("decimals", 0))
        self.ent_idx = np.array([r[0] for r in rows], dtype=np.int64)
        self.device_ids = [r[2] for r in rows]
        self.entity_ids = [r[1].entity_id for r in rows]
        self.keys = [eid.encode() for eid in self.entity_ids]
        every_s = float(spec.get("every_min", step_s / 60)) * 60
        self.every = max(1, int(round(every_s / step_s)))
        self.phase = np.asarray(np_rng.integers(0, self.every, n), dtype=np.int64)
        self.offset = np.asarray(np_rng.integers(0, int(step_s), n), dtype=np.int64)  # seconds after the step start
        self.base = spec.get("baseline", 0.0) + spec.get("baseline_sd", 0.0) * np_rng.standard_normal(n)
        self.amp = spec.get("daily_amp", 0.0) * np_rng.uniform(0.7, 1.3, n)
        self.noise = float(spec.get("noise", 0.0))
        self.drift = spec.get("drift_sd_per_day", 0.0) * np_rng.standard_normal(n)
        self.spike_prob = float(spec.get("spike_prob", 0.0))
        self.spike_mean = float(spec.get("spike_mean", 0.0))
        self.profile = profiles[spec.get("profile", "flat")]
        self.limit = spec.get("limit")
        if self.kind == "code":
            codes = {int(k): float(v) for k, v in spec["codes"].items()}
            self.codes = np.array(list(codes), dtype=np.int64)
            self.code_p = np.array(list(codes.values())) / sum(codes.values())
            self.fault_prob = float(spec["fault_prob"])
        self.gap_until = np.zeros(n)
        self.stuck_until = np.zeros(n)
        self.faults: dict[tuple[int, str], dict] = {}  # (stream, offline|stuck) -> its open device-fault record
        self.gateways = [f"iot-gw-{(r[0] % 23) + 1:02d}" for r in rows]
        self.last = np.full(n, np.nan)
        self.src: tuple[_Group, np.ndarray] | None = None  # derived: (source group, index per stream)
        self.incidents: list[tuple[int, Incident]] = []
        self.current = np.zeros(n)  # this step's values (read by derived groups)
        # byte templates: everything but event_id, occurred_at and value
        gw = [gateway_of(r[0]) for r in rows]
        # streams whose vendor sends pressures in kPa (the registry's `kpa_gateways`): value × 1000
        kpa = set(kpa_gateways) if self.unit == "MPa" else set()
        self.kpa = {i for i in range(n) if gw[i] in kpa}
        units = ["kPa" if i in self.kpa else self.unit for i in range(n)]

        def lit(x: str) -> bytes:  # a literal part of a %-template
            return x.encode().replace(b"%", b"%%")

        self.tmpl_bytes = [
            b'{"schema_version":1,"event_id":"%s","entity_id":"'
            + lit(self.entity_ids[i])
            + b'","occurred_at":"%s","source":"'
            + lit(gw[i])
            + b'","device_id":"'
            + lit(self.device_ids[i])
            + b'","channel":"'
            + lit(self.channel)
            + b'","unit":"'
            + lit(units[i])
            + b'","value":%s}'
            for i in range(n)
        ]


def gateway_of(entity_index: int) -> str:
    """The IoT gateway (vendor platform) that sends an entity's readings: the readings' ``source``
    and its devices' ``owner``."""
    return f"iot-gw-{(entity_index % 23) + 1:02d}"


def _interp(profile: np.ndarray, hour: float) -> float:
    h0 = int(hour) % 24
    f = hour - int(hour)
    return float(profile[h0] * (1 - f) + profile[h0 + 1] * f)


class Simulator:
    """The county simulator. ``events()`` yields messages; ``ground_truth()`` describes what was sent."""

    def __init__(self, config: SimConfig | None = None, catalog: Catalog | None = None):
        self.cfg = cfg = config or SimConfig()
        self.catalog = catalog or load_catalog()
        data = cfg.data
        self.county: County = build_county(cfg)
        self.entities = self.county.entities
        self.channels: dict[str, dict] = data["channels"]
        self.profiles = {k: np.array(list(v) + [v[0]], dtype=float) for k, v in data["profiles"].items()}
        self.step_s = float(cfg.sample_minutes) * 60
        self.t0 = cfg.start.timestamp()
        self.t_end = cfg.end.timestamp()
        self.rng = random.Random(f"streams:{cfg.seed}")
        self.np_rng = np.random.default_rng(cfg.seed)
        self._bad_rng = random.Random(f"bad:{cfg.seed}")
        ns = uuid.uuid5(uuid.NAMESPACE_URL, f"https://riskwatch/simulator/seed/{cfg.seed}")
        self._ns = ns.bytes
        self._counter = 0
        self._insp_counter = 0
        self._ent_index = {e.entity_id: i for i, e in enumerate(self.entities)}
        self.active = np.array([e.registered_at is None for e in self.entities], dtype=bool)
        self.closed: set[str] = set()
        self.incidents: list[Incident] = schedule_incidents(cfg, self.county, self.channels)
        self._incident_entities = {i.entity.entity_id for i in self.incidents}
        self._build_groups()
        self._build_rates()
        self._scheduled = sorted(
            ((t, k, what, params, inc) for k, inc in enumerate(self.incidents) for (t, what, params) in inc.scheduled),
            key=lambda r: (r[0], r[1]),
        )
        self._pending_reg = sorted(
            (e.registered_at.timestamp(), e.entity_id) for e in self.entities if e.registered_at is not None
        )
        # running stats (what was actually yielded)
        self.per_topic: Counter[str] = Counter()
        self.bad: list[dict] = []
        self.sent = 0
        self.sim_time = self.t0
        self._last_by_topic: dict[str, tuple[bytes, bytes]] = {}
        # device faults (gateway gaps, stuck values, dying sensors) with ground truth; dying sensors
        # draw from their own generator, so the other streams are the same as without them
        self.device_faults: list[dict] = []
        self._fault_rng = np.random.default_rng([cfg.seed, 21])
        # gateways whose clock is off for a period (simulator.yaml clock_skew): (source, skew s, from, to)
        self.skews: list[tuple[str, float, float, float]] = [
            (
                str(c["source"]),
                float(c["skew_minutes"]) * 60.0,
                self.t0 + float(c["from_hour"]) * 3600.0,
                self.t0 + (float(c["from_hour"]) + float(c["hours"])) * 3600.0,
            )
            for c in data.get("clock_skew") or ()
        ]

    # --- set-up -----------------------------------------------------------------------------------
    def _build_groups(self) -> None:
        rows: dict[str, list[tuple[int, Entity, str]]] = {}
        for i, e in enumerate(self.entities):
            for d in e.devices:
                for tmpl in d.channels:
                    rows.setdefault(tmpl, []).append((i, e, d.device_id))
        # derived groups after their sources; template order from the data file otherwise
        order = sorted(rows, key=lambda t: (bool(self.channels[t].get("derived")), list(self.channels).index(t)))
        kpa = tuple(self.cfg.data.get("device_registry", {}).get("kpa_gateways", ()))
        self.groups: list[_Group] = [
            _Group(t, self.channels[t], rows[t], self.np_rng, self.step_s, self.profiles, kpa) for t in order
        ]
        by_tmpl = {g.tmpl: g for g in self.groups}
        for g in self.groups:
            if g.kind == "derived":  # boiler_temp from the same device's boiler_pressure
                src = by_tmpl["boiler_pressure"]
                pos = {d: k for k, d in enumerate(src.device_ids)}
                g.src = (src, np.array([pos[d] for d in g.device_ids], dtype=np.int64))
                g.every, g.phase, g.offset = src.every, src.phase[g.src[1]], src.offset[g.src[1]] + 2
        for inc in self.incidents:
            if inc.template and inc.device_id is not None:
                g = by_tmpl[inc.template]
                g.incidents.append((g.device_ids.index(inc.device_id), inc))
        self.n_streams = sum(g.n for g in self.groups)

    def _build_rates(self) -> None:
        data = self.cfg.data
        self.cams: list[tuple[int, str]] = [(i, c) for i, e in enumerate(self.entities) for c in e.cameras]
        self.cam_ent = np.array([c[0] for c in self.cams], dtype=np.int64)
        self.video_rates = {k: float(v) for k, v in data["video"]["per_camera_per_day"].items()}
        by_kind: dict[str, list[int]] = {}
        for i, e in enumerate(self.entities):
            by_kind.setdefault(e.kind, []).append(i)
        self.by_kind: dict[str, np.ndarray] = {k: np.array(v, dtype=np.int64) for k, v in by_kind.items()}
        kitchen = self.profiles["kitchen"][:24]
        self.kitchen_norm = self.profiles["kitchen"] / kitchen.mean()
        night = 1.0 - self.profiles["kitchen"] / self.profiles["kitchen"].max()
        self.night_norm = night / night[:24].mean()
        people = self.profiles["people"]
        self.people_norm = people / people[:24].mean()

    # --- helpers ----------------------------------------------------------------------------------
    def _eid(self) -> str:
        """Deterministic event id: the UUID version 5 of (seed namespace, counter)."""
        self._counter += 1
        h = hashlib.sha1(self._ns + self._counter.to_bytes(8, "big")).hexdigest()
        return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"

    @staticmethod
    def _iso(t: float) -> str:
        return datetime.fromtimestamp(t, CST).isoformat()

    def _event(self, batch: list, t: float, topic: str, entity_id: str, source: str, body: dict) -> None:
        t = float(int(t))  # whole seconds, like the devices and systems that send them
        d = {
            "schema_version": 1,
            "event_id": self._eid(),
            "entity_id": entity_id,
            "occurred_at": self._iso(t),
            "source": source,
        }
        d.update(body)
        batch.append((t, len(batch), topic, entity_id.encode(), orjson.dumps(d)))

    # --- the sequence -----------------------------------------------------------------------------
    def events(self) -> Iterator[Message]:
        """The messages in send order; after each, ``sim_time`` is its send time (what a producer stamps
        on the Kafka record): a skewed gateway's readings carry an ``occurred_at`` off it."""
        bad_rate = self.cfg.bad_rate
        brng = self._bad_rng
        last = self._last_by_topic
        k = self.cfg.gateway_batch
        gw = GatewayBatcher(k, self.cfg.gateway_hold_minutes * 60) if k > 1 else None
        for t, _, topic, key, value in self._stream():
            self.sim_time = t
            self.per_topic[topic] += 1
            if gw is not None and topic == T_SENSOR:
                for msg in gw.add(t, key, value):
                    self.sent += 1
                    yield msg
            else:
                if gw is not None:
                    for msg in gw.due(t):
                        self.sent += 1
                        yield msg
                self.sent += 1
                yield topic, key, value
            last[topic] = (key, value)
            if bad_rate and topic != T_DEVICE and brng.random() < bad_rate:
                msg = self._bad_message(topic, key, value)  # a malformed message stays a message of its own
                self.sent += 1
                yield msg
        if gw is not None:
            for msg in gw.flush():
                self.sent += 1
                yield msg

    def _stream(self) -> Iterator[tuple]:
        # 1. the registry first: every entity known at the start
        batch: list = []
        for e in self.entities:
            if e.registered_at is None:
                self._event(
                    batch,
                    self.t0,
                    T_REGISTRY,
                    e.entity_id,
                    "registry-sync",
                    {"action": "registered", **e.registry_payload()},
                )
        yield from batch
        batch = []  # then their devices (设备台账)
        for e in self.entities:
            if e.registered_at is None:
                self._device_events(batch, self.t0, e)
        yield from batch
        step = 0
        t = self.t0
        while t <= self.t_end:
            batch = []
            self._registrations(t, batch)
            self._sensors(step, t, batch)
            self._video(t, batch)
            self._complaints(t, batch)
            self._inspections(t, batch)
            self._incident_events(t, batch)
            self._registry_churn(t, batch)
            batch.sort()  # (time, sequence) is unique: never compares further
            for row in batch:
                if row[0] <= self.t_end:
                    yield row
            step += 1
            t = self.t0 + step * self.step_s

    # --- registry ---------------------------------------------------------------------------------
    def _registrations(self, t: float, batch: list) -> None:
        while self._pending_reg and self._pending_reg[0][0] < t + self.step_s:
            ts, eid = self._pending_reg.pop(0)
            i = self._ent_index[eid]
            self.active[i] = True
            e = self.entities[i]
            self._event(batch, ts, T_REGISTRY, eid, "registry-sync", {"action": "registered", **e.registry_payload()})
            self._device_events(batch, ts, e)

    def _device_events(self, batch: list, t: float, e: Entity) -> None:
        """The entity's devices on ``events.device`` (设备台账): channels, unit, interval, ratings (a
        share without), the gateway that sends their readings as owner. Own ids and an own random
        stream: the other events' ids and values stay as they were without the registry."""
        reg = self.cfg.data.get("device_registry")
        if not reg or not e.devices:
            return
        rng = random.Random(f"devices:{self.cfg.seed}:{e.entity_id}")
        owner = gateway_of(self._ent_index[e.entity_id])
        kpa = owner in reg.get("kpa_gateways", ())
        for d in e.devices:
            specs = [self.channels[c] for c in d.channels]
            units = {("kPa" if kpa and sp["unit"] == "MPa" else sp["unit"]) for sp in specs}
            pace = {sp["channel"]: int(float(sp.get("every_min", self.cfg.sample_minutes)) * 60) for sp in specs}
            every = min(pace.values()) / 60
            body: dict[str, Any] = {
                "action": "registered",
                "device_id": d.device_id,
                "channels": list(dict.fromkeys(sp["channel"] for sp in specs)),
                "unit": units.pop() if len(units) == 1 else "",
                "interval_s": int(every * 60),
                **({"channel_intervals_s": pace} if len(set(pace.values())) > 1 else {}),
                "owner": owner,
            }
            if rng.random() >= reg.get("unrated_share", 0.0):
                for c in d.channels:
                    body.update(reg.get("ratings", {}).get(c, {}))
            t_int = float(int(t))
            ev = {"schema_version": 1, "event_id": f"dev-{d.device_id}", "entity_id": e.entity_id,
                  "occurred_at": self._iso(t_int), "source": reg.get("registrar", "registry-sync"), **body}  # fmt: skip
            batch.append((t_int, len(batch), T_DEVICE, e.entity_id.encode(), orjson.dumps(ev)))

    def _registry_churn(self, t: float, batch: list) -> None:
        reg = self.cfg.data["registry"]
        dt_days = self.step_s / 86400
        n_active = int(self.active.sum())
        rng = self.rng
        for action, rate in (("updated", reg["update_per_day"]), ("closed", reg["close_per_day"])):
            for _ in range(int(self.np_rng.poisson(n_active * rate * dt_days))):
                i = rng.randrange(len(self.entities))
                e = self.entities[i]
                if not self.active[i] or (action == "closed" and e.entity_id in self._incident_entities):
                    continue
                ts = t + rng.random() * self.step_s
                if action == "updated":
                    # 变更登记: a new address or licence renewal
                    if rng.random() < 0.5:
                        e.address = f"舞阳县{e.township}{rng.choice(ROADS)}{rng.randint(1, 399)}号"
                    elif e.licence:
                        e.licence = e.licence[:-1] + str(rng.randint(0, 9))
                else:
                    self.active[i] = False
                    self.closed.add(e.entity_id)
                self._event(
                    batch, ts, T_REGISTRY, e.entity_id, "registry-sync", {"action": action, **e.registry_payload()}
                )

    # --- sensors ----------------------------------------------------------------------------------
    def _sensors(self, step: int, t: float, batch: list) -> None:
        rng = self.np_rng
        nz = self.cfg.data["nuisance"]
        hour = datetime.fromtimestamp(t, CST).hour + datetime.fromtimestamp(t, CST).minute / 60.0
        days = (t - self.t0) / 86400
        step_days = self.step_s / 86400
        ts_cache: dict[int, bytes] = {}
        for g in self.groups:
            n = g.n
            p = _interp(g.profile, hour)
            if g.kind == "gauge":
                mean = g.base + g.amp * p + g.drift * days
                v = mean + g.noise * rng.standard_normal(n)
                if g.spike_prob:
                    hit = rng.random(n) < g.spike_prob * max(p, 0.0) / max(float(g.profile.max()), 1e-9)
                    v = v + hit * rng.exponential(g.spike_mean, n)
            elif g.kind == "count":
                mean = np.maximum(g.base + g.amp * p, 0.0)
                v = rng.poisson(mean).astype(float)
            elif g.kind == "code":
                mean = np.zeros(n)
                v = np.where(rng.random(n) < g.fault_prob, rng.choice(g.codes, n, p=g.code_p), 0).astype(float)
            else:  # derived: saturation temperature of the boiler's steam, T ≈ 100 + 84·√p(MPa gauge)
                src, pos = g.src  # type: ignore[misc]
                mean = 100.0 + 84.0 * np.sqrt(np.maximum(src.current[pos], 0.0))
                v = mean + g.noise * rng.standard_normal(n)
            # nuisance: gateway gaps and stuck sensors (not incidents)
            if g.kind != "derived":
                u = rng.random((2, n))
                gp = nz["gap_per_day"] * step_days * g.every
                sp = nz["stuck_per_day"] * step_days * g.every
                # durations drawn for every stream (used where a fault starts): how many streams can start one
                # (a dying sensor cannot) must not shift the generator, or dying sensors would re-draw the county
                dur = rng.random((2, n))
                gstart = (u[0] < gp) & (g.gap_until < t)
                if gstart.any():
                    lo, hi = nz["gap_minutes"]
                    g.gap_until[gstart] = t + (lo + (hi - lo) * dur[0][gstart]) * 60
                sstart = (u[1] < sp) & (g.stuck_until < t) & ~np.isnan(g.last) & (g.kind != "code")
                if sstart.any():
                    lo, hi = nz["stuck_minutes"]
                    g.stuck_until[sstart] = t + (lo + (hi - lo) * dur[1][sstart]) * 60
                dp = nz.get("dying_per_day", 0.0) * step_days * g.every
                if dp:  # a dying sensor: silent until the end of the run (never on an incident's stream)
                    die = (self._fault_rng.random(n) < dp) & (g.gap_until < t) & self.active[g.ent_idx]
                    for i in np.flatnonzero(die).tolist():
                        if not any(k == i for k, _ in g.incidents):
                            g.gap_until[i] = np.inf
                            self._fault(g, i, "dying", t)
                for i in np.flatnonzero(gstart).tolist():
                    if np.isfinite(g.gap_until[i]):
                        self._fault(g, i, "offline", t)
                for i in np.flatnonzero(sstart).tolist():
                    self._fault(g, i, "stuck", t)
            # incidents override nuisance on their own stream
            for i, inc in g.incidents:
                te = t + float(g.offset[i])
                if not inc.start <= te <= inc.end:
                    continue
                self._fault_ends(g, i, te)
                g.gap_until[i] = g.stuck_until[i] = 0.0
                if g.kind == "code":
                    if self.rng.random() < inc.fault_share or not inc.observed.get("n_faults"):
                        code = _pick(self.rng, inc.codes)
                        v[i] = code
                else:
                    w = inc.weight(te)
                    v[i] = v[i] + w * (inc.target - mean[i])
            stuck = g.stuck_until > t
            if stuck.any():
                v = np.where(stuck, g.last, v)
            if g.decimals:
                v = np.round(v, g.decimals)
            g.current = v
            due = (g.phase == (step % g.every)) & self.active[g.ent_idx] & (g.gap_until <= t)
            idx = np.flatnonzero(due)
            if not len(idx):
                continue
            g.last[idx] = v[idx]
            is_int = g.kind in ("count", "code")
            vals = v[idx].astype(np.int64).tolist() if is_int else v[idx].tolist()
            offs = g.offset[idx].tolist()
            tmpl, keys, eid, dumps, append = g.tmpl_bytes, g.keys, self._eid, orjson.dumps, batch.append
            skew = {src: dt for src, dt, a, b in self.skews if a <= t < b}
            if g.kpa:  # that vendor's gateways send kPa
                vals = [round(x * 1000.0, 3) if i in g.kpa else x for i, x in zip(idx.tolist(), vals, strict=True)]
            for i, val, off in zip(idx.tolist(), vals, offs, strict=True):
                tsb = ts_cache.get(off)
                if tsb is None:
                    tsb = ts_cache[off] = self._iso(t + off).encode()
                if skew and g.gateways[i] in skew:  # sent now, stamped by a gateway clock that is off
                    tsb = self._iso(t + off + skew[g.gateways[i]]).encode()
                append((t + off, len(batch), T_SENSOR, keys[i], tmpl[i] % (eid().encode(), tsb, dumps(val))))
            for i, inc in g.incidents:
                if due[i] and inc.start <= t + float(g.offset[i]) <= inc.end:
                    self._observe(inc, t + float(g.offset[i]), float(v[i]), g.kind == "code")

    def _fault(self, g: _Group, i: int, kind: str, t: float) -> None:
        """Ground truth of a device fault: which device, from when to when (``end`` None: to the run's end)."""
        until = float(g.stuck_until[i] if kind == "stuck" else g.gap_until[i])
        rec = {
            "record": "device_fault",
            "kind": kind,
            "entity_id": g.entity_ids[i],
            "device_id": g.device_ids[i],
            "channel": g.channel,
            "source": g.gateways[i],
            "interval_s": g.every * self.step_s,
            "start": self._iso(t),
            "end": self._iso(until) if np.isfinite(until) else None,
            "_start": t,
            "_end": until,
        }
        self.device_faults.append(rec)
        g.faults[(i, "stuck" if kind == "stuck" else "offline")] = rec

    def _fault_ends(self, g: _Group, i: int, t: float) -> None:
        """An incident takes over the stream: its open faults end now."""
        for kind in ("offline", "stuck"):
            rec = g.faults.pop((i, kind), None)
            if rec is not None and rec["_end"] > t:
                rec["_end"], rec["end"] = t, self._iso(t)

    def _observe(self, inc: Incident, t: float, value: float, code: bool) -> None:
        o = inc.observed
        o["readings"] = o.get("readings", 0) + 1
        if code:
            if value:
                o["n_faults"] = o.get("n_faults", 0) + 1
                o.setdefault("first_fault", t)
        else:
            o["peak"] = max(o.get("peak", value), value)
            if inc.limit is not None and value > inc.limit:
                o["n_above_limit"] = o.get("n_above_limit", 0) + 1
                o.setdefault("first_breach", t)

    # --- video ------------------------------------------------------------------------------------
    def _video(self, t: float, batch: list) -> None:
        if not self.cams:
            return
        rng, nrng = self.rng, self.np_rng
        hour = datetime.fromtimestamp(t, CST).hour
        act = self.active[self.cam_ent]
        n_act = int(act.sum())
        if not n_act:
            return
        live = np.flatnonzero(act)
        step_days = self.step_s / 86400
        conf = self.cfg.data["video"]["confidence"]
        for cls, rate in self.video_rates.items():
            factor = self.night_norm[hour] if cls == "rodent" else self.kitchen_norm[hour]
            k = int(nrng.poisson(n_act * rate * step_days * factor))
            for _ in range(k):
                ci = int(live[rng.randrange(n_act)])
                ent_i, cam = self.cams[ci]
                if cls == "rodent":  # background rodent hits are mostly low-confidence false positives
                    c = rng.uniform(0.45, 0.72)
                else:
                    c = min(conf["max"], max(conf["min"], rng.gauss(conf["mean"], conf["sd"])))
                self._video_event(batch, t + rng.random() * self.step_s, self.entities[ent_i], cam, cls, round(c, 3))

    def _video_event(self, batch: list, ts: float, e: Entity, cam: str, cls: str, conf: float) -> None:
        day = datetime.fromtimestamp(ts, CST)
        ref = f"s3://riskwatch-video/{cam}/{day:%Y%m%d}/{day:%H%M%S}-{cls}.jpg"
        self._event(
            batch,
            ts,
            T_VIDEO,
            e.entity_id,
            "video-ai",
            {"camera_id": cam, "cls": cls, "confidence": conf, "evidence_ref": ref},
        )

    # --- complaints -------------------------------------------------------------------------------
    def _complaints(self, t: float, batch: list) -> None:
        c = self.cfg.data["complaints"]
        rng, nrng = self.rng, self.np_rng
        hour = datetime.fromtimestamp(t, CST).hour
        factor = float(self.people_norm[hour])
        step_days = self.step_s / 86400
        for kind, rate in c["per_entity_per_day"].items():
            ids = self.by_kind.get(kind)
            if ids is None:
                continue
            live = ids[self.active[ids]]
            if not len(live):
                continue
            k = int(nrng.poisson(len(live) * rate * step_days * factor))
            for _ in range(k):
                e = self.entities[int(live[rng.randrange(len(live))])]
                cat = _pick(rng, c["categories"][kind])
                self._complaint(batch, t + rng.random() * self.step_s, e, cat)
        k = int(nrng.poisson(c["unknown_per_day"] * step_days * factor))
        for _ in range(k):
            self._complaint(batch, t + rng.random() * self.step_s, None, _pick(rng, c["categories"]["unknown"]))

    def _complaint_text(
        self, rng: random.Random, e: Entity | None, category: str, ts: float, theme: str = "", fixed: dict | None = None
    ) -> str:
        if e is None:
            town = rng.choice(self.county.townships)["name"]
            name = f"{town}{rng.choice(UNKNOWN_PLACES)}"
        else:
            name = e.name
        day = datetime.fromtimestamp(ts, CST) - timedelta(days=rng.choice((0, 0, 1, 2)))
        pool = TRAPPED if theme == "trapped" else TEXTS.get(category, TEXTS["other"])
        slots = dict(
            name=name,
            date=f"{day.month}月{day.day}日",
            food=rng.choice(FOODS),
            dish=rng.choice(DISHES),
            foreign=rng.choice(FOREIGN),
            drug=rng.choice(DRUGS),
            rx=rng.choice(RX),
            product=rng.choice(PRODUCTS),
            defect=rng.choice(DEFECTS),
            proc=rng.choice(PROCEDURES),
            bsym=rng.choice(BEAUTY_SYMPTOMS),
            symptom=rng.choice(SYMPTOMS),
            hospital=rng.choice(HOSPITALS),
            n=rng.randint(2, 6),
            p1=rng.randint(5, 80),
            p2=rng.randint(81, 600),
        )
        slots.update(fixed or {})
        text = rng.choice(pool).format(**slots)
        if theme == "surge":
            text = rng.choice(SURGE_OPENERS) + text
        c = self.cfg.data["complaints"]
        if rng.random() < c["share_with_phone"]:
            text += rng.choice(("联系电话{}。", "我的手机号是{},请尽快回复。", "请回电{}。")).format(fake_phone(rng))
        if rng.random() < c["share_with_id"]:
            text += f"本人身份证号{fake_id_number(rng)}。"
        return text

    def _complaint(
        self, batch: list, ts: float, e: Entity | None, category: str, theme: str = "", fixed: dict | None = None
    ) -> None:
        rng = self.rng
        ch = _pick(rng, self.cfg.data["complaints"]["channels"])
        body = {
            "channel": ch,
            "category": category,
            "text": self._complaint_text(rng, e, category, ts, theme, fixed),
            "township": e.township if e else "",
            "location": (e.address if e and rng.random() < 0.7 else ""),
        }
        self._event(batch, ts, T_COMPLAINT, e.entity_id if e else "unknown", COMPLAINT_SOURCE[ch], body)

    # --- inspections ------------------------------------------------------------------------------
    def _inspections(self, t: float, batch: list) -> None:
        ins = self.cfg.data["inspections"]
        local = datetime.fromtimestamp(t, CST)
        if local.weekday() >= 5 or not (8.5 <= local.hour + local.minute / 60 < 17.5):
            return
        factor = (24 / 9) * (7 / 5)  # all of a week's inspections happen in 5 × 9 working hours
        rng, nrng = self.rng, self.np_rng
        step_days = self.step_s / 86400
        for kind, ids in self.by_kind.items():
            if not self.catalog.items_for_kind(kind):
                continue
            live = ids[self.active[ids]]
            if not len(live):
                continue
            k = int(nrng.poisson(len(live) * ins["per_entity_per_day"] * step_days * factor))
            for _ in range(k):
                e = self.entities[int(live[rng.randrange(len(live))])]
                self._inspection(batch, t + rng.random() * self.step_s, e, rng)

    def _inspection(
        self,
        batch: list,
        ts: float,
        e: Entity,
        rng: random.Random,
        outcome: str | None = None,
        depts: list[str] | None = None,
    ) -> None:
        ins = self.cfg.data["inspections"]
        item = rng.choice(self.catalog.items_for_kind(e.kind))
        departments = [item.lead]
        if item.cooperating and rng.random() < ins["cooperating_share"]:
            departments += rng.sample(list(item.cooperating), min(len(item.cooperating), rng.randint(1, 2)))
        if depts is not None:
            departments = depts
        k = ins["inspectors_per_dept"]
        inspectors = [f"{departments[0]}-{x:02d}" for x in sorted(rng.sample(range(1, k + 1), 2))]
        inspectors += [f"{d}-{rng.randint(1, k):02d}" for d in departments[1:]]
        outcome = outcome or _pick(rng, ins["outcomes"])
        pool = VIOLATIONS[item.field]
        if outcome == "pass":
            viol = []
        elif outcome == "pass_with_conditions":
            viol = rng.sample([v for v in pool if v[1] == "minor"], rng.randint(1, 2))
        else:
            heavy = [v for v in pool if v[1] != "minor"]
            viol = [rng.choice(heavy)] + rng.sample([v for v in pool if v[1] == "minor"], rng.randint(0, 1))
            if rng.random() < 0.3:
                extra = rng.choice(heavy)
                if extra not in viol:
                    viol.append(extra)
        points = CHECKLISTS[item.field]
        checklist = {p: True for p in points}
        for _ in viol:
            checklist[rng.choice(points)] = False
        self._insp_counter += 1
        day = datetime.fromtimestamp(ts, CST)
        body = {
            "inspection_id": f"INS-{day:%Y%m%d}-{self._insp_counter:05d}",
            "item_id": item.id,
            "departments": departments,
            "inspectors": inspectors,
            "checklist": checklist,
            "violations": [{"code": c, "severity": s, "description": d} for c, s, d in viol],
            "outcome": outcome,
        }
        self._event(batch, ts, T_INSPECTION, e.entity_id, "inspection-app", body)

    # --- incidents --------------------------------------------------------------------------------
    def _incident_events(self, t: float, batch: list) -> None:
        end = t + self.step_s
        while self._scheduled and self._scheduled[0][0] < end:
            ts, _, what, params, inc = self._scheduled.pop(0)
            e = inc.entity
            if not self.active[self._ent_index[e.entity_id]] or ts > self.t_end:
                continue
            if what == "complaint":
                self._complaint(batch, ts, e, params["category"], params.get("theme", ""), params.get("fixed"))
            elif what == "video":
                self._video_event(batch, ts, e, params["camera_id"], params["cls"], params["confidence"])
            if inc.type in ("complaint_surge", "rodent_repeat"):
                o = inc.observed
                o["events"] = o.get("events", 0) + 1
                o.setdefault("first_event", ts)
                o["last_event"] = ts

    # --- malformed messages ------------------------------------------------------------------------
    BAD_SORTS = (
        "not_json",
        "truncated_json",
        "invalid_utf8",
        "empty",
        "json_array",
        "wrong_type",
        "missing_field",
        "extra_field",
        "bad_enum",
        "out_of_range",
        "non_finite",
        "unknown_entity_kind",
        "unknown_department",
        "ts_1970",
        "ts_2099",
        "oversized",
        "duplicate_event_id",
    )

    def _bad_message(self, topic: str, key: bytes, value: bytes) -> Message:
        rng = self._bad_rng
        sort = rng.choice(self.BAD_SORTS)
        # sorts tied to one topic use the last valid event of that topic as a template
        need = {"non_finite": T_SENSOR, "unknown_entity_kind": T_REGISTRY, "unknown_department": T_INSPECTION}.get(sort)
        if need:
            if need not in self._last_by_topic:
                sort, need = "missing_field", None
            else:
                topic, (key, value) = need, self._last_by_topic[need]
        d = orjson.loads(value)
        eid = f"bad-{self.cfg.seed}-{len(self.bad) + 1}"
        if sort != "duplicate_event_id":
            d["event_id"] = eid
        out: bytes
        if sort == "not_json":
            out = rng.choice(
                (
                    b"<html><body>502 Bad Gateway</body></html>",
                    b"entity=" + key + b";value=3.2;ok",
                    b"\x00\x01\x02\x03 binary frame",
                )
            )
        elif sort == "truncated_json":
            raw = orjson.dumps(d)
            out = raw[: len(raw) // 2]
        elif sort == "invalid_utf8":
            out = orjson.dumps(d).replace(b'"source":"', b'"source":"\xff\xfe', 1)
        elif sort == "empty":
            out = b""
        elif sort == "json_array":
            out = b"[" + orjson.dumps(d) + b"]"
        elif sort == "wrong_type":
            for f in ("value", "confidence", "item_id", "lat"):
                if f in d:
                    d[f] = rng.choice(("high", "北纬33度", "n/a"))
                    break
            else:
                d["entity_id"] = 12345
            out = orjson.dumps(d)
        elif sort == "missing_field":
            d.pop(rng.choice(("entity_id", "occurred_at", "event_id", "source")))
            out = orjson.dumps(d)
        elif sort == "extra_field":
            d["debug_raw_frame"] = "0xDEADBEEF"
            out = orjson.dumps(d)
        elif sort == "bad_enum":
            enum = {
                T_SENSOR: ("channel", "co2_ppm"),
                T_VIDEO: ("cls", "dog"),
                T_COMPLAINT: ("category", "noise"),
                T_INSPECTION: ("outcome", "ok"),
                T_REGISTRY: ("action", "deleted"),
            }[topic]
            d[enum[0]] = enum[1]
            out = orjson.dumps(d)
        elif sort == "out_of_range":
            rngs = {
                T_SENSOR: ("value", 5e7),
                T_VIDEO: ("confidence", 1.7),
                T_REGISTRY: ("lat", 133.4),
                T_INSPECTION: ("item_id", 0),
                T_COMPLAINT: ("text", "太差了" * 800),
            }
            f, v = rngs[topic]
            d[f] = v
            out = orjson.dumps(d)
        elif sort == "non_finite":
            d["value"] = 0.0
            out = orjson.dumps(d).replace(b'"value":0.0', b'"value":NaN')
        elif sort == "unknown_entity_kind":
            d["kind"] = rng.choice(("pet_shop", "internet_cafe", "网吧"))
            out = orjson.dumps(d)
        elif sort == "unknown_department":
            d["departments"] = [rng.choice(("fda", "tax", "县烟草局"))]
            out = orjson.dumps(d)
        elif sort in ("ts_1970", "ts_2099"):
            d["occurred_at"] = "1970-01-01T08:00:00" if sort == "ts_1970" else "2099-12-31T23:59:59"
            out = orjson.dumps(d)
        elif sort == "oversized":
            d["padding"] = "舞阳县" * (self.cfg.max_message_bytes // 9 + 1000)
            out = orjson.dumps(d)
        else:  # duplicate_event_id: an at-least-once re-send of an earlier valid event
            out = value
        self.bad.append(
            {
                "record": "bad_message",
                "seq": self.sent,
                "sort": sort,
                "topic": topic,
                "key": key.decode("utf-8", "replace"),
                "bytes": len(out),
                "event_id": d.get("event_id") if isinstance(d, dict) else None,
            }
        )
        return topic, key, out

    # --- ground truth -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        counts = Counter(b["sort"] for b in self.bad)
        return {
            "record": "summary",
            "seed": self.cfg.seed,
            "start": self._iso(self.t0),
            "end": self._iso(self.t_end),
            "sim_reached": self._iso(self.sim_time),
            "messages": self.sent,
            "valid_events": sum(self.per_topic.values()),
            "per_topic": dict(sorted(self.per_topic.items())),
            "bad_messages": len(self.bad),
            "bad_by_sort": dict(sorted(counts.items())),
            "incidents": len(self.incidents_started()),
            "entities": self.county.counts(),
            "sensor_streams": self.n_streams,
            "cameras": len(self.cams),
            "coordinates": "approximate (schematic township positions + jitter)",
        }

    def incidents_started(self) -> list[Incident]:
        return [i for i in self.incidents if i.start <= self.sim_time]

    def ground_truth(self) -> list[dict[str, Any]]:
        """Summary, then one record per incident that started before the run stopped, then bad messages,
        then the device faults (``record: device_fault``) and the skewed gateway clocks (``record: clock_skew``)."""
        faults = [
            {k: v for k, v in f.items() if not k.startswith("_")}
            for f in self.device_faults
            if f["_start"] <= self.sim_time
        ]
        return [
            self.summary(),
            *(i.truth(self.sim_time) for i in self.incidents_started()),
            *self.bad,
            *faults,
            *self.skew_truth(),
        ]

    def skew_truth(self) -> list[dict[str, Any]]:
        """The skewed gateway clocks that began before the run stopped: which source, by how much, when
        (in send time: the readings' record timestamps), and how many of the county's streams it sends."""
        streams = Counter(gw for g in self.groups for gw in g.gateways)
        return [
            {
                "record": "clock_skew",
                "source": src,
                "skew_s": dt,
                "start": self._iso(a),
                "end": self._iso(min(b, self.sim_time)),
                "streams": streams[src],
            }
            for src, dt, a, b in self.skews
            if a <= self.sim_time
        ]

    def write_ground_truth(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for rec in self.ground_truth():
                f.write(orjson.dumps(rec) + b"\n")
        return path


def read_ground_truth(path: Path | str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]
