"""One typed settings object for the whole product.

Values come from (highest first): keyword arguments, environment variables prefixed
``RISKWATCH_`` (e.g. ``RISKWATCH_KAFKA_BOOTSTRAP=127.0.0.1:9092``), a ``.env``-style file named by
``RISKWATCH_ENV_FILE`` (default ``riskwatch.env`` in the working directory, optional), then the
defaults below. Every field is documented by its description; ``riskwatch settings`` prints them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(__file__).parent / "data"


WORKER_SERVICE = "riskwatch-worker"  # the "service" field of a worker's GET /identity


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RISKWATCH_",
        env_file=os.environ.get("RISKWATCH_ENV_FILE", "riskwatch.env"),
        env_file_encoding="utf-8",
        extra="forbid",
    )

    # --- Kafka ---------------------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:19092",
        description="Kafka bootstrap servers, host:port[,host:port]; unset: the local broker's port (kafka_port)",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="PLAINTEXT for the local broker; SASL_PLAINTEXT/SASL_SSL with per-service users in production",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when kafka_security_protocol is SASL_*"
    )
    kafka_sasl_username: str = Field("", description="SASL user of this service (e.g. riskwatch, simulator)")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password of this service (never logged)")
    topic_prefix: str = Field("", description="Prefix for every topic name (lets several deployments share a cluster)")
    partitions: int = Field(
        4, ge=1, le=1024, description="Partitions of each topic created at start-up (the unit of scale-out)"
    )
    replication: int = Field(1, ge=1, le=5, description="Replication factor of topics created at start-up")
    app_id: str = Field("riskwatch", description="Faust application id = Kafka consumer group")
    max_message_bytes: int = Field(
        65536, ge=1024, description="Payloads larger than this are refused to the dead-letter topic unparsed"
    )

    # --- Local broker (riskwatch kafka start|stop|status) ---------------------------------------
    kafka_home: Path = Field(
        Path.home() / ".cache" / "riskwatch" / "kafka",
        description="Where broker jars are cached (outside the work tree)",
    )
    kafka_data_dir: Path = Field(Path("var/kafka"), description="KRaft log directory of the local broker")
    kafka_port: int = Field(19092, ge=1, le=65535, description="Local broker PLAINTEXT port on 127.0.0.1")
    kafka_controller_port: int = Field(
        19093, ge=1, le=65535, description="Local broker KRaft controller port on 127.0.0.1"
    )

    # --- ClickHouse ----------------------------------------------------------------------------
    clickhouse_url: str = Field(
        "chdb://var/clickhouse",
        description=(
            "chdb://<dir> for the embedded engine (one process per directory) or http(s)://user:pass@host:port/db "
            "for a server"
        ),
    )
    clickhouse_database: str = Field("riskwatch", description="Database holding all riskwatch tables")
    sink_batch_rows: int = Field(2000, ge=1, description="A ClickHouse insert is flushed at this many rows ...")
    sink_batch_seconds: float = Field(1.0, gt=0, description="... or after this many seconds, whichever comes first")
    sink_retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest back-off between retries of a failed ClickHouse insert"
    )

    # --- Worker --------------------------------------------------------------------------------
    web_port: int = Field(6066, ge=1, le=65535, description="Worker HTTP port: /query (read-only SQL), /metrics")
    web_host: str = Field("127.0.0.1", description="Worker HTTP bind address")
    state_dir: Path = Field(Path("var/state"), description="Faust table store directory")
    state_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb",
        description=(
            "Where the worker keeps entity states: rocksdb (on disk under state_dir, changelog as backup: a restart "
            "on the same state_dir reads only the changelog tail) or memory (everything in RAM, the whole changelog "
            "re-read on every start; tests, small installs)"
        ),
    )
    state_cache_entries: int = Field(
        10_000,
        ge=0,
        description=(
            "Entity states kept as live objects in front of the state store (~10 KB of RSS each; a miss costs a "
            "RocksDB read and an unpickle, ~45 µs): memory vs. CPU (docs/throughput.md section 4)"
        ),
    )
    commit_interval_seconds: float = Field(
        5.0,
        ge=0,
        description=(
            "Processed batches are committed (ClickHouse rows, changelog, offsets) at most this often, coalesced; "
            "alerts do not wait for it, and batches with a person's action (feedback, inspection) commit at once"
        ),
    )
    offset_commit_interval_seconds: float = Field(
        2.8,
        gt=0,
        description=(
            "How often the worker's Kafka consumer commits the offsets its commits released (Faust's "
            "broker_commit_interval); the consumer group's lag falls this much after the rows are stored"
        ),
    )
    faust_fastpath: bool = Field(
        True,
        description=(
            "Deliver fetched messages to streams without Faust's four tasks per message "
            "(streams/runtime/faust_fastpath.py); "
            "off only to measure the difference"
        ),
    )
    eviction_interval_seconds: float = Field(
        3600.0, gt=0, description="How often the worker looks for entities to evict"
    )
    stall_exit_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "A batch stuck this long at one stage (other than a ClickHouse write, which waits for the server on "
            "purpose) makes the worker log where and exit (code 70) so the supervisor restarts it and the batch is "
            "redelivered"
        ),
    )
    commit_stall_exit_seconds: float = Field(
        180.0,
        gt=0,
        description=(
            "Input waiting while this worker's committed offsets do not move for this long (and no batch is waiting "
            "for ClickHouse) makes it log its consumer state and a task dump and exit (code 70) for a restart, which "
            "redelivers from the last commit (Faust can leave a skipped message unacknowledged after a rebalance; "
            "its commits then never move again)"
        ),
    )
    lifecycle_path: Path = Field(
        DATA_DIR / "lifecycle.yaml",
        description="Alert life cycle policy: pending, hysteresis, flapping, deadlines, urging, escalation",
    )
    lifecycle_tick_seconds: float = Field(
        30.0,
        gt=0,
        description="How often the worker checks alert deadlines (urging, escalation), pending periods and closing",
    )
    lifecycle_clock: Literal["wall", "event"] = Field(
        "wall",
        description="Clock of alert deadlines: 'wall' (production: departments answer in real time) or 'event' "
        "(the latest event time the worker has seen: replays and the demo's compressed simulated days)",
    )
    audit_chain: bool = Field(
        True,
        description=(
            "Evidence bundles and the tamper-evident audit chain of alert_history (docs/evidence-and-audit.md); off "
            "only to measure their cost"
        ),
    )
    audit_anchor_seconds: float = Field(
        3600.0,
        gt=0,
        description=(
            "How often each worker publishes a Merkle root over its partitions' new audit-chain heads to "
            "audit.anchors (and ClickHouse audit_anchors); it also anchors on shutdown"
        ),
    )
    township_surges: bool = Field(
        True, description="Run the township-surge agent (Faust group_by repartition by township)"
    )
    township_surge_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Surprise of a township's complaint/video count that raises a township_surge notice",
    )
    entity_ttl_days: float = Field(
        90.0, gt=0, description="Per-entity detector state is evicted after this many days of silence"
    )
    catalog_path: Path = Field(
        DATA_DIR / "catalog.yaml", description="Supervision catalog (departments, entity kinds, items)"
    )
    rules_path: Path = Field(DATA_DIR / "rules.yaml", description="Regulatory threshold rules (data)")
    timezone: str = Field("Asia/Shanghai", description="Time zone assumed for timestamps without one")

    # --- Notification delivery (riskwatch notify, riskwatch alertmanager) -------------------------
    alertmanager_url: str = Field(
        "http://127.0.0.1:19094", description="Alertmanager the bridge posts to (POST /api/v2/alerts)"
    )
    alertmanager_port: int = Field(
        19094, ge=1, le=65535, description="Port of the local Alertmanager (riskwatch alertmanager start) on 127.0.0.1"
    )
    alertmanager_data_dir: Path = Field(
        Path("var/alertmanager"), description="Local Alertmanager: config, notification log, silences, pid and log file"
    )
    receivers_path: Path = Field(
        DATA_DIR / "receivers.yaml",
        description="The county's receivers file: each department's channels (robots, email, webhook, 企业微信 app)",
    )
    robot_port: int = Field(
        19095,
        ge=1,
        le=65535,
        description="Robot adapter (企业微信/钉钉 group robots) port on 127.0.0.1; Alertmanager's webhook posts to it",
    )
    notify_port: int = Field(19096, ge=1, le=65535, description="Bridge (riskwatch notify) /metrics port")
    notify_host: str = Field("127.0.0.1", description="Bridge /metrics bind address")
    notify_retry_max_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "Longest back-off between attempts while Alertmanager is unreachable (the bridge waits, loses nothing)"
        ),
    )
    notify_hold_seconds: float = Field(
        900.0,
        ge=60,
        description=(
            "How long the bridge keeps re-sending a posted alert to Alertmanager (Alertmanager keeps alerts in "
            "memory only; a restarted one gets them again) and its endsAt window; longer than any delivery retry"
        ),
    )
    notify_stall_exit_seconds: float = Field(
        120.0,
        gt=0,
        description=(
            "Notifications waiting while the bridge commits nothing for this long (Alertmanager up) make it exit "
            "(code 70) for a restart (its Kafka consumer is stuck); nothing is lost"
        ),
    )
    notify_resend_seconds: float = Field(
        30.0, gt=0, description="How often held alerts are re-sent to Alertmanager (as Prometheus does)"
    )
    prometheus_port: int = Field(
        19097, ge=1, le=65535, description="Port of the local Prometheus (riskwatch prometheus start) on 127.0.0.1"
    )
    prometheus_scrape_seconds: float = Field(15.0, gt=0, description="Prometheus scrape and rule evaluation interval")

    # --- Workbench (riskwatch web): the departments' and the public's web pages ----------------
    web_public_url: str = Field(
        "",
        description=(
            "Base URL under which people reach the workbench; every alert revision carries <this>/alerts/<alert_id> "
            "(empty: http://<workbench_host>:<workbench_port>)"
        ),
    )
    workbench_host: str = Field("127.0.0.1", description="Workbench (riskwatch web) bind address")
    workbench_port: int = Field(8080, ge=1, le=65535, description="Workbench (riskwatch web) HTTP port")
    workbench_dir: Path = Field(
        Path("var/web"), description="Workbench accounts (argon2 hashes), session secret, attachments, pid and log"
    )
    workbench_cookie_secure: bool = Field(
        False, description="Mark the session cookie Secure (set true when the workbench is served over HTTPS)"
    )
    workbench_session_hours: float = Field(8.0, gt=0, description="A login lasts this long (a working day)")
    workbench_max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest attachment accepted (413 beyond)"
    )
    workbench_max_form_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request body of any other route (forms): 413 beyond, before reading further",
    )
    workbench_idle_minutes: float = Field(
        30.0,
        gt=0,
        description="A session unused this long ends (server-side; logout and `users disable` end it at once)",
    )
    workbench_trusted_proxy: str = Field(
        "",
        description=(
            "Address(es) of the TLS-terminating reverse proxy, comma-separated: X-Forwarded-For/-Proto are "
            "believed only from them; https then marks cookies Secure"
        ),
    )
    workbench_login_free_failures: int = Field(
        5,
        ge=1,
        description="Failed logins of one account from one IP before each further attempt waits (30 s, doubling)",
    )
    workbench_login_ip_free_failures: int = Field(
        20,
        ge=1,
        description=(
            "Failed logins from one IP (any accounts) before each further attempt from it waits (30 s, doubling)"
        ),
    )
    workbench_login_max_delay_seconds: float = Field(
        900.0, gt=0, description="Longest wait between login attempts the throttle imposes"
    )
    workbench_public_cache_seconds: float = Field(
        60.0, ge=0, description="Public pages' data is read at most once this often"
    )
    workbench_public_rate_per_minute: int = Field(
        120, ge=1, description="Requests per minute one IP may make to the public pages (429 beyond)"
    )
    workbench_nice: int = Field(
        10,
        ge=0,
        le=19,
        description=(
            "CPU niceness of `riskwatch web run`: when the host's cores are contended the worker's pipeline goes first"
        ),
    )

    # --- HTTP ingest gateway (riskwatch gateway; docs/sources.md) --------------------------------
    gateway_host: str = Field("127.0.0.1", description="Ingest gateway (riskwatch gateway) bind address")
    gateway_port: int = Field(8090, ge=1, le=65535, description="Ingest gateway HTTP port")
    gateway_dir: Path = Field(
        Path("var/gateway"), description="Source keys (SHA-256 hashes) and nonces (SQLite), the gateway's pid and log"
    )
    gateway_max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body of POST /v1/{kind} (413 beyond, before parsing)"
    )
    gateway_signature_window_seconds: int = Field(
        300,
        ge=10,
        description="A signed request's X-Timestamp may be this far from now; its nonce is remembered twice as long",
    )
    gateway_max_age_hours: float = Field(
        72.0, gt=0, description="Events older than this are refused by the gateway (late data goes through imports)"
    )
    gateway_kafka_timeout_seconds: float = Field(
        10.0, gt=0, description="How long the gateway waits for Kafka's acknowledgement before answering 503"
    )
    gateway_snapshot_max_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="Largest video snapshot the gateway fetches as evidence"
    )
    gateway_snapshot_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one snapshot fetch")
    gateway_snapshot_extra_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts every source may fetch snapshots from besides its mapping's snapshot_hosts (a county's "
        "own image proxy; the tests' local vendor). Empty by default: the shipped mappings allow no loopback host",
    )

    # --- Simulator -----------------------------------------------------------------------------
    sim_seed: int = Field(7, description="Simulator random seed")

    # --- City platform docking (riskwatch city-link; docs/city-link.md) --------------------------
    citylink_city_bootstrap: str = Field(
        "127.0.0.1:29092", description="The city platform's Kafka bootstrap servers, host:port[,host:port]"
    )
    citylink_county_alias: str = Field(
        "county",
        pattern=r"^[a-z][a-z0-9_-]{0,30}$",
        description="MirrorMaker 2 alias of the county cluster: the city sees <alias>.<topic>",
    )
    citylink_city_alias: str = Field(
        "city",
        pattern=r"^[a-z][a-z0-9_-]{0,30}$",
        description="MirrorMaker 2 alias of the city cluster: the county sees <alias>.<topic>",
    )
    citylink_topics: list[str] = Field(
        [
            "alerts.all",
            "alerts.events",
            "events.inspection.*",
            "inspection.plans",
            "events.registry",
            "audit.anchors",
            "office.city",
        ],
        description=(
            "County topics sent to the city (without topic_prefix); each leaves as its masked copy "
            "<prefix>masked.<topic>. A family <kind>.* (events.inspection.*) is every department's <kind>.<dept>, "
            "sent as the one copy <prefix>masked.<kind>"
        ),
    )
    citylink_redact_fields: list[str] = Field(
        ["inspectors"],
        description="JSON fields whose string values are replaced by '***' before leaving (people's names)",
    )
    citylink_city_task_topic: str = Field(
        "events.task", description="The city's topic of tasks issued to the county (on the city cluster)"
    )
    citylink_dir: Path = Field(
        Path("var/citylink"), description="MirrorMaker 2 properties, pid files and logs of `riskwatch city-link start`"
    )
    citylink_offset_flush_ms: int = Field(
        500,
        ge=100,
        description=(
            "How often MirrorMaker commits its source positions: with exactly_once, how often its transaction is "
            "committed (city readers see records then); without, what a kill -9 replays at most"
        ),
    )
    citylink_exactly_once: bool = Field(
        True,
        description=(
            "MirrorMaker 2 writes records and its positions in one transaction (no replays after a crash); the city "
            "must read with isolation.level=read_committed"
        ),
    )
    citylink_city_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How MirrorMaker reaches the city's cluster (the city issues the user and password)"
    )
    citylink_city_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism on the city's cluster"
    )
    citylink_city_sasl_username: str = Field("", description="The county's SASL user on the city's cluster")
    citylink_city_sasl_password: SecretStr = Field(
        SecretStr(""), description="Its password (never logged; written only to the 0600 MirrorMaker properties)"
    )
    citylink_city_properties: dict[str, str] = Field(
        {},
        description=(
            "Further client properties for the city's cluster, e.g. "
            '{"ssl.truststore.location": "..."} (written as <city alias>.<key> = <value>)'
        ),
    )

    # --- MQTT devices (riskwatch mqtt; docs/mqtt.md) ---------------------------------------------
    mqtt_host: str = Field("127.0.0.1", description="MQTT broker host the bridge connects to")
    mqtt_port: int = Field(
        19883, ge=1, le=65535, description="MQTT broker (mosquitto) port; `mqtt start` binds loopback"
    )
    mqtt_data_dir: Path = Field(
        Path("var/mqtt"), description="mosquitto's generated config, password file, ACL, persistence and logs"
    )
    mqtt_bridge_user: str = Field(
        "riskwatch-bridge", description="The bridge's MQTT login (its own user, not a device)"
    )
    mqtt_bridge_password: SecretStr = Field(
        SecretStr(""),
        description="The bridge's MQTT password (empty: the one `mqtt start` wrote to <mqtt_data_dir>/bridge.secret)",
    )
    mqtt_client_id: str = Field(
        "riskwatch-bridge", description="Fixed MQTT client id of the bridge: its persistent session on the broker"
    )
    mqtt_shared_group: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_-]{0,32}$",
        description="Several bridges share the telemetry as $share/<group>/devices/+/telemetry (empty: one bridge)",
    )
    mqtt_batch_seconds: float = Field(
        0.2, gt=0, le=1.0, description="The bridge gathers readings per entity this long into one sensor_batch (≤ 1 s)"
    )
    mqtt_registry_refresh_seconds: float = Field(
        30.0, gt=0, description="How often the bridge re-reads the device registry (ClickHouse `devices`)"
    )
    mqtt_bridge_port: int = Field(19884, ge=1, le=65535, description="Bridge /metrics port on 127.0.0.1 (health)")

    # --- Fault injection -----------------------------------------------------------------------
    fault_clickhouse_down_file: Path | None = Field(
        None,
        description=(
            "Drills/tests: while this file exists, every ClickHouse insert fails as if the server were unreachable"
        ),
    )

    fault_failpoint_dir: Path | None = Field(
        None,
        description=(
            "Drills/soak: failpoints are read from this directory (off when unset); a file clickhouse_insert "
            "holding N makes the next N ClickHouse insert attempts fail (riskwatch soak writes it)"
        ),
    )

    @model_validator(mode="after")
    def _local_bootstrap(self) -> Settings:
        # RISKWATCH_KAFKA_PORT alone moves the local broker: its clients follow it, unless told otherwise
        if "kafka_bootstrap" not in self.model_fields_set:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        return self

    @field_validator("kafka_bootstrap", "citylink_city_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {v!r}")
        return v

    @field_validator("fault_clickhouse_down_file", "fault_failpoint_dir", mode="before")
    @classmethod
    def _unset_path(cls, v):  # RISKWATCH_FAULT_CLICKHOUSE_DOWN_FILE="" or "None" means unset, not "." / "./None"
        return None if isinstance(v, str) and v.strip() in ("", "None") else v

    @field_validator("clickhouse_url")
    @classmethod
    def _ch_url(cls, v: str) -> str:
        if not v.startswith(("chdb://", "http://", "https://")):
            raise ValueError(f"must start with chdb://, http:// or https://, got {v!r}")
        return v

    @property
    def workbench_url(self) -> str:
        """The workbench's base URL for links: ``web_public_url``, or where ``riskwatch web`` listens."""
        return (self.web_public_url or f"http://{self.workbench_host}:{self.workbench_port}").rstrip("/")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def data_location(self) -> str:
        """Where this configuration's ClickHouse data lives: the absolute chDB directory, or the
        server URL without credentials. Part of the worker's identity (``GET /identity``).

        >>> Settings(clickhouse_url="https://writer:pw@ch.example:8443/riskwatch", _env_file=None).data_location()
        'https://ch.example:8443/riskwatch'
        """
        url = self.clickhouse_url
        if url.startswith("chdb://"):
            return "chdb://" + str(Path(url[len("chdb://") :]).resolve())
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        host = parts.hostname or ""
        return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")))

    def worker_identity(self) -> dict:
        """What a worker with these settings answers on ``GET /identity``; ``riskwatch query``
        compares it with its own before it trusts the server on the web port."""
        return {"service": WORKER_SERVICE, "app_id": self.app_id, "data": self.data_location()}

    def kafka_kwargs(self) -> dict:
        """Connection arguments for kafka-python clients (admin, producer, consumer)."""
        kw: dict = {"bootstrap_servers": self.kafka_bootstrap}
        if self.kafka_security_protocol != "PLAINTEXT":
            kw.update(
                security_protocol=self.kafka_security_protocol,
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        return kw

    def faust_credentials(self):
        """Faust ``broker_credentials`` (None for PLAINTEXT)."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        import faust

        return faust.SASLCredentials(
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password.get_secret_value(),
            mechanism=self.kafka_sasl_mechanism,
        )


def load_settings(**overrides) -> Settings:
    """Settings from the environment; a readable error (which variable, what was wrong) on failure."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"])
            lines.append(f"  RISKWATCH_{field.upper()}: {err['msg']} (got {err.get('input')!r})")
        raise SystemExit(
            "riskwatch: invalid settings:\n"
            + "\n".join(lines)
            + "\nFix the environment variable(s) above or riskwatch.env."
        ) from None
