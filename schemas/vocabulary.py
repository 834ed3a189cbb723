"""One vocabulary: every code riskwatch shows to people, its Chinese label and its order, defined once.

Pages (``web/``), notification texts (``notify/``), the bulletin (``reports/``), the Grafana
dashboards, the demo and the CLI, and the life cycle's recorded texts all take their words from
here, so that one state reads the same on a page, in a 企业微信 message and in the weekly bulletin.
This module is the lowest layer (``schemas``) and imports nothing of the project; ``tests/test_vocabulary.py``
fails when another module defines its own Chinese label map for these codes.

Typed and immutable: the alert's own codes are enums whose members carry ``.zh``
(:class:`Level`, :class:`AlertStatus`, :class:`NoticeKind`, :class:`TransferState`); codes whose
enums live with their event model in :mod:`schemas.events` (sensor channels, video classes,
complaint channels and categories, inspection outcomes, severities, feedback) get a read-only
mapping code → label here (``*_ZH``), which the test checks against those enums.

>>> Level.red.zh, Level.red.rank, [lv.zh for lv in LEVELS_DESC]
('红色', 3, ['红色', '橙色', '黄色', '蓝色'])
>>> AlertStatus("firing").zh, [s.value for s in OPEN_STATUSES]
('待签收', ['firing', 'acknowledged', 'disposing'])
>>> NoticeKind.urge.zh, FEEDBACK_ZH["not_ours"], SENSOR_CHANNEL_ZH["cold_chain_temp"], COMPLAINT_CHANNEL_ZH["12315"]
('督促', '非本部门职责', '冷链温度', '12315热线')
>>> zh(AlertStatus, "resolved"), zh(AlertStatus, "unknown")  # unknown codes are shown as recorded
('已解除', 'unknown')

Which word for each alert status. Three places used to disagree ("firing" was 预警, 预警中 and 待签收;
"resolved" 已解除 and 已处置; "closed" 已关闭 and 已办结; "pending" 待定 and 待确认). The words chosen
are the ones a county department's clerk acts on, and the ones the workbench already showed:

* ``pending`` → **待确认**: the detector holds the alert for its pending period to confirm it; no
  department has been told yet. 待定 ("undecided") said nothing about what is awaited.
* ``firing`` → **待签收**: the departments have been notified and none has acknowledged. The
  notification asks 请签收, the workbench's counter, filter and task-force table say 待签收; a clerk
  reads the status as the next step expected of them. 预警中 / 预警 are true of every open status
  (acknowledged and disposing alerts are still warnings), so they cannot tell the states apart.
* ``acknowledged`` → **已签收**, ``disposing`` → **处置中**: the same everywhere already.
* ``resolved`` → **已解除**: the warning is lifted, as the notification says (预警已解除). It is also
  reached when the readings recover without a disposal, so 已处置 would claim work that was not done.
* ``closed`` → **已关闭**: an alert closes after it is resolved, and also straight from pending when it
  was never sent; 已办结 ("case concluded") fits only the first.

Notification kinds carry one word each, used both in the notification's title (【红色预警·督促】) and
in the workbench's timeline (督促 → 县市场监管局). ``level_up`` is 级别上调, not 升级, which read
like ``escalate`` (升级督办).

A department's answers read as states (已签收, 处置中, 已处置, 非本部门职责), the same in the audit trail,
the timeline and the department's row on the alert page. A transferred case that awaits the
receiver's answer is 待受理, as the inbox tag, filter and counter (移送待受理) already said.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Self

__all__ = [
    "ACTOR_ZH",
    "ALERT_STATUSES",
    "COMPLAINT_CATEGORY_ZH",
    "COMPLAINT_CHANNEL_ZH",
    "DEADLINE_STAGE_ZH",
    "DEPARTMENT_ANSWER_ZH",
    "DEVICE_FAULT_ZH",
    "JUDGE_SUBJECT_ZH",
    "DONE_STATUSES",
    "FALSE_ALARM_REASON_ZH",
    "FEEDBACK_ZH",
    "MEASURE_ZH",
    "MATCH_METHOD_ZH",
    "QUEUED_EVENT_ZH",
    "DETECTOR_FAMILY_ZH",
    "VERDICT_ZH",
    "INSPECTION_OUTCOME_ZH",
    "ORDER_STATUS_ZH",
    "LEVELS",
    "LEVELS_DESC",
    "NOTICE_KINDS",
    "OPEN_STATUSES",
    "REPORT_PERIOD_ZH",
    "SENSOR_CHANNEL_ZH",
    "SENSOR_UNIT_ZH",
    "SEVERITY_ZH",
    "TRANSITION_KIND_ZH",
    "USER_ROLE_ZH",
    "VIDEO_CLASS_ZH",
    "AlertStatus",
    "Level",
    "NoticeKind",
    "NoticeState",
    "NoticeType",
    "TransferState",
    "labels",
    "zh",
]


class _Labelled(StrEnum):
    """A string code with its Chinese label: members are written ``code = "code", "标签"``."""

    _zh: str

    if TYPE_CHECKING:
        # After the members are built, Enum replaces __new__ with the lookup by code: ``Level("red")``.

        def __new__(cls, value: str) -> Self: ...

    else:

        def __new__(cls, value: str, label: str) -> _Labelled:
            member = str.__new__(cls, value)
            member._value_ = value
            member._zh = label
            return member

    @property
    def zh(self) -> str:
        """The Chinese label people read."""
        return self._zh


class Level(_Labelled):
    """China's four early-warning colours; red is the most severe."""

    blue = "blue", "蓝色"
    yellow = "yellow", "黄色"
    orange = "orange", "橙色"
    red = "red", "红色"

    @property
    def rank(self) -> int:
        """0 (blue) … 3 (red): compare severities with it."""
        return LEVELS.index(self)


