"""Idempotent schema migrations, applied at start-up.

Each migration is a version number, a description and SQL statements that are themselves
idempotent (``IF NOT EXISTS``), so a crash between a statement and the ``schema_migrations``
record is harmless: the next start re-runs the statements and records the version. Never edit an
applied migration; append a new one (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS ...``).

Design notes (also in the COMMENT clauses, where analysts see them with ``SHOW CREATE``):

* Times are ``DateTime64(3, 'Asia/Shanghai')``: millisecond precision, county local time.
* Codes (kinds, channels, departments, statuses) are ``LowCardinality(String)``.
* Event tables are ``ReplacingMergeTree`` keyed on ``event_id`` (plus entity and time for
  locality): a Kafka replay or a retried insert re-writes the same key, and ``FINAL`` (or a merge)
  keeps one row. ``PARTITION BY toYYYYMM(occurred_at)``: the same event always lands in the same
  partition (dedup works per partition), months can be dropped by TTL as whole parts.
* Sensor, video, inspection and feedback events carry no township: join ``registry FINAL`` on
  ``entity_id`` for per-township questions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import INSERT_SETTINGS, check_database_name
from sinks.migrations_mv import migrate_views

log = logging.getLogger(__name__)
TZ = "DateTime64(3, 'Asia/Shanghai')"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def _q(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _event_table(name: str, comment: str, columns: str, order_by: str, ttl_days: int | None) -> str:
    ttl = f"TTL toDateTime(occurred_at) + INTERVAL {ttl_days} DAY\n" if ttl_days else ""
    return f"""
