"""Evidence bundles, the per-alert hash chain and anchors: the formats and their hashes.

Everything hashed is first serialized with the **JSON Canonicalization Scheme, RFC 8785**
(``rfc8785``, Trail of Bits' maintained implementation): keys sorted by UTF-16 code units, no
whitespace, UTF-8, numbers in ECMAScript form. Hashes are SHA-256, lower-case hex. Times inside
hashed records are integers (epoch milliseconds, the precision ClickHouse stores), never strings,
so a row read back from ClickHouse hashes to the same bytes.

* **Evidence item**: ``{"name", "kind", "data"}``; ``item hash = SHA-256(JCS(item))``.
* **Evidence bundle**: a header ``{"format", "alert_id", "version", "final", "entity_id", "rule",
  "trigger_at_ms", "sealed_at_ms", "supersedes", "items": [{"name", "sha256"}, ...]}``;
  ``bundle hash = SHA-256(JCS(header))``. The header lists every item's hash, so the bundle hash
  fixes every byte of evidence.
* **Chain row** (one ``alert_history`` row): ``hash = SHA-256(prev_hash ‖ JCS(row))`` where ``‖``
  is concatenation of the 64 hex characters and the canonical bytes, ``row`` holds the columns
  listed in :data:`CHAIN_FIELDS`, and the first row's ``prev_hash`` is the alert's evidence
  bundle hash (version 1).
* **Anchor**: a Merkle tree (RFC 9162 / RFC 6962 hashing, ``pymerkle``) over leaves
  ``JCS([alert_id, seq, hash])`` of the chain heads written in one period on one partition.

>>> item = evidence_item("readings:d1:cold_chain_temp", "readings", {"unit": "C", "points": [[1, 9.5]]})
>>> item_hash(item)[:16]
'6deaff6f244b49f6'
>>> row = {"alert_id": "a1", "seq": 1, "entity_id": "E1", "at_ms": 0, "kind": "status", "from_status": "",
...        "to_status": "pending", "actor": "detector", "comment": ""}
>>> h1 = chain_hash("0" * 64, row)
>>> h1 == chain_hash("0" * 64, dict(row)) and h1 != chain_hash("1" * 64, row)
True
>>> merkle_root([("a1", 1, h1)]) == merkle_root([("a1", 1, h1)])
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias, TypedDict, cast

import rfc8785

BUNDLE_FORMAT = "riskwatch.evidence/1"
ANCHOR_FORMAT = "riskwatch.anchor/1"
CHAIN_FIELDS = ("alert_id", "seq", "entity_id", "at_ms", "kind", "from_status", "to_status", "actor", "comment")

JSONValue: TypeAlias = bool | int | float | str | None | Sequence["JSONValue"] | Mapping[str, "JSONValue"]
# A record as stored (a ClickHouse row, a JSON file read back): column name -> value of that column's type.
StoredRecord: TypeAlias = Mapping[str, Any]


class EvidenceItem(TypedDict):
    name: str
    kind: str
    data: JSONValue


class ItemRef(TypedDict):
    name: str
    sha256: str


class BundleHeader(TypedDict):
    format: str
    alert_id: str
    version: int
    final: bool
    entity_id: str
    rule: str
    trigger_at_ms: int
    sealed_at_ms: int
    supersedes: str
    items: list[ItemRef]


class ChainRow(TypedDict):
    """The :data:`CHAIN_FIELDS` of one ``alert_history`` row."""

    alert_id: str
    seq: int
    entity_id: str
    at_ms: int
    kind: str
    from_status: str
    to_status: str
    actor: str
    comment: str


def canonical(obj: object) -> bytes:
    """RFC 8785 canonical JSON bytes (UTF-8) of a JSON value (a :data:`JSONValue`, or one of the
    records above); ``rfc8785`` raises ``CanonicalizationError`` for anything else."""
    return rfc8785.dumps(cast("JSONValue", obj))  # the records are JSON objects; rfc8785 checks at run time


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_item(name: str, kind: str, data: JSONValue) -> EvidenceItem:
    return {"name": name, "kind": kind, "data": data}


def item_hash(item: EvidenceItem | StoredRecord) -> str:
    return sha256_hex(canonical(item))


def bundle_header(
    alert_id: str,
    version: int,
    final: bool,
    entity_id: str,
    rule: str,
    trigger_at_ms: int,
    sealed_at_ms: int,
    items: Sequence[EvidenceItem],
    supersedes: str = "",
) -> BundleHeader:
    return {
        "format": BUNDLE_FORMAT,
        "alert_id": alert_id,
        "version": version,
        "final": final,
        "entity_id": entity_id,
        "rule": rule,
        "trigger_at_ms": trigger_at_ms,
        "sealed_at_ms": sealed_at_ms,
        "supersedes": supersedes,
        "items": [{"name": it["name"], "sha256": item_hash(it)} for it in items],
    }


def bundle_hash(header: BundleHeader | StoredRecord) -> str:
    return sha256_hex(canonical(header))


def chain_row(
    alert_id: str,
    seq: int,
    entity_id: str,
    at_ms: int,
    kind: str,
    from_status: str,
    to_status: str,
    actor: str,
    comment: str,
) -> ChainRow:
    return {
        "alert_id": alert_id,
        "seq": int(seq),
        "entity_id": entity_id,
        "at_ms": int(at_ms),
        "kind": kind,
        "from_status": from_status or "",
        "to_status": to_status,
        "actor": actor,
        "comment": comment or "",
    }


def chain_hash(prev_hash: str, row: ChainRow | StoredRecord) -> str:
    """``SHA-256(prev_hash ‖ JCS(row))`` over the :data:`CHAIN_FIELDS` of ``row``."""
    fields: Mapping[str, object] = row
    return sha256_hex(prev_hash.encode("ascii") + canonical({k: fields[k] for k in CHAIN_FIELDS}))


def merkle_root(leaves: Iterable[tuple[str, int, str]]) -> str:
    """RFC 9162 Merkle tree hash over ``JCS([alert_id, seq, hash])`` leaves (in the given order);
    the empty tree's root is SHA-256 of nothing."""
    from pymerkle import InmemoryTree

    tree = InmemoryTree(algorithm="sha256")
    n = 0
    for alert_id, seq, h in leaves:
        tree.append_entry(canonical([alert_id, int(seq), h]))
        n += 1
    if n == 0:
        return sha256_hex(b"")
    root: bytes = tree.get_root()
    return root.hex()


