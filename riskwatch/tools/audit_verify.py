"""`riskwatch audit verify`: every alert's audit chain against its second and third copies.

ClickHouse holds the chains (``alert_history``), but whoever can write ClickHouse can also delete
the newest rows of a chain, or edit a row and recompute every hash after it. So verify does not
trust ClickHouse alone. It compares each chain with:

1. **the chain itself**: every row's hash recomputed, every row linked to the one before, the first
   to the alert's evidence bundle (a row changed, a row missing in the middle, a row inserted);
2. **the alert's revisions**: each revision carries its chain head (``chain_seq``, ``chain_hash``),
   in ClickHouse ``alerts`` and in the ``alerts.all`` messages on Kafka ("revision 7 says the head
   is seq 21; the history ends at 19");
3. **the anchors**: Merkle roots over chain heads (``streams/runtime/anchors.py``), read from the
   Kafka topic ``audit.anchors`` (only the worker's principal writes it), from the city's mirrored
   copy where city-link runs, from ClickHouse ``audit_anchors``, and from RFC 3161 time stamps
   (``riskwatch audit notarise``) where there are any. Copies that disagree are named, and every
   anchored head must still be in the history with its hash.

:func:`check` is pure (rows in, findings out); :func:`verify` reads the rows and runs it. Each
finding is one line (``Finding``: alert id, seq, what happened).

>>> a = Anchor(0, 1000, "r" * 64, (("A1", 3, "h3"),), "kafka")
>>> a.where
'anchor of partition 0 at 1000 (audit.anchors on Kafka)'
>>> head_findings({"A1": Head(7, 21, "h21", "ClickHouse alerts")}, {"A1": [{"seq": 19, "hash": "h19"}]})[0].what
'revision 7 (ClickHouse alerts) says the head is seq 21; the history ends at 19 (the newest rows were deleted)'
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from riskwatch.settings import Settings
from schemas.audit import Finding, bundle_hash, verify_anchor, verify_bundle, verify_chain

ANCHORS_TOPIC = "audit.anchors"  # streams/runtime/topics.AUDIT_ANCHORS
ALERTS_TOPIC = "alerts.all"
SOURCES = {
    "clickhouse": "ClickHouse audit_anchors",
    "kafka": "audit.anchors on Kafka",
    "city": "the city's copy of audit.anchors",
    "tsa": "RFC 3161 time stamp",
}


@dataclass(frozen=True, slots=True)
class Anchor:
    """One anchor as one copy holds it."""

    partition: int
    at_ms: int
    root: str
    leaves: tuple[tuple[str, int, str], ...]
    source: str  # a key of SOURCES

    @property
    def key(self) -> tuple[int, int]:
        return (self.partition, self.at_ms)

    @property
    def where(self) -> str:
        return f"anchor of partition {self.partition} at {self.at_ms} ({SOURCES[self.source]})"

    @classmethod
    def of_record(cls, rec: Mapping[str, Any], source: str) -> Anchor:
        """From the record published on audit.anchors (``streams.runtime.anchors.build_anchor``)."""
        return cls(
            int(rec["partition"]),
            int(rec["anchored_at_ms"]),
            str(rec["root"]),
            tuple((str(a), int(s), str(h)) for a, s, h in rec["leaves"]),
            source,
        )


@dataclass(frozen=True, slots=True)
class Head:
    """The chain head one alert revision vouches for."""

    revision: int
    seq: int
    hash: str
    source: str  # "ClickHouse alerts" | "alerts.all on Kafka"


@dataclass(slots=True)
class Report:
    chains: int = 0
    rows: int = 0
    bundles: int = 0
    legacy: int = 0
    heads: int = 0
    anchors: dict[str, int] = field(default_factory=dict)  # source -> anchors read
    notes: list[str] = field(default_factory=list)  # what was not checked, and why
    findings: list[Finding] = field(default_factory=list)

    def summary(self) -> str:
        n = ", ".join(f"{v} from {SOURCES[k]}" for k, v in self.anchors.items()) or "none"
        return (
            f"checked {self.chains} alert chains ({self.rows} rows), {self.bundles} evidence bundles, "
            f"{self.heads} chain heads of alert revisions, anchors: {n}"
            + (f"; {self.legacy} rows written before the audit chain were skipped" if self.legacy else "")
        )


# --- the pure checks --------------------------------------------------------------------------------
def latest_heads(rows: Iterable[Mapping[str, Any]], source: str) -> dict[str, Head]:
    """Per alert, the head its newest chained revision vouches for (``alert_id, revision, chain_seq,
    chain_hash``; revisions without a chain head are left out)."""
    out: dict[str, Head] = {}
    for r in rows:
        seq = int(r.get("chain_seq") or 0)
        if seq <= 0:
            continue
        h = Head(int(r["revision"]), seq, str(r["chain_hash"]), source)
        cur = out.get(r["alert_id"])
        if cur is None or (h.seq, h.revision) > (cur.seq, cur.revision):
            out[r["alert_id"]] = h
    return out


def head_findings(heads: Mapping[str, Head], chains: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Finding]:
    """Each chain against the head its latest revision names: the newest rows missing, the head row
    rewritten (and the chain recomputed), or rows past the head that no revision vouches for."""
    out: list[Finding] = []
    for aid, h in sorted(heads.items()):
        rows = chains.get(aid, [])
        top = max((int(r["seq"]) for r in rows), default=0)
        said = f"revision {h.revision} ({h.source}) says the head is seq {h.seq}"
        if top < h.seq:
            ends = f"the history ends at {top}" if top else "the history has no rows"
            out.append(Finding(aid, h.seq, f"{said}; {ends} (the newest rows were deleted)"))
            continue
        stored = {str(r["hash"]) for r in rows if int(r["seq"]) == h.seq}
        if h.hash not in stored:
            out.append(
                Finding(
                    aid,
                    h.seq,
                    f"{said} with hash {h.hash[:16]}…; the history's row seq {h.seq} hashes to "
                    f"{', '.join(sorted(x[:16] + '…' for x in stored))} (rows rewritten and the chain recomputed)",
                )
            )
        elif top > h.seq:
            out.append(
                Finding(aid, top, f"{said}; the history goes on to seq {top} (rows inserted after the last revision)")
            )
    return out


def anchor_findings(anchors: Iterable[Anchor], heads: Mapping[tuple[str, int], set[str]]) -> list[Finding]:
    """The copies of each anchor against one another (the Kafka copy is the reference, then the
    city's), and every distinct anchor's leaves against the history (``schemas.audit.verify_anchor``)."""
    by_key: dict[tuple[int, int], dict[str, Anchor]] = {}
    for a in anchors:
        by_key.setdefault(a.key, {})[a.source] = a
    out: list[Finding] = []
    for _key, copies in sorted(by_key.items()):
        ref = copies.get("kafka") or copies.get("city")
        if ref is not None:
            for src, a in copies.items():
                if a is ref:
                    continue
                if src == "city" and "*" in a.root:
                    continue  # masked in transit (a digit run that looked like a phone number): not comparable
                if a.root != ref.root:
                    out.append(
                        Finding(
                            "",
                            0,
                            f"{a.where} has root {a.root[:16]}…, {SOURCES[ref.source]} has {ref.root[:16]}… "
                            "(the anchor disagrees: rewritten)",
                        )
                    )
            if "clickhouse" not in copies and ref.source == "kafka":
                out.append(Finding("", 0, f"{ref.where} is missing from ClickHouse audit_anchors (deleted)"))
            if "city" in copies and "kafka" not in copies:
                out.append(Finding("", 0, f"{copies['city'].where} is missing from audit.anchors on Kafka (deleted)"))
        seen: set[str] = set()
        for a in copies.values():
            if a.root in seen or (a.source == "city" and "*" in a.root):
                continue
            seen.add(a.root)
            rec = {"partition": a.partition, "anchored_at_ms": a.at_ms, "root": a.root, "leaves": list(a.leaves)}
            for f in verify_anchor(rec, heads):
                out.append(Finding(f.alert_id, f.seq, f.what.replace("anchor of", f"{SOURCES[a.source]}: anchor of")))
    return list(dict.fromkeys(out))


def check(
    hist: Iterable[dict[str, Any]],
    evidence: Iterable[Mapping[str, Any]],
    revision_heads: Iterable[Mapping[str, Head]],
    anchors: Iterable[Anchor],
    report: Report | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda x: x,
) -> Report:
    """Every check on rows already read: evidence bundles, chains, heads of revisions, anchors."""
    rep = report or Report()
    genesis: dict[str, str] = {}
    for r in evidence:
        rep.bundles += 1
        header = json.loads(r["header"])
        items = [json.loads(x) for x in r["items"]]
        if items or not header["items"]:
            bad = verify_bundle(header, items, r["bundle_hash"])
        else:  # a superseded version keeps only its header
            bad = [] if bundle_hash(header) == r["bundle_hash"] else ["bundle header modified"]
        rep.findings += [Finding(r["alert_id"], 0, f"evidence bundle v{r['version']}: {b}") for b in bad]
        if int(r["version"]) == 1:
            genesis[r["alert_id"]] = r["bundle_hash"]
    chains: dict[str, list[dict[str, Any]]] = {}
    stored: dict[tuple[str, int], set[str]] = {}
    for r in hist:
        if not r["hash"]:
            rep.legacy += 1
            continue
        r["seq"], r["at_ms"] = int(r["seq"]), int(r["at_ms"])
        chains.setdefault(r["alert_id"], []).append(r)
        stored.setdefault((r["alert_id"], r["seq"]), set()).add(r["hash"])
    rep.chains, rep.rows = len(chains), sum(len(v) for v in chains.values())
    for aid, rows in progress(sorted(chains.items())):
        f = verify_chain(aid, rows, genesis.get(aid, "" if aid.startswith("RO-") else None))  # 整改令: from ""
        if f is not None:
            rep.findings.append(f)
    for heads in revision_heads:
        rep.heads += len(heads)
        rep.findings += head_findings(heads, chains)
    rep.findings += anchor_findings(anchors, stored)
    rep.findings = list(dict.fromkeys(rep.findings))
    return rep


# --- reading the copies -----------------------------------------------------------------------------
def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_rows(settings: Settings, sql: str) -> list[dict]:
    """Rows as dicts: through the running worker (embedded chDB), else directly."""
    from riskwatch.tools.runner import WorkerProcess
    from sinks.clickhouse import make_client
    from sinks.query import run_read_query

    if settings.clickhouse_url.startswith("chdb://"):
        rows = WorkerProcess(settings).query(sql)
        if rows is not None:
            return rows
    try:
        client = make_client(settings.clickhouse_url)
    except Exception as e:  # noqa: BLE001
        raise SystemExit(
            f"riskwatch: cannot open ClickHouse at {settings.clickhouse_url} ({str(e).splitlines()[0]}); "
            "start the worker or check RISKWATCH_CLICKHOUSE_URL"
        ) from None
    try:
        cols, data = run_read_query(client, sql)
    finally:
        client.close()
    return [dict(zip(cols, r, strict=False)) for r in data]


def read_topic(kw: Mapping[str, Any], topic: str, timeout_ms: int = 8000) -> list[tuple[bytes | None, bytes]] | None:
    """Every record of ``topic`` from the beginning as (key, value); [] when the topic does not
    exist, None when the cluster does not answer."""
    from kafka.errors import KafkaError

    from kafka import KafkaConsumer, TopicPartition

    try:
        c = KafkaConsumer(**kw, group_id=None, enable_auto_commit=False, request_timeout_ms=timeout_ms + 2000)
    except KafkaError:
        return None
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        ends = c.end_offsets(tps)
        out: list[tuple[bytes | None, bytes]] = []
        while any(c.position(tp) < ends[tp] for tp in tps):
            for recs in c.poll(timeout_ms=1000, max_records=10000).values():
                out.extend((r.key, r.value) for r in recs if r.value is not None)
        return out
    except KafkaError:
        return None
    finally:
        c.close()


def _anchors_of(records: Iterable[tuple[bytes | None, bytes]], source: str, since_ms: int) -> list[Anchor]:
    out = []
    for _, v in records:
        try:
            a = Anchor.of_record(json.loads(v), source)
        except (ValueError, KeyError, TypeError):
            continue
        if a.at_ms >= since_ms:
            out.append(a)
    return out


def city_link_runs(settings: Settings) -> bool:
    """Whether city-link runs from this checkout (its processes keep pid files in citylink_dir)."""
    return any((settings.citylink_dir / f"{w}.pid").exists() for w in ("mirrormaker", "bridge"))


def notarised(notary: Path, tsa_ca: Path | None, since_ms: int) -> tuple[list[Anchor], list[Finding], list[str]]:
    """The anchors time-stamped by ``riskwatch audit notarise`` (``anchor-*.json`` with its ``.tsr``):
    the token must cover the SHA-512 of the record, and with ``tsa_ca`` its signature must verify."""
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    anchors: list[Anchor] = []
    findings: list[Finding] = []
    notes: list[str] = []
    verifier = None
    if tsa_ca is not None:
        from cryptography import x509

        verifier = VerifierBuilder().add_root_certificate(x509.load_pem_x509_certificate(tsa_ca.read_bytes())).build()
    tokens = sorted(notary.glob("anchor-*.tsr"))
    for tsr in tokens:
        data_file = tsr.with_suffix(".json")
        try:
            data = data_file.read_bytes()
            a = Anchor.of_record(json.loads(data), "tsa")
            res = decode_timestamp_response(tsr.read_bytes())
        except (OSError, ValueError, KeyError) as e:
            findings.append(Finding("", 0, f"time stamp {tsr.name}: cannot be read ({e})"))
            continue
        if a.at_ms < since_ms:
            continue
        if res.tst_info.message_imprint.message != hashlib.sha512(data).digest():
            findings.append(Finding("", 0, f"time stamp {tsr.name} does not cover {data_file.name} (record modified)"))
            continue
        if verifier is not None:
            try:
                verifier.verify_message(res, data)
            except VerificationError as e:
                findings.append(Finding("", 0, f"time stamp {tsr.name}: its signature does not verify ({e})"))
                continue
        anchors.append(a)
    if tokens and verifier is None:
        notes.append(
            f"{len(tokens)} RFC 3161 time stamps in {notary}: their imprints were checked, not their signatures "
            "(pass --tsa-ca with the TSA's root certificate)"
        )
    return anchors, findings, notes


def verify(
    settings: Settings,
    since: str | None = None,
    kafka: bool = True,
    city: bool | None = None,
    notary: Path | None = None,
    tsa_ca: Path | None = None,
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda x: x,
    settle_s: float = 3.0,
) -> Report:
    """Read every copy and :func:`check` them. ``kafka``: read audit.anchors and alerts.all from
    Kafka; ``city``: the city's mirrored copy (None: where city-link runs); ``notary``: a directory
    of RFC 3161 time stamps; ``settle_s``: a chain whose history lags its revisions (rows still in
    flight to ClickHouse) is read again once after this long before it counts as a finding."""
    db = settings.clickhouse_database
    cond, since_ms = "", 0
    if since:
        since_ms = int(datetime.fromisoformat(since).timestamp() * 1000)
        cond = (
            f" AND alert_id IN (SELECT alert_id FROM {db}.alert_history WHERE at >= toDateTime64({_q(since)}, 3, "
            f"'Asia/Shanghai'))"
        )
    rep = Report()
    # the revisions first, then the history: rows in flight make the history look ahead, never behind
    ch_heads = latest_heads(
        read_rows(
            settings,
            f"SELECT alert_id, revision, chain_seq, chain_hash FROM {db}.alerts WHERE chain_seq > 0"
            + (f" AND updated_at >= toDateTime64({_q(since)}, 3, 'Asia/Shanghai')" if since else ""),
        ),
        "ClickHouse alerts",
    )
    kafka_heads: dict[str, Head] = {}
    anchors: list[Anchor] = []
    if kafka:
        recs = read_topic(settings.kafka_kwargs(), settings.topic(ALERTS_TOPIC))
        if recs is None:
            raise SystemExit(
                f"riskwatch audit verify: Kafka at {settings.kafka_bootstrap} does not answer; start it, or pass "
                "--no-kafka to check ClickHouse alone (which cannot see a recomputed chain)"
            )
        kafka_heads = latest_heads((json.loads(v) for _, v in recs if b'"chain_seq"' in v), "alerts.all on Kafka")
        if since:
            kafka_heads = {k: v for k, v in kafka_heads.items() if k in ch_heads}
        anchors += _anchors_of(
            read_topic(settings.kafka_kwargs(), settings.topic(ANCHORS_TOPIC)) or [], "kafka", since_ms
        )
        rep.anchors["kafka"] = len(anchors)
    else:
        rep.notes.append("Kafka not read (--no-kafka): a chain rewritten together with ClickHouse's anchors passes")
    hist = read_rows(
        settings,
        f"SELECT alert_id, seq, entity_id, toUnixTimestamp64Milli(at) AS at_ms, kind, from_status, "
        f"to_status, actor, comment, prev_hash, hash FROM {db}.alert_history WHERE 1 = 1{cond} "
        f"ORDER BY alert_id, seq",
    )
    ev = read_rows(
        settings,
        f"SELECT alert_id, version, bundle_hash, header, items FROM {db}.evidence FINAL"
        + (f" WHERE 1 = 1{cond}" if cond else ""),
    )
    ch_anchors = [
        Anchor(
            int(a["partition"]),
            int(a["at_ms"]),
            a["root"],
            tuple(zip(a["leaf_alert_ids"], map(int, a["leaf_seqs"]), a["leaf_hashes"], strict=False)),
            "clickhouse",
        )
        for a in read_rows(
            settings,
            f"SELECT partition, toUnixTimestamp64Milli(anchored_at) AS at_ms, root, leaf_alert_ids, "
            f"leaf_seqs, leaf_hashes FROM {db}.audit_anchors FINAL"
            + (f" WHERE anchored_at >= toDateTime64({_q(since)}, 3, 'Asia/Shanghai')" if since else "")
            + " ORDER BY partition, anchored_at",
        )
    ]
    anchors += ch_anchors
    rep.anchors["clickhouse"] = len(ch_anchors)
    if city is None:
        city = kafka and city_link_runs(settings)
    if city:
        from riskwatch.tools.citylink.service import _city_client_kwargs
        from riskwatch.tools.citylink.topics import city_remote_topic

        topic = city_remote_topic(settings, ANCHORS_TOPIC)
        kw = {"bootstrap_servers": settings.citylink_city_bootstrap, **_city_client_kwargs(settings)}
        recs = read_topic(kw, topic)
        if recs is None:
            rep.notes.append(
                f"the city's cluster {settings.citylink_city_bootstrap} did not answer: its copy unchecked"
            )
        else:
            city_anchors = _anchors_of(recs, "city", since_ms)
            anchors += city_anchors
            rep.anchors["city"] = len(city_anchors)
    if notary is not None and notary.is_dir():
        tsa, bad, notes = notarised(notary, tsa_ca, since_ms)
        anchors += tsa
        rep.anchors["tsa"] = len(tsa)
        rep.findings += bad
        rep.notes += notes
    check(hist, ev, [ch_heads, kafka_heads], anchors, rep, progress)
    suspect = sorted({f.alert_id for f in rep.findings if f.what.startswith("revision ")})
    if suspect and settle_s > 0:  # rows still on their way to ClickHouse? read those chains once more
        time.sleep(settle_s)
        ids = ", ".join(_q(a) for a in suspect)
        chains: dict[str, list[Mapping[str, Any]]] = {}
        for r in read_rows(
            settings, f"SELECT alert_id, seq, hash FROM {db}.alert_history WHERE alert_id IN ({ids}) AND hash != ''"
        ):
            chains.setdefault(r["alert_id"], []).append(r)
        ch_again = latest_heads(
            read_rows(
                settings,
                f"SELECT alert_id, revision, chain_seq, chain_hash FROM {db}.alerts WHERE alert_id IN ({ids})",
            ),
            "ClickHouse alerts",
        )
        again = [
            f for h in (ch_again, kafka_heads) for f in head_findings({a: h[a] for a in suspect if a in h}, chains)
        ]
        keep = [f for f in rep.findings if not (f.alert_id in suspect and f.what.startswith("revision "))]
        rep.findings = list(dict.fromkeys(keep + again))
    if not anchors:
        rep.notes.append("no anchors yet: the workers anchor every audit_anchor_seconds and on shutdown")
    return rep