CREATE TABLE IF NOT EXISTS {{db}}.{name}
(
    event_id String COMMENT 'Unique id of the event: the idempotency key (dedup key with entity_id, time)',
    entity_id String COMMENT 'Supervised entity (名录库 id); the Kafka key',
    occurred_at {TZ} COMMENT 'When it happened, county local time',
    source LowCardinality(String) COMMENT 'Producing system, e.g. iot-gateway-3, 12315, video-ai',
    schema_version UInt8 COMMENT 'Version of the event contract',
{columns},
    ingested_at {TZ} DEFAULT now64(3, 'Asia/Shanghai') COMMENT 'When riskwatch stored the row (a replay keeps the last)'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY ({order_by})
{ttl}SETTINGS ttl_only_drop_parts = 1
COMMENT '{_q(comment)}'
"""


V1 = (
    "CREATE DATABASE IF NOT EXISTS {db}",
    _event_table(
        "events_registry",
        "名录库 events (registered/updated/closed), the audit trail of the registry. "
        "Dedup on (entity_id, occurred_at, event_id) after FINAL. No TTL: registry history is kept. "
        "Current state of each entity: table registry.",
        """    action LowCardinality(String) COMMENT 'registered | updated | closed',
    name String COMMENT 'Registered name (Chinese)',
    kind LowCardinality(String) COMMENT 'Entity kind code from the catalog',
    township LowCardinality(String) COMMENT 'Township (乡镇)',
    address String,
    licence String COMMENT 'Licence number, empty if unlicensed',
    lat Nullable(Float64),
    lon Nullable(Float64)""",
        "entity_id, occurred_at, event_id",
        None,
    ),
    _event_table(
        "events_sensor",
        "Raw IoT sensor readings, the high-volume table. ORDER BY (entity_id, channel, occurred_at, event_id) "
        "serves per-entity/per-channel time series; dedup on event_id after FINAL. "
        "TTL 400 days: a year of raw data plus a month of slack for year-on-year checks; "
        "longer-term trends live in risk_scores and alerts.",
        """    device_id LowCardinality(String) COMMENT 'IoT device id (thousands at most: LowCardinality)',
    channel LowCardinality(String) COMMENT 'Sensor channel, e.g. cold_chain_temp, boiler_pressure',
    value Float64 COMMENT 'Reading in unit',
    unit LowCardinality(String) COMMENT 'Unit, e.g. C, MPa, %RH'""",
        "entity_id, channel, occurred_at, event_id",
        400,
    ),
    _event_table(
        "events_video",
        "AI video detections (明厨亮灶, site cameras). Dedup on event_id after FINAL. "
        "TTL 400 days, like raw sensor data; the clip itself is kept elsewhere (evidence_ref).",
        """    camera_id LowCardinality(String),
    cls LowCardinality(String) COMMENT 'Detected class, e.g. no_mask, rodent, fire_exit_blocked',
    confidence Float32 COMMENT 'Model confidence 0..1',
    evidence_ref String COMMENT 'URI of the stored clip or frame'""",
        "entity_id, occurred_at, event_id",
        400,
    ),
    _event_table(
        "events_complaint",
        "Citizen complaints (12315/12345/online/walk-in). text and location are stored MASKED "
        "(phone and ID numbers, schemas.privacy.mask_pii). Dedup on event_id after FINAL. "
        "TTL 3 years: complaint statistics for the annual and 3-year reviews, then personal data is removed.",
        """    channel LowCardinality(String) COMMENT '12315 | 12345 | online | walk_in',
    category LowCardinality(String) COMMENT 'Complaint category code',
    text String COMMENT 'Complaint text with phone/ID numbers masked',
    township LowCardinality(String) COMMENT 'Township named by the complainant, may be empty',
    location String COMMENT 'Location text, masked like text'""",
        "entity_id, occurred_at, event_id",
        1095,
    ),
    _event_table(
        "events_inspection",
        "Inspection results (possibly joint). Violations are parallel arrays (ARRAY JOIN them). "
        "Dedup on event_id after FINAL. No TTL: inspection records are law-enforcement files.",
        """    inspection_id String,
    item_id UInt16 COMMENT 'Key supervision item id from the catalog',
    departments Array(LowCardinality(String)) COMMENT 'Inspecting department codes',
    inspectors Array(String),
    checklist Map(String, Bool) COMMENT 'Checklist point -> compliant',
    violation_codes Array(LowCardinality(String)),
    violation_severities Array(LowCardinality(String)) COMMENT 'minor | serious | critical, parallel to violation_codes',
    violation_descriptions Array(String),
    worst_severity LowCardinality(String) COMMENT 'Worst violation severity, empty if none',
    outcome LowCardinality(String) COMMENT 'pass | pass_with_conditions | fail'""",
        "entity_id, occurred_at, event_id",
        None,
    ),
    _event_table(
        "events_feedback",
        "Disposal feedback on alerts (督促反馈). comment/result are masked like complaints. "
        "Dedup on event_id after FINAL. No TTL: accountability record.",
        """    alert_id String,
    department LowCardinality(String),
    status LowCardinality(String) COMMENT 'acknowledged | in_progress | disposed | not_ours',
    comment String,
    result String COMMENT 'Disposal result when status=disposed'""",
        "entity_id, occurred_at, event_id",
        None,
    ),
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.alerts
(
    alert_id String COMMENT 'Stable id of one incident',
    revision UInt32 COMMENT 'Increases with every change; FINAL keeps the highest',
    fingerprint String COMMENT 'entity|item|rule',
    entity_id String,
    entity_name String,
    entity_kind LowCardinality(String),
    township LowCardinality(String),
    item_id Nullable(UInt16) COMMENT 'NULL when no item covers the entity kind',
    item_name LowCardinality(String),
    rule LowCardinality(String) COMMENT 'Detector or rule code',
    level LowCardinality(String) COMMENT 'blue | yellow | orange | red',
    level_zh LowCardinality(String),
    status LowCardinality(String) COMMENT 'pending | firing | acknowledged | disposing | resolved | closed',
    score Float32 COMMENT '0..100',
    title String,
    message String,
    explanation_signals Array(LowCardinality(String)) COMMENT 'Contribution signal codes, parallel arrays',
    explanation_values Array(Float64),
    explanation_details Array(String),
    lead_department LowCardinality(String),
    departments Array(LowCardinality(String)) COMMENT 'Every receiving department',
    first_seen {TZ},
    last_seen {TZ},
    updated_at {TZ},
    source_event_id String COMMENT 'Event that caused this revision',
    schema_version UInt8
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY alert_id
COMMENT 'One row per alert revision; SELECT ... FROM alerts FINAL gives the current state of each alert. Not partitioned: a partition key could change between revisions and defeat FINAL; alerts are few. No TTL.'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.alert_history
(
    alert_id String,
    at {TZ} COMMENT 'When the transition happened',
    from_status LowCardinality(String) COMMENT 'Empty for the first state',
    to_status LowCardinality(String),
    actor LowCardinality(String) COMMENT 'Department code, user or system component',
    comment String
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_id, at, to_status)
COMMENT 'Alert state transitions (audit trail). ReplacingMergeTree on (alert_id, at, to_status) so a replay adds no duplicate. No TTL.'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.dead_letters
(
    topic LowCardinality(String),
    partition Int32,
    offset Int64,
    key Nullable(String) COMMENT 'Original key, UTF-8 with replacement, or NULL',
    payload String COMMENT 'Original message bytes, base64',
    error String COMMENT 'Why it was refused: which field of which message was wrong',
    received_at {TZ}
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset)
TTL toDateTime(received_at) + INTERVAL 90 DAY
COMMENT 'Messages refused at the edge. Keyed by (topic, partition, offset) so a replay writes no duplicate after FINAL; not partitioned because received_at differs between replays. TTL 90 days: fix and replay within a quarter.'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.registry
(
    entity_id String,
    version UInt64 COMMENT 'occurred_at of the last registry event, epoch milliseconds: the latest event wins',
    name String,
    kind LowCardinality(String),
    township LowCardinality(String),
    address String,
    licence String,
    lat Nullable(Float64),
    lon Nullable(Float64),
    status LowCardinality(String) COMMENT 'active | closed',
    updated_at {TZ} COMMENT 'occurred_at of the last registry event',
    last_event_id String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY entity_id
COMMENT 'Current state of each supervised entity: SELECT ... FROM registry FINAL. Join on entity_id for township/kind of events.'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.risk_scores
(
    entity_id String,
    at {TZ} COMMENT 'When the score was computed (event time)',
    score Float32 COMMENT '0..100',
    level LowCardinality(String) COMMENT 'blue | yellow | orange | red, empty below blue',
    item_id Nullable(UInt16),
    top_signals Array(LowCardinality(String)) COMMENT 'Largest contributions, parallel to top_values',
    top_values Array(Float64)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (entity_id, at)
TTL toDateTime(at) + INTERVAL 730 DAY
SETTINGS ttl_only_drop_parts = 1
COMMENT 'Risk score time series per entity; one row per (entity_id, at) after FINAL. TTL 2 years: trends and year-on-year.'
""",
)

