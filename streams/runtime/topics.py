"""Every Kafka topic riskwatch uses, and their creation at start-up.

Input topics (keyed by ``entity_id``)::

    events.registry  events.sensor  events.video  events.complaint    one per event kind
    events.device    the device registry (设备台账): a device registered, updated or removed
    events.feedback.<dept>    a department's answers (督促反馈; the office's 改派 on events.feedback.taskforce)
    events.inspection.<dept>  a department's inspection results
    events.task.<dept>        a department's pending inspection tasks (the office's spot-check draws on
                              events.task.taskforce; the city's tasks on events.task.city)
    events.notice.<dept>      a department's answers to notices (认领 / 有异议 / 督导单 answers) and, on
                              events.notice.taskforce, the office's 督导单 (streams/engine/notices.py)
    events.feedback  events.inspection  events.task    the old shared topics, read for one release:
                              every message is a dead letter saying what to change

The department comes from the topic, never from the body (``streams/engine/identity.py``): only that
department's Kafka principal, and the workbench's, may write its topics (``deploy/kafka/acls.yaml``).

Output topics::

    alerts.<dept>   one per department in the catalog (lead and cooperating departments of an item)
    alerts.all      every alert revision (the ClickHouse sink and wall screens read this)
    alerts.events   alert state transitions (acknowledged, escalated, resolved, ...)
    notices         双告知 notices, township surges, urging (督促) and escalation notices to departments
    notices.delivery  one record per notification of a notice (delivery, 督促, escalation): Alertmanager
    peer.signals    complaint/video counts of an entity's kind and township; the ``peers`` agent
                    re-keys them by group (Faust ``group_by``), so group state is never shared
    deadletter      refused input: original bytes, where it came from, and why
    inspection.plans  joint inspections (联合检查): an entity's tasks of several departments merged into
                    one visit led by the item's lead department
    control.silences  silences / maintenance windows (compacted, one partition, read in full by
                    every worker; ``riskwatch silence add|list|end``)
    audit.anchors   Merkle roots over the alert audit chains' heads, one per input partition per
                    period (compacted, keyed ``<partition>:<anchored_at_ms>``; replicated to the city)

All input topics have the same partition count so that partition *n* of every input topic (and
of every per-entity state table) lands on the same worker: partitions are the unit of scale-out.
"""

from __future__ import annotations

import logging
from functools import cache

from riskwatch.domain.catalog import Catalog, load_catalog
from riskwatch.settings import Settings
from schemas.events import EVENT_MODELS, DisposalFeedback, InspectionResult
from streams.engine.identity import SENDER_KINDS, sender_topic, sender_topics, senders_of
from streams.engine.notices import DELIVERY_TOPIC as NOTICE_DELIVERY_TOPIC
from streams.engine.notices import NOTICE_TOPIC

log = logging.getLogger(__name__)

SHARED_INPUTS: tuple[str, ...] = tuple(t for t in EVENT_MODELS if t not in SENDER_KINDS)  # registry, sensor, ...
LEGACY_INPUTS: tuple[str, ...] = SENDER_KINDS  # the old shared topics: read for one release, all dead letters


def input_topics(catalog: Catalog) -> tuple[str, ...]:
    """Every input topic the entity agent reads (unprefixed), ``events.registry`` first."""
    return (*SHARED_INPUTS, *sender_topics(catalog), *LEGACY_INPUTS)


def human_topics(catalog: Catalog) -> tuple[str, ...]:
    """Input topics of people's actions (the workbench's forms): their rows are committed at once,
    not at the interval. Not events.registry: the 名录库 feed is a bulk sync (its rare workbench
    edits wait for the interval)."""
    kinds = (DisposalFeedback.topic, InspectionResult.topic)
    return tuple(sender_topic(k, s) for k in kinds for s in senders_of(k, catalog))


@cache
def _default(name: str) -> tuple[str, ...]:
    cat = load_catalog()
    return input_topics(cat) if name == "INPUT_TOPICS" else human_topics(cat)