# --- verification (pure: rows in, findings out) --------------------------------------------------
class Finding(tuple[str, int, str]):
    """``(alert_id, seq, what)``: one broken link, in words that say what happened."""

    __slots__ = ()

    def __new__(cls, alert_id: str, seq: int, what: str) -> Finding:
        return super().__new__(cls, (alert_id, seq, what))

    @property
    def alert_id(self) -> str:
        return self[0]

    @property
    def seq(self) -> int:
        return self[1]

    @property
    def what(self) -> str:
        return self[2]


def verify_bundle(
    header: BundleHeader | StoredRecord, items: Sequence[EvidenceItem | StoredRecord], expected_hash: str | None = None
) -> list[str]:
    """Problems of one bundle: an item whose hash is not the one the header lists (named), a
    header whose hash is not ``expected_hash``."""
    problems: list[str] = []
    listed: dict[str, str] = {x["name"]: x["sha256"] for x in header.get("items", [])}
    seen: set[str] = set()
    for it in items:
        name = it.get("name", "?")
        seen.add(name)
        if name not in listed:
            problems.append(f"item {name!r} is not listed in the bundle header (added)")
        elif item_hash(it) != listed[name]:
            problems.append(
                f"item {name!r} does not match its hash: listed {listed[name]}, content hashes to {item_hash(it)} "
                "(modified)"
            )
    for name in listed:
        if name not in seen:
            problems.append(f"item {name!r} listed in the bundle header is missing (deleted)")
    if expected_hash is not None and bundle_hash(header) != expected_hash:
        problems.append(f"bundle header hashes to {bundle_hash(header)}, expected {expected_hash} (header modified)")
    return problems


