"""The simulated county: supervised entities with names, townships, licences, devices and cameras.

Counts, township weights, device mix and channel templates come from
``riskwatch/data/simulator.yaml``; everything random is drawn from one seeded ``random.Random`` so
the same seed and config give the same county. Coordinates are APPROXIMATE (schematic township
positions plus jitter), for a demo map only.

>>> cfg = SimConfig(seed=7, scale=0.1)
>>> county = build_county(cfg)
>>> e = county.entities[0]
>>> e.entity_id, e.kind
('E000001', 'food_producer')
>>> county == build_county(SimConfig(seed=7, scale=0.1))
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from riskwatch.settings import DATA_DIR

_T = TypeVar("_T")
CST = timezone(timedelta(hours=8))  # county local time, Asia/Shanghai has no DST
DEFAULT_CONFIG_PATH = DATA_DIR / "simulator.yaml"


@lru_cache(maxsize=8)
def _load_yaml(path: str) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def load_sim_data(path: Path | str | None = None) -> dict:
    """The simulator's data file (a fresh deep copy, safe to modify)."""
    import copy

    return copy.deepcopy(_load_yaml(str(path or DEFAULT_CONFIG_PATH)))


@dataclass(init=False)
class SimConfig:
    """Everything that determines the generated sequence (same config + seed → same bytes).

    ``start`` defaults to ``now − days``; ``now`` (the wall clock the run must never pass)
    defaults to the real clock. Pass both for a reproducible sequence. The constructor resolves
    the defaults, so ``start``, ``now`` and ``data`` are always set afterwards.
    """

    seed: int
    days: float
    scale: float
    bad_rate: float
    sample_minutes: float
    start: datetime
    now: datetime
    max_message_bytes: int
    # > 1: sensor readings go out as gateway batches (kind sensor_batch) of this many readings of one
    # entity, or fewer when the oldest reading waited gateway_hold_minutes (simulated) or at the end
    gateway_batch: int
    gateway_hold_minutes: float
    data: dict[str, Any]  # parsed simulator.yaml
    data_path: Path | str | None

    def __init__(
        self,
        seed: int = 7,
        days: float = 3.0,
        scale: float = 1.0,
        bad_rate: float = 0.002,
        sample_minutes: float = 5.0,
        start: datetime | None = None,
        now: datetime | None = None,
        max_message_bytes: int = 65536,
        gateway_batch: int = 0,
        gateway_hold_minutes: float = 30.0,
        data: dict[str, Any] | None = None,  # None = the bundled defaults (or data_path)
        data_path: Path | str | None = None,
    ) -> None:
        if days <= 0:
            raise ValueError("days must be > 0")
        if scale <= 0:
            raise ValueError("scale must be > 0")
        if not 0 <= bad_rate < 1:
            raise ValueError("bad_rate must be in [0, 1)")
        if sample_minutes <= 0:
            raise ValueError("sample_minutes must be > 0")
        self.seed, self.days, self.scale, self.bad_rate = seed, days, scale, bad_rate
        self.sample_minutes, self.max_message_bytes = sample_minutes, max_message_bytes
        self.gateway_batch, self.gateway_hold_minutes = gateway_batch, gateway_hold_minutes
        self.data = load_sim_data(data_path) if data is None else data
        self.data_path = data_path
        now = now or datetime.now(CST)
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.now = now.astimezone(CST)
        if start is None:
            # whole seconds keep timestamps tidy; still differs run to run (pass start to pin it)
            start = (self.now - timedelta(days=days)).replace(microsecond=0)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=CST)
        self.start = start.astimezone(CST)

    @property
    def end(self) -> datetime:
        """Last simulated instant: start + days, never after the wall clock."""
        return min(self.start + timedelta(days=self.days), self.now)


@dataclass
class Device:
    device_id: str
    template: str  # e.g. FRZ, TH, ELV, BLR
    channels: tuple[str, ...]  # channel template names from simulator.yaml


@dataclass
class Entity:
    entity_id: str
    kind: str
    name: str
    township: str
    address: str
    licence: str
    lat: float
    lon: float
    profile: str = ""  # special-equipment user profile (property, factory, hotel, gas)
    devices: list[Device] = field(default_factory=list)
    cameras: list[str] = field(default_factory=list)
    registered_at: datetime | None = None  # None = registered at the start of the run

    def registry_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "township": self.township,
            "address": self.address,
            "licence": self.licence,
            "lat": self.lat,
            "lon": self.lon,
        }


