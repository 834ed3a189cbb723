"""Regulatory threshold rules kept as data (``riskwatch/data/rules.yaml``).

A rule fires on one event by itself — no learning, no warm-up: a cold-chain reading above its
legal limit, a boiler above rated pressure, an elevator trapping passengers, a rodent on the
kitchen camera, a complaint of suspected food poisoning, a failed inspection.

>>> from riskwatch.domain.county import load_county
>>> rules = load_county().rules
>>> hit = rules.on_sensor("cold_chain_temp", 9.5)
>>> hit.level, hit.rule, hit.title
('orange', 'rule.sensor.cold_chain_temp', '冷链温度超过8℃上限')
>>> rules.on_sensor("cold_chain_temp", 4.0) is None
True
>>> rules.on_sensor("elevator_fault", 3).title
'电梯困人'
>>> rules.on_video("rodent", 0.9).level
'orange'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

LevelName = Literal["blue", "yellow", "orange", "red"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    level: LevelName
    title: str = Field(min_length=1)


class CodeRule(_Rule):
    pass


RatingName = Literal["rated_pressure_mpa", "rated_temp_c", "rated_load_kg", "set_point_max_c"]


class Rated(Protocol):
    """What a limit relative to a rating needs of a device (``streams.engine.state.Device``)."""

    def rating(self, name: str) -> float | None: ...


class DefaultBand(BaseModel):
    """A county default for a device registered without its rating, chosen by how the device runs:
    its typical reading (the learned slow mean of its last readings) below ``below``. A freezer
    without a set point is judged against the frozen-food norm, not the chiller's absolute limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    below: float = Field(description="Applies when the device's typical reading is below this")
    rating: float = Field(description="The default rating, e.g. -18 ℃ (冷冻食品 ≤ -18 ℃)")
    levels: dict[LevelName, float] | None = Field(None, description="level -> offset/factor; else the rule's")
    name: str = Field(min_length=1, description="What the band is, as the explanation names it, e.g. 冷冻库")
    min_readings: int = Field(12, ge=1, le=10000, description="Readings seen before the band is trusted")
    title: str = Field("", description="The alert's title for a breach in this band; else the rule's")


