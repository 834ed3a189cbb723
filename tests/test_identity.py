"""Identity from the transport, not from the message (issue #18, part 3).

A department's answers, inspection results and tasks travel on topics of its own
(``events.feedback.<dept>`` …, ``streams/engine/identity.py``). Checked here:

- the engine (no Kafka): a body naming another department on a department's topic, a 改派 from a
  topic other than the office's, and any message on the old shared topics are dead letters whose
  one-line reason names both sides or says what to change;
- the worker (the Pipeline fixture, real broker and worker process): the same three refusals reach
  the dead-letter topic, and a department's answer on its own topic is taken;
- the workbench produces to the logged-in user's department's topic;
- a real broker with SASL/SCRAM users and the StandardAuthorizer, with the ACLs of
  ``deploy/kafka/acls.yaml`` applied by ``deploy/kafka/apply_acls.py``: department A's principal
  cannot write department B's topic (TopicAuthorizationFailed), the sources write only their own
  input topic, the workbench writes every department's answer topic, nobody the old shared ones.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from riskwatch.domain.catalog import load_catalog
from riskwatch.domain.county import load_county
from riskwatch.settings import Settings
from riskwatch.tools.broker import Broker
from riskwatch.tools.runner import wait_for
from schemas.events import DeadLetter, DisposalFeedback, EntityEvent, InspectionResult
from sinks import rows
from streams.engine.batch import Destinations, EntityBatch, Message, Record
from streams.engine.dispatch import Processor
from streams.engine.identity import CITY, SENDER_KINDS, legacy_reason, sender_topic
from streams.engine.ingest import Decoder
from streams.engine.state import EntityState
from tests import factories as F
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
CAT = load_catalog()
DEC = Decoder(CAT)


# --- the engine: the sender comes from the topic ------------------------------------------------------
def _decode(topic: str, body: dict, offset: int = 0):
    return DEC.decode(topic, 0, offset, body["entity_id"].encode(), orjson.dumps(body))


def test_a_body_naming_another_department_is_a_dead_letter_naming_both():
    out = _decode("events.feedback.amr", F.feedback("E1", "a1", "police", "accepted"))
    assert isinstance(out, DeadLetter)
    line = out.error
    assert "\n" not in line and line.startswith("events.feedback.amr[0]@0: ")
    assert "'police'" in line and "'amr'" in line and "answers only for itself" in line
    ok = _decode("events.feedback.police", F.feedback("E1", "a1", "police", "accepted"))
    assert isinstance(ok, DisposalFeedback) and ok.department == "police"


def test_reassign_is_accepted_only_on_the_offices_topic():
    fb = F.feedback("E1", "a1", "amr", "reassign")
    fb.update(assign_to=["agri"], comment="属农业农村局职责")
    out = _decode("events.feedback.amr", fb)
    assert isinstance(out, DeadLetter)
    assert "'reassign'" in out.error and "events.feedback.taskforce" in out.error and "'amr'" in out.error
    office = {**fb, "department": "taskforce"}
    assert isinstance(_decode("events.feedback.amr", office), DeadLetter)  # the office's name on amr's topic
    assert isinstance(_decode("events.feedback.taskforce", office), DisposalFeedback)


def test_the_old_shared_topics_say_what_to_change():
    for kind, body in (
        ("events.feedback", F.feedback("E1", "a1", "amr")),
        ("events.inspection", F.inspection("E1")),
        ("events.task", F.task("E1")),
    ):
        out = _decode(kind, body)
        assert isinstance(out, DeadLetter), kind
        assert out.error == f"{kind}[0]@0: {legacy_reason(kind)}"
        assert f"{kind} no longer accepted: a department writes {kind}.<dept> with its own Kafka principal" in out.error
        assert "docs/events.md" in out.error
    bad = DEC.decode("events.feedback", 0, 1, b"E1", b"\xff not json")  # refused before it is parsed
    assert isinstance(bad, DeadLetter) and "no longer accepted" in bad.error


def test_inspections_and_tasks_speak_for_their_sender_only():
    insp = F.inspection("E1")  # departments ["amr"]
    assert not isinstance(_decode("events.inspection.amr", insp), DeadLetter)
    out = _decode("events.inspection.police", insp)
    assert isinstance(out, DeadLetter) and "['amr']" in out.error and "'police'" in out.error
    task = F.task("E1", "health")
    assert not isinstance(_decode("events.task.health", task), DeadLetter)
    out = _decode("events.task.edu", task)
    assert isinstance(out, DeadLetter) and "'health'" in out.error and "'edu'" in out.error
    # the office's spot-check draws and the city's tasks assign any department
    assert not isinstance(_decode("events.task.taskforce", task), DeadLetter)
    assert not isinstance(_decode(sender_topic("events.task", CITY), task), DeadLetter)
    assert isinstance(_decode("events.feedback.city", F.feedback("E1", "a1", "amr")), DeadLetter)  # no such topic


def test_the_prefix_is_part_of_the_topic():
    dec = Decoder(CAT, topic_prefix="t1.")
    fb = F.feedback("E1", "a1", "amr")
    assert not isinstance(dec.decode("t1.events.feedback.amr", 0, 0, b"E1", orjson.dumps(fb)), DeadLetter)
    out = dec.decode("t1.events.feedback.police", 0, 0, b"E1", orjson.dumps(fb))
    assert isinstance(out, DeadLetter) and "t1.events.feedback.police is the topic of department 'police'" in out.error
    assert "no longer accepted" in dec.decode("t1.events.feedback", 0, 0, b"E1", orjson.dumps(fb)).error


def test_the_batch_step_sends_refusals_to_the_dead_letter_topic_and_counts_them():
    county = load_county()
    dest = Destinations(
        "alerts.all",
        "alerts.events",
        "inspection.plans",
        {d: f"alerts.{d}" for d in county.catalog.departments},
        "notices",
        "deadletter",
    )
    states: dict[bytes, EntityState] = {}
    eb = EntityBatch(
        Processor.from_county(county),
        Decoder(county.catalog),
        dest,
        rows,
        load=lambda key: states.setdefault(key, EntityState()),
        partition_of={},
    )
    msgs = [
        ("events.feedback", F.feedback("E1", "a1", "amr")),
        ("events.feedback.amr", F.feedback("E1", "a1", "police", "declined")),
        ("events.task.amr", F.task("E1", "amr")),
    ]
    out = eb.run(Record(Message(t, 0, i, b"E1"), orjson.dumps(b)) for i, (t, b) in enumerate(msgs))
    dead = [orjson.loads(v) for d, _, v in out.sends if d == "deadletter"]
    assert [d["topic"] for d in dead] == ["events.feedback", "events.feedback.amr"]
    assert out.counts[("events.feedback", "dead")] == 1 and out.counts[("events.feedback.amr", "dead")] == 1
    assert out.counts[("events.task.amr", "ok")] == 1


# --- the worker -------------------------------------------------------------------------------------------
def test_worker_takes_the_department_from_the_topic(pipeline):
    p = pipeline
    p.start_worker()
    p.send("events.registry", F.registered("E-id", kind="retail_pharmacy", name="舞泉镇康源大药房"))
    p.flush()
    p.wait_consumed()
    p.send("events.complaint", F.complaint("E-id", "counterfeit_drug"))  # amr + medinsure receive it
    p.flush()
    a = wait_for(lambda: [orjson.loads(v) for _, v in p.read_topic("alerts.medinsure")], 60, "the alert to medinsure")[
        0
    ]
    aid = a["alert_id"]
    old = F.feedback("E-id", aid, "amr")  # an older department system on the shared topic
    forged = F.feedback("E-id", aid, "medinsure")  # amr answering as medinsure
    reassign = F.feedback("E-id", aid, "amr", "reassign")
    reassign.update(assign_to=["police"], comment="改由公安")
    p.send("events.feedback", old)
    p.send("events.feedback.amr", forged)
    p.send("events.feedback.amr", reassign)
    p.send("events.feedback.medinsure", F.feedback("E-id", aid, "medinsure"))  # the real one
    p.flush()
    dead = wait_for(
        lambda: (
            (d := [x for x in (orjson.loads(v) for _, v in p.read_topic("deadletter")) if x["key"] == "E-id"])
            and len(d) >= 3
            and d
        ),
        90,
        "three refusals",
    )
    by_event = {orjson.loads(base64.b64decode(d["payload_b64"]))["event_id"]: d for d in dead}
    assert "no longer accepted" in by_event[old["event_id"]]["error"]
    assert by_event[old["event_id"]]["topic"] == p.settings.topic("events.feedback")
    assert (
        "'medinsure'" in by_event[forged["event_id"]]["error"]
        and "answers only for itself" in by_event[forged["event_id"]]["error"]
    )
    assert "events.feedback.taskforce" in by_event[reassign["event_id"]]["error"]
    acked = wait_for(
        lambda: [
            x
            for x in (orjson.loads(v) for _, v in p.read_topic("alerts.all"))
            if x["alert_id"] == aid and x["status"] == "acknowledged"
        ],
        60,
        "medinsure's acknowledgement",
    )
    assert acked


# --- the workbench --------------------------------------------------------------------------------------
class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        self.sent.append((topic, value))


def test_the_workbench_writes_to_the_users_departments_topic():
    from web.produce import Producer

    prod = Producer(Settings(_env_file=None, topic_prefix="w."), CAT)
    rec = _Recorder()
    prod._producer = rec
    fb = prod.build(DisposalFeedback, entity_id="E1", alert_id="a1", department="police", status="accepted")
    asyncio.run(prod.send(fb, "police/李四", "police"))
    insp = prod.build(
        InspectionResult,
        entity_id="E1",
        inspection_id="i1",
        item_id=1,
        departments=["amr"],
        outcome="pass",
    )
    asyncio.run(prod.send(insp, "amr/张三", "amr"))
    reg = prod.build(
        EntityEvent,
        entity_id="E1",
        action="updated",
        name="x",
        kind="catering",
        township="舞泉镇",
    )
    asyncio.run(prod.send(reg, "taskforce/王五"))
    assert [t for t, _ in rec.sent] == ["w.events.feedback.police", "w.events.inspection.amr", "w.events.registry"]
    with pytest.raises(ValueError, match="sending department"):
        asyncio.run(prod.send(fb, "leader/赵六", ""))  # no department: nothing is produced
    assert len(rec.sent) == 3


# --- a real broker with SASL users and the StandardAuthorizer -------------------------------------------
ADMIN_PW = "admin-" + uuid.uuid4().hex[:8]


class SaslBroker(Broker):
    """A second local broker like compose's: SASL only (PLAIN for admin, SCRAM-SHA-512 for everyone
    else), the StandardAuthorizer, no ACL = no access."""

    def _properties(self) -> Path:
        s, d = self.settings, self.data_dir
        jaas = (
            'org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
            f'password="{ADMIN_PW}" user_admin="{ADMIN_PW}";'
        )
        p = d / "server.properties"
        p.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                    f"listeners=INTERNAL://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    f"advertised.listeners=INTERNAL://127.0.0.1:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
                    "inter.broker.listener.name=INTERNAL",
                    "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512",
                    "sasl.mechanism.inter.broker.protocol=PLAIN",
                    "sasl.mechanism.controller.protocol=PLAIN",
                    "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                    f"listener.name.controller.plain.sasl.jaas.config={jaas}",
                    f"listener.name.internal.plain.sasl.jaas.config={jaas}",
                    "listener.name.internal.scram-sha-512.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "super.users=User:admin",
                    "allow.everyone.if.no.acl.found=false",
                    f"log.dirs={d / 'logs'}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        return p

    def responsive(self, timeout: float = 5.0) -> bool:
        try:
            admin = _admin(self.settings.kafka_port, timeout)
            admin.list_topics()
            admin.close()
            return True
        except Exception:  # noqa: BLE001
            return False


def _admin(port: int, timeout: float = 10.0):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=f"127.0.0.1:{port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username="admin",
        sasl_plain_password=ADMIN_PW,
        request_timeout_ms=int(timeout * 1000),
        client_id="riskwatch-test-identity",
    )


def _apply_acls():
    spec = importlib.util.spec_from_file_location("apply_acls", ROOT / "deploy/kafka/apply_acls.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)  # dataclasses look their module up
    spec.loader.exec_module(sys.modules[spec.name])
    mod = sys.modules[spec.name]
    return mod


@pytest.fixture(scope="module")
def acl_broker(broker, tmp_path_factory) -> Iterator[tuple[int, dict[str, str]]]:
    """A SASL broker with the users and ACLs of deploy/kafka/acls.yaml; yields (port, user → password)."""
    data = tmp_path_factory.mktemp("sasl-kafka")
    s = broker.model_copy(update=dict(kafka_port=free_port(), kafka_controller_port=free_port(), kafka_data_dir=data))
    b = SaslBroker(s)
    b.start(timeout=180, log=lambda *_: None)
    try:
        acls = _apply_acls()
        plan = acls.plan(ROOT / "deploy/kafka/acls.yaml")
        passwords = {u: f"pw-{u}-{uuid.uuid4().hex[:6]}" for u in plan.passwords}
        old = {env: os.environ.get(env) for env in plan.passwords.values()}
        os.environ.update({plan.passwords[u]: pw for u, pw in passwords.items()})
        try:
            acls.apply(plan, f"127.0.0.1:{s.kafka_port}", ADMIN_PW)
        finally:
            for env, v in old.items():
                if v is None:
                    os.environ.pop(env, None)
                else:
                    os.environ[env] = v
        from kafka.admin import NewTopic

        admin = _admin(s.kafka_port)
        names = ["events.sensor", "events.complaint", *SENDER_KINDS]
        names += [sender_topic(k, d) for k in SENDER_KINDS for d in ("amr", "police", "taskforce")]
        admin.create_topics([NewTopic(t, 1, 1) for t in names])
        admin.close()
        yield s.kafka_port, passwords
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)


def _write(port: int, user: str, password: str, topic: str) -> str:
    """Produce one message as ``user``: "ok" or the error's class name."""
    from kafka import KafkaProducer

    p = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=password,
        max_block_ms=15000,
        request_timeout_ms=15000,
        acks="all",
        retries=0,
    )
    try:
        p.send(topic, key=b"E1", value=b"{}").get(timeout=20)
        return "ok"
    except Exception as e:  # noqa: BLE001
        return type(e).__name__
    finally:
        p.close(timeout=5)