def __getattr__(name: str) -> tuple[str, ...]:
    """``INPUT_TOPICS`` / ``HUMAN_TOPICS``: those of the default catalog (tools and tests; the
    worker uses :func:`input_topics` of its county's catalog)."""
    if name in ("INPUT_TOPICS", "HUMAN_TOPICS"):
        return _default(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ALERTS_ALL = "alerts.all"
ALERT_EVENTS = "alerts.events"
NOTICES = "notices"
DEADLETTER = "deadletter"
INSPECTION_PLANS = "inspection.plans"  # planned (joint) inspections merged from events.task and alerts
SILENCES = "control.silences"  # maintenance windows; compacted, read in full by every worker
PEER_SIGNALS = "peer.signals"  # complaints/video per entity kind and township, re-keyed by group (group_by)
UNMATCHED = "events.unmatched"  # events whose entity the edge could not match, and the office's resolutions
NOTICE_DELIVERY = NOTICE_DELIVERY_TOPIC  # notices' notifications (→ riskwatch notify → Alertmanager)

OFFICE = "office.decisions"  # the task-force office's 研判 and 会商 records (streams/engine/office.py); office ACL only
OFFICE_CITY = "office.city"  # 报市专班 referrals, sent to the city office through the city link
AUDIT_ANCHORS = "audit.anchors"  # Merkle roots over audit-chain heads (streams/runtime/anchors.py); compacted


def dept_topic(code: str) -> str:
    return f"alerts.{code}"


def notice_topic(code: str) -> str:
    """A department's answers to notices (the office's: also its 督导单)."""
    return sender_topic(NOTICE_TOPIC, code)


def all_topics(settings: Settings, catalog: Catalog) -> list[str]:
    names = [
        *input_topics(catalog),
        ALERTS_ALL,
        ALERT_EVENTS,
        NOTICES,
        DEADLETTER,
        PEER_SIGNALS,
        SILENCES,
        INSPECTION_PLANS,
        AUDIT_ANCHORS,
        UNMATCHED,
        OFFICE,
        OFFICE_CITY,
    ]
    names += [dept_topic(d) for d in catalog.departments]
    names += [NOTICE_DELIVERY, *(notice_topic(d) for d in catalog.departments)]
    out = [settings.topic(n) for n in names]
    # Faust's group_by repartition topic of the peers agent, created up front: created lazily on the
    # first signal, it would change every worker's subscription mid-run and force a rebalance
    out.append(f"peers-{settings.topic(PEER_SIGNALS)}-group-repartition")
    return out


def ensure_topics(settings: Settings, catalog: Catalog, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics with ``settings.partitions``; return the names created.

    Existing topics are kept; an existing input topic with a different partition count is an
    error (state tables would no longer line up with their source partitions).
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            **settings.kafka_kwargs(), client_id="riskwatch-admin", request_timeout_ms=int(timeout_s * 1000)
        )
    except Exception as e:  # noqa: BLE001
        raise SystemExit(
            f"riskwatch: cannot reach Kafka at {settings.kafka_bootstrap} ({e}). "
            "Start it with `riskwatch kafka start` or set RISKWATCH_KAFKA_BOOTSTRAP."
        ) from None
    try:
        wanted = all_topics(settings, catalog)
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            try:
                compact = {settings.topic(SILENCES)}  # the latest spec per silence_id is the truth
                compacted = compact | {settings.topic(AUDIT_ANCHORS)}  # one record per key (re-sent anchors replace)
                admin.create_topics(
                    [
                        NewTopic(
                            t,
                            1 if t in compact else settings.partitions,
                            settings.replication,
                            topic_configs={"cleanup.policy": "compact"} if t in compacted else {},
                        )
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another worker raced us
        inputs = [settings.topic(t) for t in input_topics(catalog)]
        import time

        deadline = time.monotonic() + timeout_s
        while True:  # a topic just created (or a broker just restarted) may not be described fully yet
            described = {d.get("topic") or d.get("name"): d for d in admin.describe_topics(inputs)}
            counts = {t: len((described.get(t) or {}).get("partitions") or ()) for t in inputs}
            if all(counts.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for t, n in counts.items():
            if n != settings.partitions:
                raise SystemExit(
                    f"riskwatch: topic {t} has {n} partitions but RISKWATCH_PARTITIONS={settings.partitions}. "
                    "All input topics must match; set RISKWATCH_PARTITIONS accordingly or recreate the topics"
                    + (" (0: not visible yet — is the broker healthy? `riskwatch kafka status`)" if n == 0 else "")
                    + "."
                )
        return missing
    finally:
        admin.close()


def delete_topics(settings: Settings, prefixes: list[str], timeout_s: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes`` (a test's or a benchmark's
    own topics, Faust's changelog and repartition topics included); returns the names deleted.

    Best effort: a broker that is away is not an error here (the topics stay; `riskwatch kafka
    reset` clears a development broker)."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            **settings.kafka_kwargs(), client_id="riskwatch-admin", request_timeout_ms=int(timeout_s * 1000)
        )
    except Exception:  # noqa: BLE001
        return []
    try:
        doomed = [t for t in admin.list_topics() if any(t.startswith(p) for p in prefixes)]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=int(timeout_s * 1000))
        return doomed
    except Exception:  # noqa: BLE001
        return []
    finally:
        admin.close()
