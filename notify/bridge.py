"""``riskwatch notify``: every department notification revision → Alertmanager (``POST /api/v2/alerts``).

Its own consumer group (``<app_id>-notify``) on the ``alerts.<dept>`` topics, not part of the
worker: delivery waits on an outside service (Alertmanager, minutes when it is down) and must
never hold back detection, the worker's commits or its rebalances; it scales and restarts on its
own; and it reads exactly what departments are told (a message on ``alerts.<dept>`` is one
notification to that department), so it needs nothing but the topics.

One Kafka message on ``alerts.<dept>`` becomes one Alertmanager alert whose labels identify that
notification: ``alert_id``, ``first_seen`` (alert ids repeat when a county resets riskwatch's state,
and Alertmanager's notification log would take a new incident for one it already sent), ``seq``
(the revision), ``notification``, ``department`` (+ ``item``, ``level``, ``township``,
``source="riskwatch"``). Every notification has its own label set, so
Alertmanager makes it its own group (``group_by: ['...']``) and sends it once; the same message
posted again (a redelivery after a crash) has the same label set, which Alertmanager has already
notified: no second message. ``endsAt`` is ``notify_hold_seconds`` after the post and
``send_resolved`` is off, so an alert simply expires; ``repeat_interval`` is longer than that
hold, so Alertmanager never repeats one (riskwatch's urging is the repeat). See
docs/notifications.md.

At least once: offsets are committed only after Alertmanager has accepted the batch. While
Alertmanager is unreachable the bridge retries with exponential back-off (tenacity) and does not
read further; nothing is committed, nothing is lost. Alertmanager keeps alerts in memory only, so
the bridge re-sends each posted alert every ``notify_resend_seconds`` for ``notify_hold_seconds``
(as Prometheus re-sends firing alerts): a restarted Alertmanager gets them again.

Its ``/metrics`` (``notify_port``) carries its lag (``riskwatch_notify_lag``), and the consumer lag
of the worker group on the input topics (``riskwatch_consumer_lag``), for the Prometheus rules.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import orjson
import urllib3
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pydantic import ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from edge.matching import store_rows
from notify.notices import am_notice
from notify.text import alert_text
from riskwatch.domain.catalog import Catalog, load_catalog
from riskwatch.domain.credit import CreditLookup, load_credit, reminder_text
from riskwatch.settings import Settings
from schemas.events import Alert, DeadLetter
from schemas.privacy import mask_pii
from streams.engine.notices import DELIVERY_TOPIC

log = logging.getLogger("riskwatch.notify")

POSTED = Counter(
    "riskwatch_notify_posted_total",
    "Notifications accepted by Alertmanager (first post, not re-sends)",
    ["department", "notification"],
)
POST_ERRORS = Counter("riskwatch_notify_post_errors_total", "Failed posts to Alertmanager (retried)", ["reason"])
DEAD = Counter(
    "riskwatch_notify_deadletter_total",
    "Messages the bridge could not turn into an alert (sent to the dead-letter topic)",
)
LAG = Gauge(
    "riskwatch_notify_lag", "Notification messages on alerts.<dept> not yet accepted by Alertmanager (committed)"
)
HELD = Gauge("riskwatch_notify_held", "Alerts the bridge keeps re-sending to Alertmanager")
UP_AM = Gauge("riskwatch_notify_alertmanager_up", "1 when the last post to Alertmanager succeeded")
CONSUMER_LAG = Gauge(
    "riskwatch_consumer_lag", "Messages not yet committed, per consumer group and topic", ["group", "topic"]
)
POST_SECONDS = Histogram("riskwatch_notify_post_seconds", "Time of one successful POST /api/v2/alerts")
KAFKA_TO_AM = Histogram(
    "riskwatch_notify_kafka_to_alertmanager_seconds",
    "From the alert message's Kafka timestamp to Alertmanager accepting it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


class Unavailable(RuntimeError):
    """Alertmanager did not accept the post now (unreachable, 5xx, 429): retried."""


class Refused(RuntimeError):
    """Alertmanager refused the alerts as invalid (4xx): not retried, dead-lettered."""


_UNMASKED = frozenset({"link", "source_event_id", "ack_due", "dispose_due", "status", "entity_id"})  # ids, times, URL


def am_alert(
    alert: Alert, department: str, settings: Settings, catalog: Catalog, now: datetime, reminder: str = ""
) -> dict:
    """The Alertmanager alert for one notification revision to one department. Every text annotation
    (title, message, entity, the notification text that e-mail, 企业微信 application messages and the
    robots show) goes through :func:`schemas.privacy.mask_pii`; the workbench link and ids do not.
    ``reminder``: the department's 联合惩戒 measures for a listed entity (annotation ``credit``, and in ``text``)."""
    dname = catalog.departments[department].name if department in catalog.departments else department
    link = alert.url  # the alert's workbench page (RISKWATCH_WEB_PUBLIC_URL), when the worker knows one
    starts = min(alert.updated_at, now) if alert.updated_at.tzinfo else now
    ann = {
        "title": alert.title,
        "summary": alert.message,
        "entity": f"{alert.entity_name}({alert.entity_id})" if alert.entity_name else alert.entity_id,
        "text": alert_text(alert, dname, link, reminder),
        "credit": reminder,
        "department_name": dname,
        "level_zh": alert.level_zh,
        "item_name": alert.item_name,
        "status": alert.status.value,
        "source_event_id": alert.source_event_id,
        # the parts of ``text`` one by one, so that the robot adapter escapes what is data, not the template
        "entity_name": alert.entity_name,
        "entity_id": alert.entity_id,
        "township": alert.township,
    }
    if alert.ack_due is not None:
        ann["ack_due"] = alert.ack_due.isoformat()
    if alert.dispose_due is not None:
        ann["dispose_due"] = alert.dispose_due.isoformat()
    if link:
        ann["link"] = link
    return {
        "labels": {
            "source": "riskwatch",
            "department": department,
            "alert_id": alert.alert_id,
            "seq": str(alert.revision),
            "first_seen": alert.first_seen.astimezone(UTC).isoformat(),
            "notification": alert.notification or "update",
            "item": str(alert.item_id) if alert.item_id is not None else "none",
            "level": alert.level.value,
            "township": alert.township or "unknown",
            "alertname": f"riskwatch_{alert.notification or 'update'}",
        },
        "annotations": {k: v if k in _UNMASKED else mask_pii(v) for k, v in ann.items() if v},
        "startsAt": starts.isoformat(),
        "generatorURL": link or f"riskwatch://alerts/{alert.alert_id}",
    }