@dataclass
class County:
    entities: list[Entity]
    townships: list[dict]

    def by_id(self) -> dict[str, Entity]:
        return {e.entity_id: e for e in self.entities}

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities if e.kind == kind]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entities:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out


# --- names ---------------------------------------------------------------------------------------
BRANDS = [
    "鑫源",
    "恒信",
    "盛达",
    "金丰",
    "宏发",
    "华兴",
    "瑞祥",
    "永兴",
    "康泰",
    "裕丰",
    "嘉禾",
    "福源",
    "利民",
    "益民",
    "天润",
    "润泽",
    "顺发",
    "德润",
    "兴隆",
    "金穗",
    "豫丰",
    "汇通",
    "亿达",
    "联众",
    "仁和",
    "济民",
    "惠民",
    "万家",
    "鸿运",
    "昌盛",
    "众诚",
    "金星",
    "恒通",
    "博远",
    "泰和",
    "祥和",
    "佳美",
    "宏达",
    "盛世",
    "长青",
    "正阳",
    "舞缘",
    "澧河",
    "沙澧",
    "丰源",
    "绿野",
    "田园",
    "金麦",
    "禾润",
    "中豫",
    "新华",
    "广源",
    "聚鑫",
    "富康",
    "安康",
    "百信",
    "同德",
    "仁济",
    "宝丰",
    "龙腾",
    "凯旋",
    "东方",
    "新世纪",
    "金牛",
    "银河",
    "星光",
    "明珠",
    "春晖",
    "瑞丰",
    "大成",
    "鼎盛",
    "合众",
    "嘉和",
    "和顺",
    "乐康",
    "美佳",
    "恒泰",
    "永安",
    "盛源",
    "裕华",
]
SURNAMES = [
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "赵",
    "黄",
    "周",
    "吴",
    "徐",
    "孙",
    "马",
    "朱",
    "胡",
    "郭",
    "何",
    "高",
    "林",
    "罗",
    "郑",
    "梁",
    "谢",
    "宋",
    "唐",
    "许",
    "韩",
    "冯",
    "邓",
    "曹",
]
ROADS = [
    "人民路",
    "解放路",
    "建设路",
    "文化路",
    "泰山路",
    "舞泉大道",
    "振兴路",
    "兴华路",
    "朝阳路",
    "光明路",
    "北京路",
    "昆仑路",
    "滨河路",
    "商业街",
    "工业路",
]
VILLAGE_SYL = [
    "李",
    "王",
    "张",
    "刘",
    "陈",
    "杨",
    "赵",
    "黄",
    "周",
    "吴",
    "东",
    "西",
    "南",
    "北",
    "前",
    "后",
    "大",
    "小",
    "新",
    "老",
    "河",
    "岗",
    "庄",
    "营",
    "寨",
    "楼",
    "桥",
    "湾",
]
VILLAGE_SUF = ["庄", "村", "营", "寨", "楼", "桥", "湾", "岗"]