class RatingLimit(BaseModel):
    """A limit relative to the device's own rating: above ``rating × factor`` (``ratio``) or
    ``rating + offset`` (``offset``, for set points) the reading breaches at that level (the highest
    level breached wins). A device registered without the rating takes ``default_rating`` (the
    county default, as data); without one either, the rule's absolute ``min``/``max`` apply."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    relative_to: RatingName = Field(description="The device's rating (a DeviceEvent field)")
    name: str = Field(min_length=1, description="The rating as the explanation names it, e.g. 额定工作压力")
    quantity: str = Field(min_length=1, description="What is measured, e.g. 锅炉压力")
    unit: str = Field("", description="Unit shown with values, e.g. MPa, ℃")
    mode: Literal["ratio", "offset"] = "ratio"
    levels: dict[LevelName, float] = Field(min_length=1, description="level -> factor (ratio) or offset")
    default_rating: float | None = Field(None, description="County default for a device without the rating")
    title: str = Field("", description="The alert's title for a breach of this limit; else the rule's")
    default_bands: tuple[DefaultBand, ...] = Field(
        (),
        description="County defaults by operating band for a device without the rating, before default_rating: "
        "the first band the device's typical reading is below (an unregistered freezer is not a chiller)",
    )

    def default_for(self, typical: float | None) -> DefaultBand | None:
        """The band an unrated device operating at ``typical`` falls in (None: not yet known, or none)."""
        if typical is None:
            return None
        return next((b for b in self.default_bands if typical < b.below), None)

    def limits(self, rating: float, levels: dict[LevelName, float] | None = None) -> list[tuple[float, LevelName]]:
        """(threshold, level), the highest threshold first (``levels``: a band's own, else the rule's)."""
        ratio = self.mode == "ratio"
        out = [(rating * f if ratio else rating + f, lv) for lv, f in (levels or self.levels).items()]
        return sorted(out, reverse=True)

    def note(self, value: float, used: float, limit: float, rating: float | None, band: str = "") -> str:
        """The explanation of a breach: the value, the rating it is judged against, and where the
        rating came from when the device has none (``band``: the operating band whose default it is)."""
        u = self.unit
        text = f"{self.quantity}{_num(value)}{u},超过{self.name}{_num(used)}{u}"
        if self.mode == "ratio" and limit != used:
            text += f"的{limit / used:.0%}"
        elif self.mode == "offset" and limit != used:
            text += f"{limit - used:+g}{u}"
        if rating is None:
            text += f"(未登记{self.name},按{band}县默认{_num(used)}{u})"
        return text

    def limit_in(self, detail: str) -> UsedLimit | None:
        """The limit a breach was judged against, read back from its explanation (``note``, stored with
        the alert as the contribution's detail): the rating, the level's factor or offset and where the
        rating came from are those ``note`` wrote, found by writing each candidate again.

        >>> from pathlib import Path
        >>> rl = load_rules(Path(__file__).parents[1] / "riskwatch/data/rules.yaml").sensor["boiler_pressure"].rating
        >>> rl.limit_in("b1 " + rl.note(1.2, 1.25, 1.25 * 0.95, None))
        UsedLimit(value=1.1875, label='上限 1.1875MPa(县默认额定工作压力95%)')
        >>> rl.limit_in("b1 读数 1.2MPa") is None
        True
        """
        m = re.search(re.escape(f"超过{self.name}") + r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", detail)
        if m is None:
            return None
        used, tail = float(m[1]), detail[m.start() :]
        sources: list[tuple[float | None, DefaultBand | None]] = [(used, None), (None, None)]
        sources += [(None, b) for b in self.default_bands]
        for rating, band in sources:
            for limit, _ in self.limits(used, band.levels if band is not None else None):
                note = self.note(0.0, used, limit, rating, band.name if band is not None else "")
                if tail == note[note.index("超过") :]:
                    return UsedLimit(limit, self._label(used, limit, rating, band))
        return None

    def _label(self, used: float, limit: float, rating: float | None, band: DefaultBand | None) -> str:
        """The chart's label of a limit: 上限 -15℃(冷冻库默认), 上限 1.76MPa(额定工作压力110%)."""
        if band is not None:
            source = f"{band.name}默认"
        else:
            source = self.name if rating is not None else f"县默认{self.name}"
            if self.mode == "ratio" and limit != used and used:
                source += f"{limit / used:.0%}"
            elif self.mode == "offset" and limit != used:
                source += f"{limit - used:+g}{self.unit}"
        return f"上限 {limit:.6g}{self.unit}({source})"


@dataclass(frozen=True, slots=True)
class UsedLimit:
    """The limit a rated rule judged a reading against (``RatingLimit.limit_in``): the alert page's
    evidence chart draws it instead of the rule's absolute ``max``."""

    value: float
    label: str  # e.g. 上限 -15℃(冷冻库默认)


def _num(x: float) -> str:
    """A reading or rating as people write it: 1.05, 1.0, 194.0 (at least one decimal)."""
    s = f"{x:.6g}"
    return s if "." in s or "e" in s else s + ".0"


class SensorRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = Field(min_length=1)
    confirm: int = Field(1, ge=1, le=20, description="Breaching readings of one device needed to open a case")
    max_rise: float | None = Field(
        None,
        gt=0,
        description="Also a breach: this far above the device's own learned baseline "
        "(a freezer at -18 ℃ warming to -8 ℃ never crosses a chiller's 8 ℃ limit)",
    )
    rise_title: str = ""
    within_minutes: float = Field(60.0, gt=0, description="... within this many minutes")
    min: float | None = None
    max: float | None = None
    level: LevelName | None = None
    codes: dict[str, CodeRule] = Field(default_factory=dict)
    rating: RatingLimit | None = Field(None, description="A limit relative to the device's rating")

    @model_validator(mode="after")
    def _shape(self) -> SensorRule:
        if self.codes:
            return self
        if self.level is None and self.rating is not None and self.min is None and self.max is None:
            return self
        if self.level is None or (self.min is None and self.max is None):
            raise ValueError("a sensor rule needs `level` and `min` and/or `max`, or `codes`")
        return self


class VideoRule(_Rule):
    min_confidence: float = Field(0.5, ge=0, le=1)
    confirm: int = Field(1, ge=1, le=50, description="Detections needed to open a case")
    within_minutes: float = Field(1440.0, gt=0, description="... within this many minutes")


class EvidenceWindow(BaseModel):
    """Sensor readings an alert's evidence bundle holds: this long before and after the trigger."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    before_minutes: float = Field(30.0, ge=0, le=24 * 60)
    after_minutes: float = Field(10.0, ge=0, le=24 * 60)
    max_points: int = Field(32, ge=1, le=1024, description="Readings kept per device and channel (a bound on state)")

    @property
    def before_s(self) -> float:
        return self.before_minutes * 60.0


class PoisoningCluster(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    complaints: int = Field(3, ge=2, description="Food-poisoning complaints about one entity ...")
    within_hours: float = Field(24.0, gt=0, description="... within this many hours: a suspected poisoning cluster")
    title: str = Field(min_length=1)


class UnlicensedInjury(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    entity_kinds: tuple[str, ...] = ("special_equipment",)
    complaint_categories: tuple[str, ...] = ("equipment_safety",)
    keywords: tuple[str, ...] = Field(
        min_length=1, description="Words in the complaint text that mean someone was hurt"
    )
    title: str = Field(min_length=1)


class SuspectedCrime(BaseModel):
    """What makes an alert a suspected crime to transfer (行刑衔接); where it goes: routing.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    violation_codes: dict[str, str] = Field(
        default_factory=dict, description="Inspection violation code → Chinese offence"
    )
    complaint_categories: dict[str, str] = Field(
        default_factory=dict, description="Complaint category → Chinese offence"
    )
    food_poisoning_cluster: PoisoningCluster | None = None
    unlicensed_equipment_injury: UnlicensedInjury | None = None

    def on_violations(self, violations) -> list[tuple[str, str]]:
        """(flag, Chinese reason) for each violation that is a suspected crime."""
        out = []
        for v in violations:
            if v.code in self.violation_codes:
                out.append((f"violation:{v.code}", f"{self.violation_codes[v.code]}(违法代码 {v.code})"))
            elif getattr(v, "suspected_crime", False):
                out.append(
                    ("violation:suspected_crime", f"检查人员标记涉嫌犯罪:{v.description or v.code}(违法代码 {v.code})")
                )
        return out


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sensor: dict[str, SensorRule] = Field(default_factory=dict)
    video: dict[str, VideoRule] = Field(default_factory=dict)
    complaint: dict[str, _Rule] = Field(default_factory=dict)
    inspection: dict[Literal["fail", "critical"], _Rule] = Field(default_factory=dict)
    # per sensor channel (or "default"): the readings window of an alert's evidence bundle
    evidence: dict[str, EvidenceWindow] = Field(default_factory=lambda: {"default": EvidenceWindow()})
    suspected_crime: SuspectedCrime = Field(default_factory=SuspectedCrime)

    def evidence_window(self, channel: str) -> EvidenceWindow:
        return self.evidence.get(channel) or self.evidence.get("default") or _DEFAULT_WINDOW

    # --- evaluation --------------------------------------------------------------------------
    def on_sensor(
        self,
        channel: str,
        value: float,
        baseline: float | None = None,
        device: Rated | None = None,
        typical: tuple[float, int] | None = None,
    ) -> Hit | None:
        """The rule ``channel``'s reading ``value`` breaks, if any. ``device``: the registered device,
        whose rating a relative limit uses (else the county default of the device's operating band,
        then the rule's county default); the hit's ``note`` names the rating used. ``typical``: the
        device's typical reading so far and how many readings it is learned from (picks the band).

        >>> from types import SimpleNamespace
        >>> rules = load_rules(Path(__file__).parents[1] / "riskwatch/data/rules.yaml")
        >>> rated = lambda v: SimpleNamespace(rating=lambda name: v)
        >>> rules.on_sensor("boiler_pressure", 1.5, device=rated(1.6)) is None
        True
        >>> h = rules.on_sensor("boiler_pressure", 1.05, device=rated(1.0)); h.level, h.note
        ('red', '锅炉压力1.05MPa,超过额定工作压力1.0MPa')
        >>> rules.on_sensor("boiler_pressure", 1.3).note
        '锅炉压力1.3MPa,超过额定工作压力1.25MPa(未登记额定工作压力,按县默认1.25MPa)'
        >>> h = rules.on_sensor("boiler_pressure", 1.2); h.level, h.note
        ('orange', '锅炉压力1.2MPa,超过额定工作压力1.25MPa的95%(未登记额定工作压力,按县默认1.25MPa)')

        A cold store without a set point that runs frozen (typically -19 ℃ over 12 readings) is a freezer:
        -8.9 ℃ is far above the frozen-food norm though under a chiller's 8 ℃.

        >>> rules.on_sensor("cold_chain_temp", -8.9) is None
        True
        >>> h = rules.on_sensor("cold_chain_temp", -8.9, typical=(-19.0, 12)); h.level, h.title
        ('orange', '冷冻库温度超过-15℃(未登记设定温度)')
        >>> h.note
        '冷链温度-8.9℃,超过设定温度上限-18.0℃+3℃(未登记设定温度上限,按冷冻库县默认-18.0℃)'
        >>> rules.on_sensor("cold_chain_temp", -16.0, typical=(-19.0, 12)) is None
        True
        >>> rules.on_sensor("cold_chain_temp", -8.9, typical=(-19.0, 3)) is None   # too few readings to tell
        True
        >>> h = rules.on_sensor("cold_chain_temp", -8.9, device=rated(-20.0), typical=(-19.0, 99)); h.title, h.note
        ('冷链温度超过设定温度上限', '冷链温度-8.9℃,超过设定温度上限-20.0℃+2℃')
        """
        r = self.sensor.get(channel)
        if r is None:
            return None
        rule = f"rule.sensor.{channel}"
        if r.codes:
            code = r.codes.get(str(int(value))) if value == value and abs(value) < 1e9 else None
            return Hit(rule, code.level, code.title, value) if code else None
        judged = False  # the rated limit replaced the absolute `max`
        rl = r.rating
        if rl is not None:
            rating = device.rating(rl.relative_to) if device is not None else None
            used = rating if rating is not None else rl.default_rating
            band = None
            if rating is None and typical is not None:
                band = rl.default_for(typical[0])
                if band is not None and typical[1] < band.min_readings:
                    band = None
                if band is not None:
                    used = band.rating
            if used is not None:
                judged = True
                for limit, lv in rl.limits(used, band.levels if band is not None else None):
                    if value > limit:
                        return Hit(
                            rule,
                            lv,
                            (band.title if band is not None else "") or rl.title or r.title,
                            value,
                            r.confirm,
                            r.within_minutes * 60,
                            rl.note(value, used, limit, rating, band.name if band is not None else ""),
                        )
        level = r.level
        if level is None:  # a rule with only a rated limit, none applicable; or codes (handled above)
            return None
        if (not judged and r.max is not None and value > r.max) or (r.min is not None and value < r.min):
            return Hit(rule, level, r.title, value, r.confirm, r.within_minutes * 60)
        if r.max_rise is not None and baseline is not None and value - baseline > r.max_rise:
            return Hit(rule, level, r.rise_title or r.title, value, r.confirm, r.within_minutes * 60)
        return None

    def limit_used(self, channel: str, detail: str) -> UsedLimit | None:
        """The rated limit (device rating, band or county default) a ``channel`` breach explained by
        ``detail`` (its contribution's detail, as stored with the alert) was judged against; None for
        a plain absolute limit, a rise above the baseline or a channel without a rated limit.

        >>> rules = load_rules(Path(__file__).parents[1] / "riskwatch/data/rules.yaml")
        >>> h = rules.on_sensor("cold_chain_temp", -8.9, typical=(-19.0, 12))
        >>> rules.limit_used("cold_chain_temp", f"d1 {h.note}")
        UsedLimit(value=-15.0, label='上限 -15℃(冷冻库默认)')
        >>> rules.limit_used("cold_chain_temp", "d1 读数 9.5℃") is None
        True
        """
        r = self.sensor.get(channel)
        return r.rating.limit_in(detail) if r is not None and r.rating is not None else None

    def on_video(self, cls: str, confidence: float) -> Hit | None:
        r = self.video.get(cls)
        if r is None or confidence < r.min_confidence:
            return None
        return Hit(f"rule.video.{cls}", r.level, r.title, confidence, r.confirm, r.within_minutes * 60)

    def on_complaint(self, category: str) -> Hit | None:
        r = self.complaint.get(category)
        return Hit(f"rule.complaint.{category}", r.level, r.title, 1.0) if r else None

    def on_inspection(self, outcome: str, worst: str | None) -> Hit | None:
        rules = self.inspection
        if worst == "critical" and "critical" in rules:
            r = rules["critical"]
            return Hit("rule.inspection", r.level, r.title, 1.0)
        if outcome == "fail" and "fail" in rules:
            r = rules["fail"]
            return Hit("rule.inspection", r.level, r.title, 1.0)
        return None


_DEFAULT_WINDOW = EvidenceWindow()


@dataclass(frozen=True, slots=True)
class Hit:
    """A rule that fired: its code, warning level, Chinese title and the value that tripped it."""

    rule: str
    level: str
    title: str
    value: float
    confirm: int = 1  # hits needed (of this rule, same device/camera class) ...
    within_s: float = 0.0  # ... within this many seconds, before a case opens
    note: str = ""  # what the limit was (a relative limit names the rating it used)


def load_rules(path: Path | str) -> RuleSet:
    path = Path(path)
    try:
        return RuleSet.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as e:
        lines = [f"  {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ValueError(f"invalid rules file {path}:\n" + "\n".join(lines)) from None