V2 = (
    f"""
ALTER TABLE {{db}}.alerts
    ADD COLUMN IF NOT EXISTS notification LowCardinality(String) DEFAULT '' COMMENT 'Why this revision went to departments: firing | level_up | resolved | urge | escalate | flapping | stable | silence_expired | receiver_added | not_ours; empty for a state update',
    ADD COLUMN IF NOT EXISTS recipients Array(LowCardinality(String)) COMMENT 'Departments this revision was sent to (alerts.<dept>)',
    ADD COLUMN IF NOT EXISTS ack_due Nullable({TZ}) COMMENT 'Acknowledgement (签收) deadline while open',
    ADD COLUMN IF NOT EXISTS dispose_due Nullable({TZ}) COMMENT 'Disposal (处置) deadline while open; overdue = dispose_due < now() AND status IN open statuses',
    ADD COLUMN IF NOT EXISTS flapping Bool DEFAULT false COMMENT 'Held as flapping (notifications paused until stable)'
""",
    """
ALTER TABLE {db}.alert_history
    ADD COLUMN IF NOT EXISTS seq UInt32 COMMENT 'Position in the alert''s history (alerts.events seq)',
    ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT 'status' COMMENT 'status | level | feedback | receivers | reminder | flapping | silence',
    ADD COLUMN IF NOT EXISTS entity_id String DEFAULT '',
    MODIFY ORDER BY (alert_id, at, to_status, seq)
""",
)