NAME_TEMPLATES: dict[str, list[tuple[str, float]]] = {
    "food_producer": [
        ("{town}{brand}食品有限公司", 4),
        ("舞阳县{brand}食品有限公司", 3),
        ("舞阳县{brand}面业有限公司", 2),
        ("舞阳县{brand}肉制品有限公司", 2),
        ("{town}{brand}调味品厂", 1),
        ("河南{brand}乳业有限公司", 1),
        ("舞阳县{brand}冷冻食品有限公司", 2),
        ("{town}{brand}粉条加工厂", 1),
        ("舞阳县{brand}饮品有限公司", 1),
    ],
    "retail_pharmacy": [
        ("{brand}大药房{town}店", 4),
        ("舞阳县{brand}药店", 3),
        ("{brand}医药连锁{town}{n}分店", 2),
        ("舞阳县{brand}大药房有限公司", 2),
        ("{town}{surname}氏大药房", 1),
    ],
    "medical_institution": [
        ("{town}{brand}诊所", 3),
        ("{town}{village}村卫生室", 3),
        ("舞阳县{brand}医院", 1),
        ("{town}{surname}氏中医诊所", 1),
    ],
    "produce_market": [("舞阳县{brand}农产品批发市场", 2), ("{town}农贸市场", 3), ("舞阳县{brand}蔬菜批发市场", 1)],
    "industrial_producer": [
        ("舞阳县{brand}电线电缆有限公司", 2),
        ("舞阳县{brand}建材有限公司", 2),
        ("河南{brand}化肥有限公司", 1),
        ("舞阳县{brand}塑料制品有限公司", 2),
        ("舞阳县{brand}燃气具销售有限公司", 1),
        ("{town}{brand}电动车商行", 2),
        ("河南{brand}盐化有限公司", 1),
        ("舞阳县{brand}钢结构有限公司", 1),
    ],
    "medical_beauty": [
        ("舞阳{brand}医疗美容诊所", 3),
        ("舞阳县{brand}医疗美容门诊部", 1),
        ("{brand}美容医院舞阳分院", 1),
    ],
    "catering": [
        ("{brand}饭店", 3),
        ("{surname}记烩面馆", 3),
        ("{brand}酒楼", 2),
        ("{surname}记胡辣汤", 2),
        ("{brand}火锅店", 2),
        ("{town}{brand}快餐店", 2),
        ("{town}{village}小学食堂", 1),
        ("{brand}烧烤", 1),
        ("{surname}家羊肉汤馆", 1),
    ],
    "new_business": [
        ("舞阳县{brand}网络科技有限公司", 2),
        ("{brand}社区团购{town}站", 2),
        ("舞阳县{brand}直播电商有限公司", 1),
    ],
}
SE_NAME_TEMPLATES: dict[str, list[tuple[str, float]]] = {
    "property": [("{brand}置业有限公司", 2), ("舞阳县{brand}物业服务有限公司", 3), ("{brand}商贸城", 1)],
    "factory": [
        ("舞阳县{brand}纸业有限公司", 1),
        ("舞阳县{brand}热力有限公司", 1),
        ("河南{brand}食品机械有限公司", 1),
        ("舞阳县{brand}化工有限公司", 1),
    ],
    "hotel": [("{brand}大酒店", 2), ("舞阳{brand}宾馆", 1)],
    "gas": [("舞阳县{brand}气体有限公司", 2), ("{brand}加气站", 1), ("舞阳县{brand}液化气站", 1)],
}
COUNTY_HOSPITALS = ("舞阳县人民医院", "舞阳县中医院", "舞阳县妇幼保健院")


def _pick(rng: random.Random, weighted: Sequence[tuple[_T, float]] | Mapping[_T, float]) -> _T:
    items = list(weighted.items()) if isinstance(weighted, Mapping) else weighted
    total = sum(w for _, w in items)
    x = rng.random() * total
    for v, w in items:
        x -= w
        if x < 0:
            return v
    return items[-1][0]


def _village(rng: random.Random) -> str:
    return rng.choice(VILLAGE_SYL) + rng.choice(VILLAGE_SUF)


def _address(rng: random.Random, town: str, seat: str) -> str:
    if town == seat or rng.random() < 0.5:
        return f"舞阳县{town}{rng.choice(ROADS)}{rng.randint(1, 399)}号"
    return f"舞阳县{town}{_village(rng)}村{rng.randint(1, 9)}组"


def _licence(rng: random.Random, kind: str, serial: int) -> str:
    """Licence numbers shaped like the real ones (prefix, Wuyang's area code 411121, serial), not real."""
    if kind == "food_producer":  # 食品生产许可证 SC + 14 digits
        return f"SC{rng.choice((101, 103, 104, 106, 111, 122))}411121{serial % 10000:04d}{rng.randint(0, 9)}"
    if kind in ("catering", "produce_market", "new_business"):  # 食品经营许可证 JY + 14 digits
        return f"JY{rng.choice((1, 2, 3))}411121{serial % 1000000:06d}{rng.randint(0, 9)}"
    if kind == "retail_pharmacy":  # 药品经营许可证
        return f"豫CB395{serial % 10000:04d}"
    if kind in ("medical_institution", "medical_beauty"):  # 医疗机构执业许可证登记号
        return f"PDY{serial % 100000:05d}41112117{rng.choice('ABCD')}{rng.randint(1000, 9999)}"
    if kind == "industrial_producer":  # 工业产品生产许可证
        return f"(豫)XK{rng.randint(1, 16):02d}-{rng.randint(1, 20):03d}-{serial % 100000:05d}"
    if kind == "special_equipment":  # 特种设备使用登记证 (Luohe plates: 豫L)
        return f"容11豫L{serial % 100000:05d}({rng.randint(15, 25)})"
    return ""


