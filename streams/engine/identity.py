"""Who sent an answer: the department comes from the topic, never from the message body.

A department's answers travel on topics of its own, ``<kind>.<dept>``: disposal feedback
(``events.feedback.<dept>``), inspection results (``events.inspection.<dept>``) and inspection tasks
(``events.task.<dept>``), one per department code of the catalog. Only that department's Kafka
principal (and the workbench's, which authenticates people and writes to the topic of the logged-in
user's department) may write them (``deploy/kafka/acls.yaml``). The worker takes the sender from the
topic and refuses, as a dead letter naming both, a body that speaks for another department:

- feedback: ``department`` must be the sender; decisions reserved to the task-force office
  (改派 ``reassign`` and 合并 ``merged``, the office's 研判 outcomes) are accepted only on the office's topic;
- inspection results: the sender must be one of ``departments`` (a joint inspection lists several);
- tasks: a department plans its own (``department`` = sender); the office (spot-check draws, 双随机)
  and the city link (``events.task.city``, the city's tasks) may assign any department.

The old shared topics (``events.feedback``, ``events.inspection``, ``events.task``) are still read for
one release: every message on them is a dead letter saying what to change.

>>> from riskwatch.domain.catalog import load_catalog
>>> s = Senders(load_catalog())
>>> s.routes["events.feedback.police"]
Route(kind='events.feedback', sender='police')
>>> sender_topic("events.task", CITY), kind_of("events.inspection.amr"), kind_of("events.sensor")
('events.task.city', 'events.inspection', 'events.sensor')
>>> s.legacy["events.feedback"].split(";")[0]
'events.feedback no longer accepted: a department writes events.feedback.<dept> with its own Kafka principal'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from riskwatch.domain.catalog import Catalog
from schemas.events import DisposalFeedback, Event, FeedbackStatus, InspectionResult, InspectionTask
from schemas.vocabulary import FEEDBACK_ZH
from streams.engine.notices import NOTICE_TOPIC

# the event kinds (base topic names) whose sender is a department: one topic per department
SENDER_KINDS: tuple[str, ...] = (DisposalFeedback.topic, InspectionResult.topic, InspectionTask.topic)
CITY = "city"  # the city platform's tasks to the county, relayed by the city link (not a department)
# decisions only the task-force office takes (专班研判): accepted only on its own feedback topic
OFFICE_STATUSES: frozenset[str] = frozenset({FeedbackStatus.reassign.value, FeedbackStatus.merged.value})
DOC = "docs/events.md"


def sender_topic(kind: str, sender: str) -> str:
    """The topic of ``sender``'s events of ``kind`` (unprefixed): ``events.feedback.amr``."""
    return f"{kind}.{sender}"


def topic_for(event: Event, sender: str) -> str:
    """Where ``sender`` writes ``event`` (unprefixed): its own topic for a sender kind, else the kind's topic."""
    return sender_topic(event.topic, sender) if event.topic in (*SENDER_KINDS, NOTICE_TOPIC) else event.topic


def kind_of(topic: str) -> str:
    """The event kind (base topic, a key of ``schemas.events.EVENT_MODELS``) of an unprefixed topic."""
    for kind in SENDER_KINDS:
        if topic.startswith(kind + "."):
            return kind
    return topic


def senders_of(kind: str, catalog: Catalog) -> tuple[str, ...]:
    """Who has a topic of ``kind``: every department of the catalog; for tasks also the city link."""
    depts = tuple(catalog.departments)
    return (*depts, CITY) if kind == InspectionTask.topic else depts


def sender_topics(catalog: Catalog) -> list[str]:
    """Every per-sender topic (unprefixed), kind by kind."""
    return [sender_topic(k, s) for k in SENDER_KINDS for s in senders_of(k, catalog)]


def legacy_reason(kind: str) -> str:
    """The dead-letter reason for a message on the old shared topic of ``kind``."""
    return (
        f"{kind} no longer accepted: a department writes {kind}.<dept> with its own Kafka principal; "
        f"the department comes from the topic, not the body; see {DOC}"
    )


@dataclass(frozen=True, slots=True)
class Route:
    """What the topic says about a message: its event kind and who sent it."""

    kind: str
    sender: str


class Senders:
    """The per-sender topics of a catalog (with the runtime's topic prefix) and the check of a body
    against its topic's sender."""

    def __init__(self, catalog: Catalog, topic_prefix: str = "") -> None:
        self.office = catalog.taskforce_office
        self.prefix = topic_prefix
        self.routes: dict[str, Route] = {
            topic_prefix + sender_topic(k, s): Route(k, s) for k in SENDER_KINDS for s in senders_of(k, catalog)
        }
        self.legacy: dict[str, str] = {topic_prefix + k: legacy_reason(k) for k in SENDER_KINDS}

    def refusal(self, topic: str, event: Event) -> str | None:
        """Why ``event`` may not come on ``topic`` (one line naming both departments), or None."""
        route = self.routes.get(topic)
        if route is None:
            return None  # a kind without senders (sensor, video, complaint, registry)
        sender = route.sender
        office_topic = self.prefix + sender_topic(DisposalFeedback.topic, self.office)
        if isinstance(event, DisposalFeedback):
            if event.department != sender:
                return (
                    f"the body names department {event.department!r} but {topic} is the topic of department "
                    f"{sender!r}: a department answers only for itself (the department comes from the topic)"
                )
            if event.status.value in OFFICE_STATUSES and sender != self.office:
                return (
                    f"status {event.status.value!r} ({FEEDBACK_ZH[event.status.value]}) is the task-force office's "
                    f"decision: accepted only on "
                    f"{office_topic}, not from department {sender!r} on {topic}"
                )
        elif isinstance(event, InspectionResult) and sender not in event.departments:
            return (
                f"the body names departments {_names(event.departments)} but {topic} is the topic of department "
                f"{sender!r}: the sending department must be one of the inspection's departments"
            )
        elif isinstance(event, InspectionTask) and event.department != sender and sender not in (self.office, CITY):
            return (
                f"the body names department {event.department!r} but {topic} is the topic of department {sender!r}: "
                f"a department plans only its own tasks (the office on "
                f"{self.prefix + sender_topic(InspectionTask.topic, self.office)} and the city link on "
                f"{self.prefix + sender_topic(InspectionTask.topic, CITY)} assign any department)"
            )
        return None


def _names(codes: Iterable[str]) -> str:
    return "[" + ", ".join(repr(c) for c in codes) + "]"