V3 = (
    _event_table(
        "events_task",
        "Pending inspection tasks (events.task): spot-check draws (双随机, kind=spot_check), departments' plans and "
        "alert follow-ups. The published spot-check list of a month is WHERE kind = 'spot_check' AND ref LIKE 'SC-<month>%'; "
        "its results are events_inspection rows of the same entity and item after the task. No TTL.",
        """    task_id String,
    department LowCardinality(String),
    due {TZ} COMMENT 'Inspect by',
    item_id Nullable(UInt16),
    kind LowCardinality(String) COMMENT 'alert | plan | spot_check',
    ref String COMMENT 'Spot-check id, plan id or alert id',
    note String""".replace("{TZ}", TZ),
        "entity_id, occurred_at, event_id",
        None,
    ),
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.inspection_plans
(
    inspection_id String COMMENT 'JI-… : one visit, the merged tasks of one entity',
    entity_id String,
    entity_name String,
    township LowCardinality(String),
    lead LowCardinality(String) COMMENT 'Lead department (the item''s lead when several take part)',
    departments Array(LowCardinality(String)) COMMENT 'Lead first',
    item_ids Array(UInt16),
    due {TZ} COMMENT 'Earliest due time of the merged tasks',
    joint Bool COMMENT 'Several departments: a joint inspection (联合检查)',
    task_ids Array(String),
    sources Array(LowCardinality(String)) COMMENT 'alert | plan | spot_check per task',
    planned_at {TZ} COMMENT 'When the worker merged them'
)
ENGINE = ReplacingMergeTree(planned_at)
ORDER BY (entity_id, inspection_id)
COMMENT 'Planned (joint) inspections from inspection.plans; a replan with more tasks gets a new inspection_id. FINAL: one row per plan.'
""",
)

V4 = (
    """
ALTER TABLE {db}.alert_history
    ADD COLUMN IF NOT EXISTS prev_hash String DEFAULT '' COMMENT 'Audit chain: hash of the previous row of this alert (seq 1: its evidence bundle hash)',
    ADD COLUMN IF NOT EXISTS hash String DEFAULT '' COMMENT 'Audit chain: SHA-256(prev_hash || RFC 8785 JSON of the row); riskwatch audit verify recomputes it'
""",
    """
ALTER TABLE {db}.alerts
    ADD COLUMN IF NOT EXISTS evidence_hash String DEFAULT '' COMMENT 'SHA-256 of the alert''s latest evidence bundle (table evidence)',
    ADD COLUMN IF NOT EXISTS transfer LowCardinality(String) DEFAULT '' COMMENT 'Case transfer (案件移送) state: empty | transferred | accepted | returned'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.evidence
(
    alert_id String,
    version UInt8 COMMENT '1: sealed when the alert opened; 2: with the readings after the trigger (final)',
    bundle_hash String COMMENT 'SHA-256 of the canonical (RFC 8785) bundle header, which lists every item hash',
    entity_id String,
    rule LowCardinality(String),
    final Bool,
    trigger_at {TZ},
    sealed_at {TZ},
    supersedes String COMMENT 'Hash of the version this one replaces (empty for version 1)',
    header String COMMENT 'The bundle header, canonical JSON',
    items Array(String) COMMENT 'The items, canonical JSON each (complaint text masked)'
)
ENGINE = ReplacingMergeTree
ORDER BY (alert_id, version)
COMMENT 'Evidence bundles (远程取证固证): riskwatch evidence export ALERT_ID writes one out and verifies it. No TTL: law-enforcement files.'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.audit_anchors
(
    partition UInt16 COMMENT 'Input partition whose alert chains this anchor covers',
    anchored_at {TZ},
    root String COMMENT 'RFC 9162 Merkle root over the leaves (schemas/audit.py merkle_root)',
    size UInt32,
    leaf_alert_ids Array(String) COMMENT 'Chain heads anchored: alert id, seq and row hash (parallel arrays)',
    leaf_seqs Array(UInt32),
    leaf_hashes Array(String),
    record String COMMENT 'The anchor as published on audit.anchors (canonical JSON)'
)
ENGINE = ReplacingMergeTree
ORDER BY (partition, anchored_at)
COMMENT 'Periodic Merkle roots over the audit chain heads, one per partition per period (audit.anchors). No TTL.'
""",
)

# Gateway batches: one dead letter per message with every bad reading (schemas.events.DeadLetter).
# The key gains `indexes` (a column added by the same statement, as ClickHouse requires; re-running
# it with the key already in place is a no-op): a replay of the same verdict still collapses, while
# two verdicts on one message (older workers' one-row-per-bad-reading letters, or a replay that
# refused other readings) are both kept: nothing is dropped silently.
V5_DEAD_LETTERS = (
    """
ALTER TABLE {db}.dead_letters
    ADD COLUMN IF NOT EXISTS indexes Array(UInt32) COMMENT 'Gateway batch: positions of the refused readings (readings[i]), ascending; empty when the whole message was refused',
    ADD COLUMN IF NOT EXISTS reasons Array(String) COMMENT 'Gateway batch: why each reading of indexes was refused (parallel to indexes)',
    MODIFY ORDER BY (topic, partition, offset, indexes),
    MODIFY COMMENT 'Messages refused at the edge, one row per message: a gateway batch''s payload once with every bad reading in indexes and reasons. Keyed by (topic, partition, offset, indexes) so a replay writes no duplicate after FINAL and distinct bad readings never collapse; not partitioned because received_at differs between replays. TTL 90 days: fix and replay within a quarter.'
""",
)

V6_CHAIN_HEADS = (
    """
ALTER TABLE {db}.alerts
    ADD COLUMN IF NOT EXISTS chain_seq UInt32 DEFAULT 0 COMMENT 'Audit chain head at this revision: the alert''s last alert_history seq (0: none)',
    ADD COLUMN IF NOT EXISTS chain_hash String DEFAULT '' COMMENT 'Hash of that alert_history row; riskwatch audit verify compares the history with it'
""",
)

V7_DEAD_LETTER_SOURCE = (
    """
ALTER TABLE {db}.dead_letters
    ADD COLUMN IF NOT EXISTS source LowCardinality(String) DEFAULT '' COMMENT 'Who sent it, from the transport (gateway source, MQTT device login, import); empty: the topic''s Kafka principal'
""",
)

V8_DEVICES = (
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.devices
(
    device_id String,
    entity_id String,
    version UInt64 COMMENT 'occurred_at of the last device event, epoch milliseconds: the latest event wins',
    action LowCardinality(String) COMMENT 'registered, updated or removed',
    channels Array(LowCardinality(String)),
    unit LowCardinality(String) COMMENT 'Unit of its readings when a reading gives none',
    rated_pressure_mpa Nullable(Float64),
    rated_temp_c Nullable(Float64),
    rated_load_kg Nullable(Float64),
    set_point_min_c Nullable(Float64),
    set_point_max_c Nullable(Float64),
    medium String,
    interval_s UInt32 COMMENT 'Expected reporting interval, seconds',
    installed_on Nullable(Date),
    calibrated_on Nullable(Date),
    owner LowCardinality(String) COMMENT 'Source (vendor) that sends its readings and is told of its faults',
    source LowCardinality(String) COMMENT 'Who registered it (from the transport)',
    updated_at {TZ}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY device_id
COMMENT 'The device registry (设备台账) from events.device: read with FINAL; action = removed marks a removed device'
""",
)