@dataclass
class StallWatch:
    """Crash-only guard of the bridge (as the worker's commit watchdog): notifications wait on the
    department topics (lag > 0) yet the bridge's committed lag has not gone down for ``limit``
    seconds, while Alertmanager is not the reason (posts succeed) — the Kafka consumer is stuck (seen
    after a broker restart). The bridge then exits (code 70) for its supervisor to restart it;
    nothing is lost, uncommitted notifications are read and posted again.

    >>> w = StallWatch(limit=60)
    >>> w.stalled(lag=5, now=0, am_down=False), w.stalled(5, 59, False), w.stalled(5, 61, False)
    (False, False, True)
    >>> w = StallWatch(limit=60)
    >>> w.stalled(5, 0, False), w.stalled(3, 50, False), w.stalled(3, 100, False), w.stalled(3, 111, False)
    (False, False, False, True)
    >>> w.stalled(3, 500, am_down=True), w.stalled(0, 900, False), w.stalled(2, 950, False)
    (False, False, False)
    """

    limit: float
    _last_lag: int | None = None
    _progress_at: float | None = None

    def stalled(self, lag: int, now: float, am_down: bool) -> bool:
        if self._progress_at is None or lag == 0 or am_down or (self._last_lag is not None and lag < self._last_lag):
            self._progress_at = now
        self._last_lag = lag
        return now - self._progress_at > self.limit