class AlertStatus(_Labelled):
    pending = "pending", "待确认"
    firing = "firing", "待签收"
    acknowledged = "acknowledged", "已签收"
    disposing = "disposing", "处置中"
    resolved = "resolved", "已解除"
    closed = "closed", "已关闭"


class NoticeKind(_Labelled):
    """Why an alert revision was sent to departments (``Alert.notification``)."""

    firing = "firing", "发布"
    level_up = "level_up", "级别上调"
    resolved = "resolved", "解除"
    urge = "urge", "督促"
    escalate = "escalate", "升级督办"
    flapping = "flapping", "反复波动"
    stable = "stable", "恢复稳定"
    silence_expired = "silence_expired", "静默期结束"
    receiver_added = "receiver_added", "指派"
    released = "released", "改派释放"
    not_ours = "not_ours", "报专班研判"
    case_transfer = "case_transfer", "案件移送"
    transfer_urge = "transfer_urge", "移送督促"
    transfer_accepted = "transfer_accepted", "移送已受理"
    transfer_returned = "transfer_returned", "移送退回"
    merged = "merged", "合并线索"


class TransferState(_Labelled):
    """A case transfer's state (案件移送, ``Alert.transfer``)."""

    transferred = "transferred", "待受理"
    accepted = "accepted", "已受理"
    returned = "returned", "已退回牵头单位"


class NoticeType(_Labelled):
    """What a notice to departments is (``notices.kind``; streams/engine/notices.py). 督导单 are the office's."""

    dual_notification = "dual_notification", "双告知"
    unassigned = "unassigned", "待研判主体"
    township_surge = "township_surge", "乡镇异常聚集"
    supervision = "supervision", "督导单"


class NoticeState(_Labelled):
    """A notice's state for one recipient department (``notices.status``)."""

    delivered = "delivered", "待认领"
    urged = "urged", "已督促"
    escalated = "escalated", "已升级督办"
    confirmed = "confirmed", "已认领"
    disputed = "disputed", "有异议"
    answered = "answered", "已答复"