def test_only_a_department_may_write_its_topics(acl_broker):
    port, pw = acl_broker
    w = lambda user, topic: _write(port, user, pw[user], topic)  # noqa: E731
    assert w("dept-amr", "events.feedback.amr") == "ok"
    assert w("dept-amr", "events.feedback.police") == "TopicAuthorizationFailedError"  # A cannot answer as B
    assert w("dept-amr", "events.feedback.taskforce") == "TopicAuthorizationFailedError"  # nor take the office's 改派
    assert w("dept-amr", "events.task.police") == "TopicAuthorizationFailedError"
    assert w("dept-police", "events.inspection.police") == "ok"
    assert w("dept-taskforce", "events.task.taskforce") == "ok"  # the office's spot-check draws
    for old in SENDER_KINDS:  # the old shared topics: nobody but the worker any more
        assert w("dept-amr", old) == "TopicAuthorizationFailedError", old
        assert w("workbench", old) == "TopicAuthorizationFailedError", old


def test_the_workbench_and_the_sources_write_only_their_topics(acl_broker):
    port, pw = acl_broker
    w = lambda user, topic: _write(port, user, pw[user], topic)  # noqa: E731
    for dept in ("amr", "police", "taskforce"):  # the logged-in user's department, whichever it is
        assert w("workbench", f"events.feedback.{dept}") == "ok"
    assert w("workbench", "events.task.amr") == "TopicAuthorizationFailedError"
    assert w("workbench", "events.sensor") == "TopicAuthorizationFailedError"
    assert w("iot", "events.sensor") == "ok"
    assert w("iot", "events.complaint") == "TopicAuthorizationFailedError"
    assert w("iot", "events.feedback.amr") == "TopicAuthorizationFailedError"
    assert w("hotline", "events.complaint") == "ok"
    assert w("hotline", "events.feedback.police") == "TopicAuthorizationFailedError"
    assert w("simulator", "events.feedback.amr") == "TopicAuthorizationFailedError"
