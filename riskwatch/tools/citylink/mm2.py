"""MirrorMaker 2's dedicated-mode properties, from the settings (``riskwatch city-link config``).

County -> city: only the masked copies the bridge writes; city -> county: the city's task topic;
DefaultReplicationPolicy (``<source alias>.<topic>`` on the target); exactly once
(``citylink_exactly_once``) with one transaction per ``citylink_offset_flush_ms``. The file may hold
SASL passwords, so :func:`write_properties` writes it with mode 0600.

>>> from riskwatch.settings import Settings
>>> text = mm2_properties(Settings(topic_prefix="x.", citylink_topics=["alerts.all"]))
>>> print(next(line for line in text.splitlines() if line.startswith("county->city.topics")))
county->city.topics = x\\\\.masked\\\\.alerts\\\\.all
"""

from __future__ import annotations

import re
from pathlib import Path

from riskwatch.settings import Settings
from riskwatch.tools.citylink.topics import masked_topic


def _regex(topic: str) -> str:
    """A topic name as an exact MM2 topic-filter regex, escaped for a .properties file
    (where a single backslash is itself an escape)."""
    return re.escape(topic).replace("\\", "\\\\")


def _sasl(alias: str, protocol: str, mechanism: str, user: str, password: str) -> list[str]:
    if protocol == "PLAINTEXT":
        return []
    module = (
        "org.apache.kafka.common.security.plain.PlainLoginModule"
        if mechanism == "PLAIN"
        else "org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    pw = password.replace("\\", "\\\\").replace('"', '\\"')  # JAAS quoting ...
    pw = pw.replace("\\", "\\\\")  # ... inside a .properties value, where a backslash is an escape too
    return [
        f"{alias}.security.protocol = {protocol}",
        f"{alias}.sasl.mechanism = {mechanism}",
        f'{alias}.sasl.jaas.config = {module} required username="{user}" password="{pw}";',
    ]


def mm2_properties(settings: Settings) -> str:
    """MirrorMaker 2 dedicated-mode properties: county -> city for the masked copies, city -> county
    for the city's tasks, DefaultReplicationPolicy (``<source alias>.<topic>``)."""
    s = settings
    c, y = s.citylink_county_alias, s.citylink_city_alias
    rf = s.replication
    out_topics = ", ".join(_regex(masked_topic(s, t)) for t in s.citylink_topics)
    lines = [
        "# MirrorMaker 2 (dedicated mode) for the county <-> city platform link; "
        "written by `riskwatch city-link config`",
        "# from riskwatch settings (RISKWATCH_CITYLINK_*). Edit the settings, not this file. See docs/city-link.md.",
        f"clusters = {c}, {y}",
        f"{c}.bootstrap.servers = {s.kafka_bootstrap}",
        f"{y}.bootstrap.servers = {s.citylink_city_bootstrap}",
    ]
    lines += _sasl(
        c,
        s.kafka_security_protocol,
        s.kafka_sasl_mechanism,
        s.kafka_sasl_username,
        s.kafka_sasl_password.get_secret_value(),
    )
    lines += _sasl(
        y,
        s.citylink_city_security_protocol,
        s.citylink_city_sasl_mechanism,
        s.citylink_city_sasl_username,
        s.citylink_city_sasl_password.get_secret_value(),
    )
    lines += [f"{y}.{k} = {v}" for k, v in sorted(s.citylink_city_properties.items())]
    lines += [
        "",
        "# county -> city: only the masked copies written by the city-link bridge (personal data masked)",
        f"{c}->{y}.enabled = true",
        f"{c}->{y}.topics = {out_topics}",
        "# city -> county: tasks issued by the city; the bridge re-keys them onto the county's events.task",
        f"{y}->{c}.enabled = true",
        f"{y}->{c}.topics = {_regex(s.citylink_city_task_topic)}",
        "",
        "# <source alias>.<topic> on the target; a topic never flows back to the cluster it came from",
        "replication.policy.class = org.apache.kafka.connect.mirror.DefaultReplicationPolicy",
        "replication.policy.separator = .",
        "sync.topic.configs.enabled = true",
        "sync.topic.acls.enabled = false",
        "refresh.topics.interval.seconds = 5",
        "# Checkpoints translate consumer-group offsets across the clusters (<source>.checkpoints.internal",
        "# on the target) for a consumer that fails over; groups are not synced into the target.",
        "emit.checkpoints.enabled = true",
        "emit.checkpoints.interval.seconds = 10",
        "sync.group.offsets.enabled = false",
        "emit.heartbeats.enabled = true",
        "emit.heartbeats.interval.seconds = 5",
        "",
        "# Positions of the source connector, committed to mm2-offsets.<source>.internal on the target:",
        "# a restart resumes from there; a kill -9 replays at most this interval (exact copies).",
        f"offset.flush.interval.ms = {s.citylink_offset_flush_ms}",
        *(
            [
                "# exactly once (KIP-618, dedicated mode since Kafka 3.5): records and source positions are "
                "written in one",
                "# transaction on the target; readers on the city must use isolation.level=read_committed",
                f"{y}.exactly.once.source.support = enabled",
                f"{c}.exactly.once.source.support = enabled",
                "# one transaction per interval, not per poll: a commit per small poll batch cannot keep up at 1,000/s",
                "transaction.boundary = interval",
                f"transaction.boundary.interval.ms = {s.citylink_offset_flush_ms}",
            ]
            if s.citylink_exactly_once
            else []
        ),
        "tasks.max = 1",
        f"replication.factor = {rf}",
        f"checkpoints.topic.replication.factor = {rf}",
        f"heartbeats.topic.replication.factor = {rf}",
        f"offset-syncs.topic.replication.factor = {rf}",
        f"offset.storage.replication.factor = {rf}",
        f"status.storage.replication.factor = {rf}",
        f"config.storage.replication.factor = {rf}",
        "# keep going while the city is unreachable: retry forever, never drop a record",
        f"{y}.producer.delivery.timeout.ms = 2147483647",
        f"{c}.producer.delivery.timeout.ms = 2147483647",
        "",
    ]
    return "\n".join(lines)


def write_properties(settings: Settings, path: Path) -> Path:
    """Write :func:`mm2_properties` to ``path`` (parents created), mode 0600: it may hold SASL passwords."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mm2_properties(settings), encoding="utf-8")
    path.chmod(0o600)
    return path