V11_MATCHING = (
    """
ALTER TABLE {db}.events_complaint
    ADD COLUMN IF NOT EXISTS match_method LowCardinality(String) DEFAULT '' COMMENT 'How entity_id was found: credit_code | licence | name_address | alias | office | township; empty: given by the sender',
    ADD COLUMN IF NOT EXISTS match_confidence Nullable(Float32) COMMENT 'Confidence of the match 0..1'
""",
    """
ALTER TABLE {db}.events_inspection
    ADD COLUMN IF NOT EXISTS match_method LowCardinality(String) DEFAULT '' COMMENT 'How entity_id was found (see events_complaint)',
    ADD COLUMN IF NOT EXISTS match_confidence Nullable(Float32) COMMENT 'Confidence of the match 0..1'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.match_queue
(
    queue_id String COMMENT 'The queued event''s event_id',
    version UInt64 COMMENT 'Epoch ms of the record: the resolution replaces the pending row',
    status LowCardinality(String) COMMENT 'pending | resolved',
    event_topic LowCardinality(String),
    event String COMMENT 'The original event as JSON without entity_id (text masked)',
    name String,
    address String,
    township LowCardinality(String),
    credit_code String,
    licence String,
    alias_key String COMMENT 'Normalised name|address',
    candidate_ids Array(String) COMMENT 'Candidates, parallel arrays, best first',
    candidate_names Array(String),
    candidate_addresses Array(String),
    candidate_scores Array(Float32),
    reason String,
    source LowCardinality(String),
    resolved_entity_id String,
    resolved_by String,
    at {TZ}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY queue_id
COMMENT 'Events whose entity was not matched with confidence (events.unmatched), resolved by the office: read with FINAL'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.match_aliases
(
    alias_key String COMMENT 'Normalised name|address (edge/matching.py alias_key)',
    entity_id String,
    version UInt64 COMMENT 'Epoch ms of the office decision: the latest wins',
    resolved_by String,
    at {TZ}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alias_key
COMMENT 'Name+address the office resolved to an entity: the next identical one matches with method alias (FINAL)'
""",
)