@dataclass
class _Held:
    alert: dict
    until: float  # monotonic: stop re-sending after this


@dataclass
class Bridge:
    settings: Settings
    catalog: Catalog = field(default_factory=load_catalog)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=2.0, read=10.0), retries=False)
        self.held: dict[tuple[str, int, str], _Held] = {}
        self.am_down = False
        self.watch = StallWatch(self.settings.notify_stall_exit_seconds)
        self.group = f"{self.settings.app_id}-notify"
        self.prefix = self.settings.topic("alerts.")
        self.topics = [self.settings.topic(f"alerts.{d}") for d in self.catalog.departments]
        self.credit = CreditLookup(partial(store_rows, self.settings), on_error=self._credit_down)
        self.credit_cfg = load_credit()
        self.notices = self.settings.topic(DELIVERY_TOPIC)  # notices' notifications (notify/notices.py)
        self.topics.append(self.notices)

    def _credit_down(self, e: Exception) -> None:
        log.warning("credit table unreadable (%s): notifications go out without the 联合惩戒 reminder", e)

    def reminder(self, alert: Alert, department: str) -> str:
        """The department's 联合惩戒 measures if the alert's entity is on a credit list ('' if not)."""
        return reminder_text(self.credit.status(alert.entity_id), self.credit_cfg, department)

    # --- Alertmanager --------------------------------------------------------------------------
    def _post_once(self, alerts: list[dict]) -> None:
        url = self.settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
        t0 = time.perf_counter()
        try:
            r = self.http.request("POST", url, body=orjson.dumps(alerts), headers={"Content-Type": "application/json"})
        except urllib3.exceptions.HTTPError as e:
            POST_ERRORS.labels("unreachable").inc()
            raise Unavailable(
                f"Alertmanager at {self.settings.alertmanager_url} is unreachable ({type(e).__name__})"
            ) from None
        if r.status == 200:
            POST_SECONDS.observe(time.perf_counter() - t0)
            UP_AM.set(1)
            self.am_down = False
            return
        body = r.data[:300].decode(errors="replace")
        if r.status >= 500 or r.status == 429:
            POST_ERRORS.labels(str(r.status)).inc()
            raise Unavailable(f"Alertmanager answered {r.status}: {body}")
        POST_ERRORS.labels(str(r.status)).inc()
        raise Refused(f"Alertmanager refused the alerts ({r.status}): {body}")

    def _before_sleep(self, rs: RetryCallState) -> None:
        UP_AM.set(0)
        self.am_down = True
        wait = rs.next_action.sleep if rs.next_action else 0
        error = rs.outcome.exception() if rs.outcome else None
        msg = (
            f"{error}; retrying in {wait:.1f}s (attempt {rs.attempt_number}); nothing is lost "
            f"— start it with `riskwatch alertmanager start` or check RISKWATCH_ALERTMANAGER_URL"
        )
        (log.warning if rs.attempt_number in (1, 2, 4, 8) or rs.attempt_number % 20 == 0 else log.debug)(msg)

    def _pause(self, seconds: float) -> None:
        """The retry's sleep: cut short when the bridge stops."""
        self.stopping.wait(seconds)

    def post(self, alerts: list[dict]) -> None:
        """Post until accepted (raises :class:`Refused` for invalid alerts, or stops when the bridge stops)."""
        for attempt in Retrying(
            retry=retry_if_exception_type(Unavailable),
            reraise=True,
            wait=wait_exponential(multiplier=0.2, min=0.2, max=self.settings.notify_retry_max_seconds),
            stop=lambda rs: self.stopping.is_set(),
            before_sleep=self._before_sleep,
            sleep=self._pause,
        ):
            with attempt:
                self._post_once(alerts)

    def _with_ends(self, a: dict) -> dict:
        ends = datetime.now(UTC) + timedelta(seconds=self.settings.notify_hold_seconds)
        return {**a, "endsAt": ends.isoformat()}

    # --- the loop -------------------------------------------------------------------------------
    def run(self, ready: threading.Event | None = None) -> None:
        from kafka.errors import KafkaError

        from kafka import KafkaConsumer, KafkaProducer

        s = self.settings
        consumer = KafkaConsumer(
            **s.kafka_kwargs(),
            group_id=self.group,
            client_id="riskwatch-notify",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=24 * 3600 * 1000,
            max_poll_records=500,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        self._wait_for_topics(consumer)
        consumer.subscribe(self.topics)
        producer = KafkaProducer(**s.kafka_kwargs(), acks="all", linger_ms=5)
        lag_thread = threading.Thread(target=self._lag_loop, daemon=True, name="notify-lag")
        lag_thread.start()
        next_resend = time.monotonic() + s.notify_resend_seconds
        log.info(
            "riskwatch notify: consuming %d department topics as group %s, posting to %s",
            len(self.topics),
            self.group,
            s.alertmanager_url,
        )
        try:
            while not self.stopping.is_set():
                polled = consumer.poll(timeout_ms=200)
                if ready is not None and consumer.assignment():
                    ready.set()
                batch: list[dict] = []
                keys: list[tuple[str, int, str]] = []
                good: list = []
                records = [r for recs in polled.values() for r in recs]
                now = datetime.now(UTC)
                for rec in records:
                    dept = rec.topic[len(self.prefix) :]
                    try:
                        if rec.topic == self.notices:
                            n = orjson.loads(rec.value)
                            a = am_notice(n, s, self.catalog)
                            batch.append(a)
                            keys.append((n["notice_id"], int(n["seq"]), n["department"]))
                            good.append(rec)
                            continue
                        alert = Alert.model_validate_json(rec.value)
                        a = am_alert(alert, dept, s, self.catalog, now, self.reminder(alert, dept))
                        a["annotations"]["published_at_ms"] = str(rec.timestamp)  # Kafka time of the revision (latency)
                    except (ValidationError, ValueError, KeyError) as e:
                        self._dead(producer, rec, f"not a riskwatch alert revision: {e}".splitlines()[0][:500])
                        continue
                    batch.append(a)
                    keys.append((alert.alert_id, alert.revision, dept))
                    good.append(rec)
                if batch:
                    out = [self._with_ends(a) for a in batch]
                    try:
                        self.post(out)
                    except Refused as e:
                        for rec in good:
                            self._dead(producer, rec, str(e))
                        batch = []
                    if self.stopping.is_set():
                        break  # not posted: not committed; redelivered on restart
                    until = time.monotonic() + s.notify_hold_seconds
                    wall = time.time()
                    for a, k, rec in zip(batch, keys, good, strict=False):  # batch is [] when refused
                        self.held[k] = _Held(a, until)
                        POSTED.labels(k[2], a["labels"]["notification"]).inc()
                        KAFKA_TO_AM.observe(max(0.0, wall - rec.timestamp / 1000))
                if records:
                    producer.flush(60)  # dead letters before the commit
                    try:
                        consumer.commit()
                    except (
                        KafkaError
                    ) as e:  # a rebalance (in progress, or it took the partitions): redelivered, idempotent
                        log.warning(
                            "commit failed (%s); these notifications will be posted again, "
                            "Alertmanager sends them once",
                            str(e).splitlines()[0],
                        )
                if time.monotonic() >= next_resend:
                    self._resend()
                    next_resend = time.monotonic() + s.notify_resend_seconds
                HELD.set(len(self.held))
        finally:
            consumer.close(autocommit=False)
            producer.close(5)

    def _wait_for_topics(self, consumer, timeout: float = 120.0) -> None:
        """Join the group only once every topic's partitions are known: kafka-python's assignor
        leaves a topic without metadata unassigned and does not always rejoin when it arrives."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            missing = [t for t in self.topics if not consumer.partitions_for_topic(t)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"riskwatch notify: topics {', '.join(missing[:3])}... do not exist on "
                    f"{self.settings.kafka_bootstrap}; start a worker (it creates them) "
                    "or run `riskwatch topics create`"
                )
            self.stopping.wait(0.5)

    def _resend(self) -> None:
        now = time.monotonic()
        for k in [k for k, h in self.held.items() if h.until <= now]:
            del self.held[k]
        items = list(self.held.values())
        for i in range(0, len(items), 500):
            try:
                self.post([self._with_ends(h.alert) for h in items[i : i + 500]])
            except Refused as e:
                log.warning("re-send refused: %s", e)

    def _dead(self, producer, rec, reason: str) -> None:
        import base64

        DEAD.inc()
        log.warning("%s[%d]@%d refused: %s", rec.topic, rec.partition, rec.offset, mask_pii(reason))
        dl = DeadLetter(
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key.decode(errors="replace") if rec.key is not None else None,
            payload_b64=base64.b64encode(rec.value or b"").decode(),
            error=mask_pii(f"notify: {reason}"),
            received_at=datetime.now(UTC),
        )
        producer.send(self.settings.topic("deadletter"), value=dl.model_dump_json().encode(), key=rec.key)

    # --- lag ------------------------------------------------------------------------------------
    def _lag_loop(self) -> None:
        from kafka.structs import TopicPartition

        from kafka import KafkaAdminClient, KafkaConsumer
        from streams.runtime.topics import INPUT_TOPICS

        s = self.settings
        groups = {self.group: self.topics, s.app_id: [s.topic(t) for t in INPUT_TOPICS]}
        admin = consumer = None
        while not self.stopping.is_set():
            try:
                if admin is None or consumer is None:  # set together (and dropped together on an error)
                    admin = KafkaAdminClient(**s.kafka_kwargs(), client_id="riskwatch-notify-lag")
                    consumer = KafkaConsumer(**s.kafka_kwargs(), client_id="riskwatch-notify-lag")
                for group, topics in groups.items():
                    committed = admin.list_group_offsets(group).get(group, {})
                    tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
                    ends = consumer.end_offsets(tps)
                    per_topic: dict[str, int] = {}
                    for tp, end in ends.items():
                        c = committed.get(tp)
                        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + max(
                            0, end - (c.offset if c is not None and c.offset >= 0 else 0)
                        )
                    for t, n in per_topic.items():
                        CONSUMER_LAG.labels(group, t).set(n)
                    if group == self.group:
                        lag = sum(per_topic.values())
                        LAG.set(lag)
                        if self.watch.stalled(lag, time.monotonic(), self.am_down):
                            log.error(
                                "riskwatch notify: %d notifications wait and nothing was committed for %.0fs while "
                                "Alertmanager accepts posts: the Kafka consumer is stuck; exiting (code 70) for a "
                                "restart — nothing is lost, they are read again",
                                lag,
                                self.watch.limit,
                            )
                            logging.shutdown()
                            os._exit(70)
            except Exception as e:  # noqa: BLE001 — a broker away: keep the last values, try again
                log.debug("lag: %s", e)
                admin = consumer = None
            self.stopping.wait(5.0)


def serve(settings: Settings) -> None:
    """Run the bridge until SIGTERM/SIGINT; /metrics on ``settings.notify_port``."""
    start_http_server(settings.notify_port, addr=settings.notify_host)
    b = Bridge(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: b.stopping.set())
    try:
        b.run()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 — crash-only: exit for a restart; uncommitted notifications are posted again
        log.error(
            "riskwatch notify: %s: %s; exiting (code 70) for a restart — nothing is lost, "
            "notifications not yet committed are posted again",
            type(e).__name__,
            str(e).splitlines()[0] if str(e) else "",
        )
        raise SystemExit(70) from None