def _unique(name: str, used: set[str], rng: random.Random) -> str:
    """A clash gets a branch suffix like a real chain store: 王记烩面馆(人民路店), then a number."""
    cand, k = name, 0
    while cand in used:
        k += 1
        road = rng.choice(ROADS).removesuffix("大道").removesuffix("路").removesuffix("街")
        cand = f"{name}({road}店)" if k < 5 else f"{name}({k}号店)"
    used.add(cand)
    return cand


def _km_to_deg(km: float, lat: float) -> tuple[float, float]:
    return km / 111.0, km / (111.0 * math.cos(math.radians(lat)))


def _devices(rng: random.Random, entity_id: str, specs: list[dict]) -> list[Device]:
    out: list[Device] = []
    for spec in specs:
        if rng.random() >= spec.get("p", 1.0):
            continue
        lo, hi = spec.get("n", [1, 1])
        for k in range(1, rng.randint(lo, hi) + 1):
            out.append(Device(f"{entity_id}-{spec['name']}{k}", spec["name"], tuple(spec["channels"])))
    return out


def build_county(cfg: SimConfig) -> County:
    """Entities of every kind in realistic numbers for the configured scale (deterministic)."""
    data = cfg.data
    rng = random.Random(f"county:{cfg.seed}")
    c = data["county"]
    towns = c["townships"]
    seat = c["seat"]
    used: set[str] = set()
    entities: list[Entity] = []
    serial = 0
    horizon = cfg.end - cfg.start

    for kind, spec in data["entities"].items():
        n = max(1, round(spec["count"] * cfg.scale))
        boost = float(spec.get("seat_boost", 1.0))
        weights = [(t, t["population"] * (boost if t["name"] == seat else 1.0)) for t in towns]
        for i in range(n):
            serial += 1
            eid = f"E{serial:06d}"
            profile = ""
            if kind == "medical_institution" and i < len(towns) + len(COUNTY_HOSPITALS):
                # every township has a health centre (乡镇卫生院); the county hospitals sit in the seat
                if i < len(towns):
                    town = towns[i]
                    base = f"{town['name']}卫生院" if town["name"] != seat else f"舞阳县{seat}社区卫生服务中心"
                else:
                    town = next(t for t in towns if t["name"] == seat)
                    base = COUNTY_HOSPITALS[i - len(towns)]
            else:
                town = _pick(rng, weights)
                if kind == "special_equipment":
                    profile = _pick(rng, {k: v["weight"] for k, v in data["devices"]["special_equipment"].items()})
                    tmpl = _pick(rng, SE_NAME_TEMPLATES[profile])
                else:
                    tmpl = _pick(rng, NAME_TEMPLATES[kind])
                for _ in range(10):  # another brand/surname on a clash, then a number
                    base = tmpl.format(
                        town=town["name"],
                        brand=rng.choice(BRANDS),
                        surname=rng.choice(SURNAMES),
                        village=_village(rng),
                        n=rng.randint(1, 30),
                    )
                    if base not in used:
                        break
            name = _unique(base, used, rng)
            jitter = c["seat_jitter_km"] if town["name"] == seat else c["township_jitter_km"]
            dlat, dlon = _km_to_deg(jitter, town["lat"])
            lat = round(town["lat"] + rng.gauss(0, dlat / 2), 5)
            lon = round(town["lon"] + rng.gauss(0, dlon / 2), 5)
            ent = Entity(
                entity_id=eid,
                kind=kind,
                name=name,
                township=town["name"],
                address=_address(rng, town["name"], seat),
                licence=_licence(rng, kind, serial),
                lat=lat,
                lon=lon,
                profile=profile,
            )
            if kind == "special_equipment":
                specs = data["devices"]["special_equipment"][profile]["devices"]
            else:
                specs = data["devices"].get(kind, [])
            ent.devices = _devices(rng, eid, specs)
            cam = data["video"]["cameras"].get(kind)
            if cam and rng.random() < cam.get("p", 1.0):
                lo, hi = cam["n"]
                ent.cameras = [f"{eid}-CAM{k}" for k in range(1, rng.randint(lo, hi) + 1)]
            if spec.get("registered_during_run"):
                # new business registered during the run (双告知): somewhere in the middle 80%
                ent.registered_at = cfg.start + horizon * (0.1 + 0.8 * rng.random())
                ent.registered_at = ent.registered_at.replace(microsecond=0)
            entities.append(ent)
    return County(entities=entities, townships=towns)