V13_OUTCOMES = (
    """
ALTER TABLE {db}.events_feedback
    ADD COLUMN IF NOT EXISTS verdict LowCardinality(String) DEFAULT '' COMMENT 'status=disposed: confirmed | not_confirmed | false_alarm, unknown when the message had no outcome',
    ADD COLUMN IF NOT EXISTS measures Array(LowCardinality(String)) DEFAULT [] COMMENT 'verdict=confirmed: rectify | case | fine | suspend | transfer',
    ADD COLUMN IF NOT EXISTS rectify_note String DEFAULT '' COMMENT 'measure rectify: what the entity must fix (masked)',
    ADD COLUMN IF NOT EXISTS case_number String DEFAULT '' COMMENT 'measure case: the case number',
    ADD COLUMN IF NOT EXISTS fine_yuan Nullable(Float64) COMMENT 'measure fine: amount in yuan',
    ADD COLUMN IF NOT EXISTS transfer_to String DEFAULT '' COMMENT 'measure transfer: to whom (masked)',
    ADD COLUMN IF NOT EXISTS false_reason LowCardinality(String) DEFAULT '' COMMENT 'verdict=false_alarm: reason code (riskwatch/data/false_alarm_reasons.yaml)'
""",
)

V14_RECTIFICATION_ORDERS = (
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.rectification_orders
(
    order_id String,
    version UInt32 COMMENT 'Steps so far (the order''s audit chain seq): the latest version wins',
    entity_id String,
    entity_name String,
    township LowCardinality(String),
    alert_id String COMMENT 'The alert whose outcome ordered it; empty for an inspection''s own order',
    source String COMMENT 'The inspection or alert id it came from',
    department LowCardinality(String) COMMENT 'Responsible (lead) department: does the 复查',
    item_id UInt16,
    status LowCardinality(String) COMMENT 'issued, claimed, reopened, escalated or closed',
    reason String,
    actions Array(String) COMMENT 'Required actions: code|severity|action per finding',
    item_due Array({TZ}) COMMENT 'Deadline per finding (from its severity, rectification.yaml)',
    issued_at {TZ},
    deadline {TZ} COMMENT 'Current deadline (a failed 复查 sets a new one)',
    claimed_at Nullable({TZ}) COMMENT '整改完成 reported by the department',
    evidence_sha256 String COMMENT 'Attachment of the claim (content-addressed store of the workbench)',
    failed_rechecks UInt8,
    reminders UInt16 COMMENT '督促 and escalations sent at the deadline',
    chain_hash String COMMENT 'Hash of the order''s last alert_history row (alert_id = order_id)',
    updated_at {TZ}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY order_id
COMMENT 'Rectification orders (整改令) and their 复查: read with FINAL; history in alert_history (alert_id = order_id)'
""",
)

V15_NOTICES = (
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.notices
(
    notice_id String COMMENT 'N + hash of the notice (a redelivery has the same id); a 督导单: the office\\'s id',
    department LowCardinality(String) COMMENT 'Recipient department: one row per (notice, department)',
    kind LowCardinality(String) COMMENT 'dual_notification (双告知), unassigned, township_surge, supervision (督导单)',
    entity_id String,
    township String,
    text String COMMENT 'Masked (schemas.privacy.mask_pii)',
    subject String COMMENT '督导单: the alert, task or notice id it is about',
    sender String COMMENT 'system, or the office (user) that sent the 督导单',
    created_at {TZ},
    deadline {TZ} COMMENT '认领 / answer by (working hours, riskwatch/data/notices.yaml)',
    status LowCardinality(String) COMMENT 'delivered, urged, escalated (open); confirmed, disputed, answered',
    answered_at Nullable({TZ}),
    answer String COMMENT 'Masked: the dispute\\'s reason or the 督导单\\'s answer',
    answered_by String,
    urged UInt16 COMMENT 'How many times it was urged (督促)',
    next_urge_at Nullable({TZ}),
    seq UInt32 COMMENT 'Last notice_history seq of (notice, department)',
    head String COMMENT 'Last notice_history hash (the chain head)',
    last_event String,
    version UInt64 COMMENT 'seq: the latest change wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (department, notice_id)
COMMENT 'Notices to departments and the office\\'s 督导单, one row per recipient: read with FINAL (streams/engine/notices.py)'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.notice_history
(
    notice_id String,
    department LowCardinality(String),
    seq UInt32,
    entity_id String,
    at {TZ},
    kind LowCardinality(String) COMMENT 'delivered, urged, escalated, confirmed, disputed, answered',
    from_status LowCardinality(String),
    to_status LowCardinality(String),
    actor String COMMENT 'system, or dept/user (the department from the Kafka topic)',
    comment String COMMENT 'Masked',
    prev_hash String,
    hash String COMMENT 'SHA-256 chain per (notice, department), schemas/audit.py with alert_id = notice/dept'
)
ENGINE = ReplacingMergeTree
ORDER BY (notice_id, department, seq, kind)
COMMENT 'Every change of a notice or 督导单 for one department, hash-chained (audit)'
""",
)

V17_OFFICE = (
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.judgements
(
    judgement_id String,
    version UInt64 COMMENT 'Epoch ms; every version is a link of the office chain (seq): read the latest per id with LIMIT 1 BY',
    seq UInt64 COMMENT 'Link of the office chain (streams/engine/office.py)',
    prev_hash String,
    hash String COMMENT 'SHA-256 over the previous hash and this decision (schemas/audit.py chain_row)',
    subject LowCardinality(String) COMMENT 'complaint | entity | alert | dispute | notice',
    subject_id String,
    entity_id String,
    action LowCardinality(String) COMMENT 'dispatch 派发 | merge 合并 | reject 驳回 | define 定性 | city 报市专班',
    departments Array(LowCardinality(String)),
    target String COMMENT 'merge: alert id; define: kind code; dispatch: task ids; city: referral id',
    reason String COMMENT 'Why (masked)',
    status LowCardinality(String) COMMENT 'done | awaiting_city | city_answered',
    answer String COMMENT 'The city office''s answer (masked)',
    actor String COMMENT 'taskforce/<user>',
    at {TZ}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (judgement_id, seq)
COMMENT 'The task-force office''s 研判 decisions (topic office.decisions): read with FINAL'
""",
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.consultations
(
    consultation_id String,
    version UInt64 COMMENT 'Epoch ms; convened and concluded are two links (seq): the latest per id is LIMIT 1 BY',
    seq UInt64 COMMENT 'Link of the office chain (streams/engine/office.py)',
    prev_hash String,
    hash String,
    title String,
    theme String,
    alert_ids Array(String),
    entity_ids Array(String),
    departments Array(LowCardinality(String)) COMMENT 'Invited departments',
    agenda String,
    held_at {TZ},
    status LowCardinality(String) COMMENT 'convened | concluded',
    minutes String COMMENT 'Minutes (masked)',
    decisions Array(String) COMMENT 'One JSON object per decision: text, department, due, task_id',
    actor String,
    at {TZ}
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (consultation_id, seq)
COMMENT 'The task-force office''s 议事会商 (topic office.decisions): read with FINAL'
""",
)

V18_CREDIT = (
    f"""
CREATE TABLE IF NOT EXISTS {{db}}.credit
(
    entity_id String,
    kind LowCardinality(String) COMMENT 'tier (信用风险分类), abnormal_list (经营异常名录) or serious_list (严重违法失信名单)',
    listed_on Date COMMENT '认定日期 (tier) or 列入日期 (lists)',
    version UInt64 COMMENT 'removed_on or listed_on in epoch ms: a repair replaces its listing',
    tier LowCardinality(String) COMMENT 'A–D for kind tier, else empty',
    removed_on Nullable(Date) COMMENT '移出日期 (信用修复); NULL while listed',
    reason String COMMENT '列入原因, or 移出原因 once removed (masked)',
    listed_reason String COMMENT '列入原因 kept on a removal (masked)',
    authority String COMMENT '认定机关 / 作出决定机关',
    name String COMMENT '主体名称 as the export gives it',
    event_id String,
    occurred_at {TZ},
    source LowCardinality(String) COMMENT 'import:<layout>:<operator>',
    match_method LowCardinality(String) COMMENT 'How the row found its entity (edge/matching.py)',
    ingested_at {TZ} DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (entity_id, kind, listed_on)
COMMENT 'Official credit records from events.credit (riskwatch import credit): read with FINAL; one row per listing'
""",
)

V19_CHANNEL_INTERVALS = (
    """
ALTER TABLE {db}.devices
    ADD COLUMN IF NOT EXISTS channel_intervals_s Map(LowCardinality(String), UInt32) COMMENT 'Per channel, where a device''s channels report at different paces; the others every interval_s'
""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: event tables, alerts, history, dead letters, registry, risk scores", V1),
    Migration(2, "alert life cycle: notification, recipients, deadlines, flapping; history seq and kind", V2),
    Migration(3, "inspection tasks (events_task) and planned joint inspections (inspection_plans)", V3),
    Migration(4, "evidence bundles, audit chain hashes, anchors, case transfers", V4),
    Migration(
        5,
        "dead letters: a gateway batch's bad readings as indexes and reasons, keyed so none collapse",
        V5_DEAD_LETTERS,
    ),
    Migration(6, "alert revisions carry their audit chain head (chain_seq, chain_hash)", V6_CHAIN_HEADS),
    Migration(7, "dead letters name their source (from the transport)", V7_DEAD_LETTER_SOURCE),
    Migration(8, "the device registry (devices)", V8_DEVICES),
    Migration(11, "entity matching: match columns, match_queue, match_aliases", V11_MATCHING),
    Migration(13, "disposal outcomes on events_feedback: verdict, measures, false-alarm reason", V13_OUTCOMES),
    Migration(14, "rectification orders (整改令) and their 复查", V14_RECTIFICATION_ORDERS),
    Migration(
        15, "notices to departments and 督导单 with their hash-chained history (notices, notice_history)", V15_NOTICES
    ),
    Migration(17, "the task-force office: judgements (研判) and consultations (议事会商)", V17_OFFICE),
    Migration(18, "official credit tiers and lists (credit), credit repair as removed_on", V18_CREDIT),
    Migration(19, "devices: a reporting interval per channel (channel_intervals_s)", V19_CHANNEL_INTERVALS),
)

_SCHEMA_MIGRATIONS = f"""
CREATE TABLE IF NOT EXISTS {{db}}.schema_migrations
(
    version UInt32,
    description String,
    applied_at {TZ}
)
ENGINE = ReplacingMergeTree
ORDER BY version
COMMENT 'Applied riskwatch schema migrations (sinks/migrations.py)'
"""


def applied_versions(client: Client, database: str) -> set[int]:
    rows = client.query(f"SELECT version FROM {check_database_name(database)}.schema_migrations FINAL").result_rows
    return {r[0] for r in rows}


def migrate(client: Client, database: str = "riskwatch") -> list[int]:
    """Apply the migrations not yet recorded; return the versions applied now (empty if up to date)."""
    db = check_database_name(database)
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(_SCHEMA_MIGRATIONS.format(db=db))
    done = applied_versions(client, db)
    applied = []
    for m in MIGRATIONS:
        if m.version in done:
            continue
        log.info("ClickHouse: applying migration %d (%s) to database %s", m.version, m.description, db)
        for sql in m.statements:
            client.command(sql.format(db=db))
        client.insert(
            "schema_migrations",
            [(m.version, m.description, datetime.now(LOCAL_TZ))],
            column_names=["version", "description", "applied_at"],
            database=db,
            settings=INSERT_SETTINGS,
        )
        applied.append(m.version)
    migrate_views(client, db)
    return applied