def verify_chain(alert_id: str, rows: Iterable[StoredRecord], genesis: str | None) -> Finding | None:
    """The first broken link of one alert's chain, or None. ``rows``: every stored row of the
    alert (duplicates of a replay are identical and count once); ``genesis``: the alert's
    version-1 evidence bundle hash (None: no bundle found)."""
    by_seq: dict[int, list[StoredRecord]] = {}
    for r in rows:
        key = tuple(r[k] for k in (*CHAIN_FIELDS, "prev_hash", "hash"))
        cands = by_seq.setdefault(int(r["seq"]), [])
        if all(tuple(c[k] for k in (*CHAIN_FIELDS, "prev_hash", "hash")) != key for c in cands):
            cands.append(r)
    if not by_seq:
        return None
    top = max(by_seq)
    if genesis is None:
        return Finding(alert_id, 1, "no evidence bundle: the chain has no genesis (evidence row deleted?)")
    prev: str = genesis
    for seq in range(1, top + 1):
        cands = by_seq.get(seq, [])
        if not cands:
            return Finding(
                alert_id, seq, f"row seq {seq} is missing (deleted): the chain jumps from seq {seq - 1} to {seq + 1}"
            )
        if len(cands) > 1:
            nxt = by_seq.get(seq + 1, [])
            linked = {c["prev_hash"] for c in nxt}
            good = [
                c
                for c in cands
                if c["prev_hash"] == prev and chain_hash(prev, c) == c["hash"] and (not nxt or c["hash"] in linked)
            ]
            extra = [c for c in cands if c not in good[:1]]
            inserted = extra[0]
            return Finding(
                alert_id,
                seq,
                f"{len(cands)} different rows with seq {seq} (inserted row: {inserted['kind']} "
                f"{inserted['to_status']} by {inserted['actor']}, comment {inserted['comment'][:60]!r})",
            )
        r = cands[0]
        if r["prev_hash"] != prev:
            what = (
                "does not start from the alert's evidence bundle hash"
                if seq == 1
                else f"does not link to row seq {seq - 1} (a row inserted, replaced or reordered)"
            )
            return Finding(alert_id, seq, f"row seq {seq} {what}")
        if chain_hash(r["prev_hash"], r) != r["hash"]:
            return Finding(
                alert_id,
                seq,
                f"row seq {seq} was modified: its content no longer matches its hash "
                f"({r['kind']} {r['to_status']} by {r['actor']}, comment {r['comment'][:60]!r})",
            )
        prev = r["hash"]
    return None


def verify_anchor(anchor: StoredRecord, heads: Mapping[tuple[str, int], set[str]]) -> list[Finding]:
    """An anchor's root recomputed from its leaves, and every anchored head present in
    ``alert_history`` (``heads``: (alert_id, seq) → hashes stored) with its hash."""
    out: list[Finding] = []
    leaves: list[tuple[str, int, str]] = [(aid, seq, h) for aid, seq, h in anchor["leaves"]]
    where = f"anchor of partition {anchor['partition']} at {anchor['anchored_at_ms']}"
    if merkle_root(leaves) != anchor["root"]:
        out.append(Finding("", 0, f"{where}: its leaves do not give its Merkle root (anchor modified)"))
    for aid, seq, h in leaves:
        stored = heads.get((aid, int(seq)))
        if not stored:
            out.append(
                Finding(aid, int(seq), f"anchored row seq {seq} is missing from alert_history (deleted after {where})")
            )
        elif h not in stored:
            out.append(Finding(aid, int(seq), f"anchored row seq {seq} has another hash now (modified after {where})"))
    return out
