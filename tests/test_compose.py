"""docker-compose.yml, the Kafka ACL data and the ClickHouse users, checked without a Docker engine.

The SASL settings the workers need (RISKWATCH_KAFKA_SECURITY_PROTOCOL, ..._SASL_MECHANISM,
..._SASL_USERNAME, ..._SASL_PASSWORD) are checked against ``Settings.model_fields`` like every
other RISKWATCH_* variable: this test fails until they exist in riskwatch/settings.py.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from riskwatch.domain.catalog import load_catalog
from riskwatch.settings import Settings
from streams.runtime import topics as T

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
WORKERS = [n for n, s in SERVICES.items() if s.get("command", [])[:2] == ["riskwatch", "worker"]]
RISKWATCH_SERVICES = [*WORKERS, "simulator"]
SASL_FIELDS = ("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
GENERATED_DIRS = {"dashboards/provisioning", "dashboards/json"}  # written by dashboards/build.py


def _acls():
    spec = importlib.util.spec_from_file_location("apply_acls", ROOT / "deploy/kafka/apply_acls.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


ACLS = _acls()
PLAN = ACLS.plan(ROOT / "deploy/kafka/acls.yaml")
CATALOG = load_catalog()


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_services_and_images():
    assert {"kafka", "kafka-init", "clickhouse", "grafana", "simulator"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"] == "apache/kafka:4.1.1"
    for name in ("clickhouse", "grafana"):
        image = SERVICES[name]["image"]
        assert re.fullmatch(r"[a-z/-]+:\d+(\.\d+)+", image), f"{name}: pin the image tag, got {image}"
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana:")
    assert SERVICES["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert _env("grafana")["GF_INSTALL_PLUGINS"] == "grafana-clickhouse-datasource"
    assert SERVICES["simulator"]["profiles"] == ["simulator"]
    assert SERVICES["simulator"]["command"][:2] == ["riskwatch", "simulate"]


def test_two_worker_replicas_share_one_group():
    assert len(WORKERS) == 2, WORKERS
    envs = [_env(w) for w in WORKERS]
    for key in ("RISKWATCH_APP_ID", "RISKWATCH_PARTITIONS", "RISKWATCH_KAFKA_BOOTSTRAP", "RISKWATCH_CLICKHOUSE_URL"):
        assert len({e[key] for e in envs}) == 1, key  # same group, same partitions: they split them
    for w in WORKERS:
        assert "build" in SERVICES[w] and (ROOT / SERVICES[w]["build"]["dockerfile"]).is_file()
        e = _env(w)
        assert e["RISKWATCH_WEB_HOST"] == "0.0.0.0"
        assert e["RISKWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert re.fullmatch(
            r"http://riskwatch:\$\{CLICKHOUSE_RISKWATCH_PASSWORD:\?[^}]+\}@clickhouse:8123/riskwatch",
            e["RISKWATCH_CLICKHOUSE_URL"],
        )
        assert e["RISKWATCH_KAFKA_SASL_USERNAME"] == "riskwatch"
    # distinct state volumes
    vols = [tuple(SERVICES[w]["volumes"]) for w in WORKERS]
    assert len(set(vols)) == 2


def test_every_service_has_a_healthcheck():
    for name, s in SERVICES.items():
        hc = s.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no health check"


def test_riskwatch_env_vars_are_settings_fields():
    fields = set(Settings.model_fields)
    missing_sasl = [f for f in SASL_FIELDS if f not in fields]
    assert not missing_sasl, f"riskwatch/settings.py lacks {missing_sasl}: the compose workers need " + ", ".join(
        f"RISKWATCH_{f.upper()}" for f in SASL_FIELDS
    )
    for name in RISKWATCH_SERVICES:
        for key in _env(name):
            if key.startswith("RISKWATCH_"):
                assert key[len("RISKWATCH_") :].lower() in fields, f"{name}: {key} is not a riskwatch setting"


def test_riskwatch_env_values_validate():
    """The literal (non-secret) values pass Settings validation."""
    env = _env(WORKERS[0])
    kw = {}
    for key, value in env.items():
        field = key[len("RISKWATCH_") :].lower()
        if field in Settings.model_fields and "${" not in value:
            kw[field] = value
    kw["clickhouse_url"] = "http://riskwatch:x@clickhouse:8123/riskwatch"
    s = Settings(_env_file=None, **kw)
    assert s.web_host == "0.0.0.0" and s.topic_prefix == "" and s.app_id == "riskwatch"


def test_secrets_are_required_variables_not_values():
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for m in re.finditer(r"^\s+([A-Z_]*PASSWORD[A-Z_]*):\s*(\S.*)$", text, re.M):
        value = m.group(2)
        assert value.startswith("${") and ":?" in value, f"{m.group(1)} must be ${{VAR:?...}}, got {value}"
    example = (ROOT / "deploy/.env.example").read_text(encoding="utf-8")
    needed = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    for var in needed:
        assert re.search(rf"^{var}=\s*$", example, re.M), f"{var} missing (or given a value) in deploy/.env.example"


def test_ports():
    def published(name):
        return [str(p) for p in SERVICES[name].get("ports", [])]

    assert any(p.endswith(":29092") for p in published("kafka"))
    assert any(p.endswith(":3000") for p in published("grafana"))
    assert all(p.startswith("127.0.0.1:") for p in published("clickhouse")), "ClickHouse only on the host's loopback"
    for name in ("kafka-init", *WORKERS, "simulator"):
        assert not published(name)
    assert "29092" in _env("kafka")["KAFKA_LISTENERS"] and "9092" in _env("kafka")["KAFKA_LISTENERS"]
    assert "RISKWATCH_WEB_PORT" in _env(WORKERS[0]) and _env(WORKERS[0])["RISKWATCH_WEB_PORT"] == "6066"
    assert "6066" in " ".join(SERVICES[WORKERS[0]]["healthcheck"]["test"])


def test_mounted_paths_exist_and_volumes_are_named():
    named = set(COMPOSE.get("volumes", {}))
    for name, s in SERVICES.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                rel = src.removeprefix("./").rstrip("/")
                if rel in GENERATED_DIRS and not (ROOT / rel).exists():
                    # not generated yet: the generator must write exactly this directory
                    builder = (ROOT / "dashboards/build.py").read_text(encoding="utf-8")
                    assert rel.split("/")[-1] in builder, (
                        f"{name}: {src} is neither present nor written by dashboards/build.py"
                    )
                    continue
                assert (ROOT / rel).exists(), f"{name}: {src} does not exist"
            else:
                assert src in named, f"{name}: volume {src} is not a named volume"
    grafana = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"])
    assert grafana["./dashboards/provisioning"] == "/etc/grafana/provisioning"
    assert grafana["./dashboards/json"] == "/var/lib/grafana/dashboards"


def test_kafka_sasl_and_authorizer():
    e = _env("kafka")
    protocols = dict(x.split(":") for x in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, protocols  # no unauthenticated listener
    assert e["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == PLAN.mechanism == "SCRAM-SHA-512"
    assert e["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert e["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false" and e["KAFKA_SUPER_USERS"] == "User:admin"
    assert _env(WORKERS[0])["RISKWATCH_KAFKA_SASL_MECHANISM"] == PLAN.mechanism


# --- ACLs ------------------------------------------------------------------------------------------
def test_every_catalog_department_has_a_user_with_a_password_variable():
    assert set(PLAN.departments) == set(CATALOG.departments)
    init = _env("kafka-init")
    for user in PLAN.departments.values():
        env = PLAN.passwords[user]
        assert init.get(env, "").startswith(f"${{{env}:?"), f"kafka-init lacks {env} for {user}"
    for user, env in PLAN.passwords.items():  # every user of acls.yaml, the sources' included
        assert init.get(env, "").startswith(f"${{{env}:?"), f"kafka-init lacks {env} for {user}"


def test_each_department_reads_only_its_own_topic():
    for code, user in PLAN.departments.items():
        reads = PLAN.allowed(user, "read")
        assert [(b.pattern, b.name) for b in reads] == [("literal", T.dept_topic(code))], (user, reads)
        writes = PLAN.allowed(user, "write")
        assert [(b.pattern, b.name) for b in writes] == [
            ("literal", f"events.feedback.{code}"),
            ("literal", f"events.inspection.{code}"),
            ("literal", f"events.task.{code}"),
            ("literal", T.notice_topic(code)),  # 认领 / 有异议 / 督导单 answers
        ], (user, writes)
        assert not [b for b in PLAN.bindings if b.user == user and b.resource in ("cluster", "transactional_id")]
        assert not [b for b in PLAN.bindings if b.user == user and b.operation == "all"]
        groups = PLAN.allowed(user, "read", "group")
        assert groups and all(g.name.startswith(f"dept-{code}") for g in groups)


def test_worker_user_covers_every_riskwatch_topic_and_its_group():
    def granted(topic: str) -> bool:
        return any(
            b.name == topic if b.pattern == "literal" else topic.startswith(b.name)
            for b in PLAN.allowed("riskwatch", "all")
        )

    s = Settings(_env_file=None)
    for topic in T.all_topics(s, CATALOG):
        assert granted(topic), topic
    assert granted("riskwatch-alert_state-changelog")  # Faust internal topics: <app_id>-...
    groups = PLAN.allowed("riskwatch", "all", "group")
    assert any(_env(WORKERS[0])["RISKWATCH_APP_ID"].startswith(g.name) for g in groups)
    # the simulator writes input topics only
    assert {b.operation for b in PLAN.bindings if b.user == "simulator" and b.resource == "topic"} == {
        "write",
        "describe",
    }


# --- ClickHouse users --------------------------------------------------------------------------------
def test_clickhouse_analyst_is_read_only():
    root = ET.parse(ROOT / "deploy/clickhouse/users.d/riskwatch.xml").getroot()
    users = root.find("users")
    analyst = users.find("analyst")
    profile = analyst.findtext("profile")
    assert root.find(f"profiles/{profile}/readonly").text == "1"
    grants = [q.text for q in analyst.findall("grants/query")]
    assert grants and all(g.startswith(("GRANT SELECT", "GRANT SHOW")) for g in grants)
    assert analyst.find("password").get("from_env") == "CLICKHOUSE_ANALYST_PASSWORD"
    writer = users.find("riskwatch")
    assert writer.find("password").get("from_env") == "CLICKHOUSE_RISKWATCH_PASSWORD"
    ch = _env("clickhouse")
    assert "CLICKHOUSE_ANALYST_PASSWORD" in ch and "CLICKHOUSE_RISKWATCH_PASSWORD" in ch
    assert _env("grafana")["CLICKHOUSE_USER"] == "analyst"


# --- docker compose config (only this needs the client) -------------------------------------------
def _compose_cmd() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config(tmp_path):
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no `docker compose` client on this machine (the YAML checks above still ran)")
    env_file = tmp_path / "test.env"
    lines = [
        re.sub(r"=\s*$", "=test-secret", ln)
        for ln in (ROOT / "deploy/.env.example").read_text(encoding="utf-8").splitlines()
    ]
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = subprocess.run(
        [
            *cmd,
            "-f",
            str(ROOT / "docker-compose.yml"),
            "--env-file",
            str(env_file),
            "--profile",
            "simulator",
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    # a missing secret is refused
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    r = subprocess.run(
        [*cmd, "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(empty), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode != 0 and "set " in r.stderr


def test_web_service_runs_the_workbench_with_a_write_only_kafka_user():
    web = SERVICES["web"]
    assert web["command"] == ["riskwatch", "web", "run"]
    assert any(str(p).endswith(":8080") for p in web["ports"])
    e = _env("web")
    assert e["RISKWATCH_WORKBENCH_PORT"] == "8080" and e["RISKWATCH_WORKBENCH_HOST"] == "0.0.0.0"
    assert e["RISKWATCH_KAFKA_SASL_USERNAME"] == "workbench"
    for key in e:
        if key.startswith("RISKWATCH_"):
            assert key[len("RISKWATCH_") :].lower() in Settings.model_fields, key
    writes = {b.name for b in PLAN.bindings if b.user == "workbench" and b.resource == "topic"}
    uploads = {"events.complaint", "events.credit", "events.device", "events.unmatched", "deadletter"}  # office's
    assert writes == {"events.registry", "office.decisions", "office.city", "events.task.taskforce"} | uploads | {
        f"events.{k}.{d}" for k in ("feedback", "inspection", "notice") for d in CATALOG.departments
    }
    assert not PLAN.allowed("workbench", "read")
    assert "8080" in " ".join(web["healthcheck"]["test"])


# --- identity from the transport (docs/security.md "Which principal writes which topic") -------------
def _writers(topic: str) -> set[str]:
    return {
        b.user
        for b in PLAN.bindings
        if b.resource == "topic"
        and b.operation in ("write", "all")
        and (b.name == topic if b.pattern == "literal" else topic.startswith(b.name))
    }


def test_a_departments_topics_are_written_only_by_it_the_workbench_and_the_worker():
    from streams.engine.identity import SENDER_KINDS, sender_topic, sender_topics

    assert [c for c in PLAN.departments] == list(CATALOG.departments)  # the codes come from the catalog
    for code, user in PLAN.departments.items():
        for kind in SENDER_KINDS:
            topic = sender_topic(kind, code)
            allowed = {user, "riskwatch"}  # the worker's prefixed events.* (it creates and reads them)
            if kind != "events.task" or code == CATALOG.taskforce_office:  # the office's 派发 and 会商 tasks
                allowed.add("workbench")  # people's answers and results, to the logged-in user's department
            if kind == "events.inspection":
                allowed.add("simulator")  # demo profile only: it plays each department's inspection app
            assert _writers(topic) == allowed, (topic, _writers(topic))
    assert _writers("events.task.city") == {"citylink", "riskwatch"}
    assert set(sender_topics(CATALOG)) >= {sender_topic(k, c) for k in SENDER_KINDS for c in PLAN.departments}
    for old in SENDER_KINDS:  # the old shared topics: only the worker (nobody else may write them any more)
        assert _writers(old) == {"riskwatch"}, old


def test_each_source_writes_only_its_own_input_topic():
    for user, topic in (
        ("iot", "events.sensor"),
        ("video", "events.video"),
        ("hotline", "events.complaint"),
        ("registry", "events.registry"),
    ):
        writes = {b.name for b in PLAN.bindings if b.user == user and b.resource == "topic" and b.operation == "write"}
        assert writes == {topic}, (user, writes)
        assert not PLAN.allowed(user, "read")
        assert not [b for b in PLAN.bindings if b.user == user and b.operation == "all"]