# --- orders -----------------------------------------------------------------------------------------
LEVELS: tuple[Level, ...] = tuple(Level)  # least severe first: blue, yellow, orange, red
LEVELS_DESC: tuple[Level, ...] = LEVELS[::-1]  # most severe first, as lists and reports show them
ALERT_STATUSES: tuple[AlertStatus, ...] = tuple(AlertStatus)  # the life cycle's order
OPEN_STATUSES = (AlertStatus.firing, AlertStatus.acknowledged, AlertStatus.disposing)  # notified, not resolved
DONE_STATUSES = (AlertStatus.resolved, AlertStatus.closed)
NOTICE_KINDS: tuple[NoticeKind, ...] = tuple(NoticeKind)


# --- labels of codes whose enums live with their events (schemas.events) ----------------------------
def _frozen(d: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(d)


SENSOR_CHANNEL_ZH = _frozen(
    {
        "cold_chain_temp": "冷链温度",
        "boiler_pressure": "锅炉压力",
        "boiler_temp": "锅炉温度",
        "vessel_pressure": "压力容器压力",
        "elevator_fault": "电梯故障码",
        "elevator_door_cycles": "电梯开关门次数",
        "pump_vibration": "设备振动",
        "storage_humidity": "药品储存湿度",
        "storage_temp": "药品储存温度",
    }
)  # SensorChannel
SENSOR_UNIT_ZH = _frozen({"C": "℃", "c": "℃", "MPa": "MPa", "%RH": "%RH", "mm/s": "mm/s"})
COMPLAINT_CHANNEL_ZH = _frozen({"12315": "12315热线", "12345": "12345热线", "online": "网上投诉", "walk_in": "来访"})
COMPLAINT_CATEGORY_ZH = _frozen(
    {
        "food_poisoning": "食物中毒",
        "food_quality": "食品质量",
        "hygiene": "卫生状况",
        "counterfeit_drug": "假劣药品",
        "drug_sales": "药品销售",
        "medical_beauty_injury": "医美损害",
        "product_quality": "产品质量",
        "equipment_safety": "设备安全",
        "pricing": "价格",
        "other": "其他",
    }
)
VIDEO_CLASS_ZH = _frozen(
    {
        "no_mask": "未戴口罩",
        "no_hat": "未戴帽子",
        "rodent": "鼠患",
        "smoking": "吸烟",
        "fire_exit_blocked": "消防通道堵塞",
        "phone_use": "违规使用手机",
        "no_uniform": "未穿工作服",
    }
)
INSPECTION_OUTCOME_ZH = _frozen({"pass": "合格", "pass_with_conditions": "限期整改", "fail": "不合格"})
SEVERITY_ZH = _frozen({"minor": "一般", "serious": "严重", "critical": "重大"})
# A department's answer (FeedbackStatus), as recorded in the audit trail and shown on the alert page.
FEEDBACK_ZH = _frozen(
    {
        "acknowledged": "已签收",
        "in_progress": "处置中",
        "disposed": "已处置",
        "not_ours": "非本部门职责",
        "reassign": "专班改派",
        "merged": NoticeKind.merged.zh,  # the office's 合并 (its notification has the same word)
        "accepted": "已受理",
        "declined": "不予受理",
        "rectified": "整改完成",
    }
)
# The outcome of a disposal (DisposalOutcome): the verdict, the measures, a false alarm's reason
# (the reason codes the pipeline accepts are riskwatch/data/false_alarm_reasons.yaml; tests check both agree).
VERDICT_ZH = _frozen({"confirmed": "属实", "not_confirmed": "不属实", "false_alarm": "误报", "unknown": "未反馈结果"})
MEASURE_ZH = _frozen({"rectify": "责令整改", "case": "立案", "fine": "罚款", "suspend": "停业整顿", "transfer": "移送"})
FALSE_ALARM_REASON_ZH = _frozen(
    {
        "sensor_fault": "设备故障",
        "wrong_threshold": "阈值不当",
        "duplicate": "重复预警",
        "test_maintenance": "测试或维护",
        "other": "其他",
    }
)
# A receiving department's row on the alert page: its last answer, or released by the office's 改派.
DEPARTMENT_ANSWER_ZH = _frozen({**FEEDBACK_ZH, "released": "已改派他部门"})
# Who recorded an audit-trail row when it was not a department or a user (AlertTransition.actor).
ACTOR_ZH = _frozen(
    {"detector": "监测模型", "system": "系统", "router": "预警路由", "riskwatch": "系统通知", "timer": "时限检查"}
)
# What an audit-trail row records (AlertTransition.kind).
TRANSITION_KIND_ZH = _frozen(
    {
        "status": "状态",
        "level": "级别",
        "feedback": "反馈",
        "receivers": "接收部门",
        "reminder": "督促",
        "flapping": "波动",
        "silence": "静默",
        "notify": "通知",
        "evidence": "证据",
        "transfer": "移送",
        "order": "整改令",
    }
)
# A rectification order's status (streams/engine/orders.py).
ORDER_STATUS_ZH = _frozen(
    {
        "issued": "待整改",
        "claimed": "已提交整改,待复查",
        "reopened": "复查不合格,重新整改",
        "escalated": "复查多次不合格,已上报专班",
        "closed": "复查合格,已销号",
    }
)
DEADLINE_STAGE_ZH = _frozen({"ack": "签收", "dispose": "处置"})  # the two deadlines of an open alert
USER_ROLE_ZH = _frozen({"dept": "部门", "taskforce": "专班办公室", "leader": "县领导(只读)"})  # workbench roles
REPORT_PERIOD_ZH = _frozen({"week": "周报", "month": "月报"})  # bulletin periods
MATCH_METHOD_ZH = _frozen(  # how an event's entity was found (schemas.events.MatchMethod, edge/matching.py)
    {
        "credit_code": "统一社会信用代码",
        "licence": "许可证编号",
        "name_address": "名称地址相似",
        "alias": "已确认的名称地址",
        "office": "人工选择",
        "township": "未指明单位(归入乡镇)",
    }
)
DEVICE_FAULT_ZH = _frozen(  # device health (detectors/device_health.py): alert rules device.<kind>.<channel>
    {"offline": "离线", "stuck": "读数长时间不变", "range": "读数超出量程", "step": "读数突变"}
)
DETECTOR_FAMILY_ZH = _frozen(  # an alert rule's family (sinks/precision.detector_of): precision tables, bulletin
    {
        "rule.sensor": "传感器阈值规则",
        "model.sensor": "传感器异常模型",
        "model.risk": "综合风险模型",
        "rule.video": "视频识别规则",
        "rule.complaint": "投诉规则",
        "rule.inspection": "检查结果规则",
        "rule.rectification": "整改复查规则",
        "rule.crime": "涉嫌犯罪移送",
        **{f"device.{k}": f"设备健康:{v}" for k, v in DEVICE_FAULT_ZH.items()},
    }
)
JUDGE_SUBJECT_ZH = _frozen(  # what waits in the office's 研判 queue (web/routes/judge.py)
    {
        "complaint": "未匹配投诉",
        "entity": "待定性主体",
        "alert": "低置信预警",
        "dispute": "非本部门",
        "notice": "双告知异议",
    }
)
QUEUED_EVENT_ZH = _frozen(  # matching-queue kinds
    {"events.complaint": "投诉", "events.inspection": "检查结果", "events.device": "设备台账"}
)


@cache
def labels(kind: type[_Labelled]) -> Mapping[str, str]:
    """Code → label of every member of ``kind``, read-only (for templates: ``labels(AlertStatus).get(code, code)``)."""
    return MappingProxyType({m.value: m.zh for m in kind})


def zh(kind: type[_Labelled], code: str) -> str:
    """The label of ``code`` in ``kind``, or the code itself when it is not one (shown as recorded)."""
    try:
        return kind(code).zh
    except ValueError:
        return code
