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
'4c4f5fa3b3b8c1dc'
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
from typing import Any, Iterable

import rfc8785

BUNDLE_FORMAT = "riskwatch.evidence/1"
ANCHOR_FORMAT = "riskwatch.anchor/1"
CHAIN_FIELDS = ("alert_id", "seq", "entity_id", "at_ms", "kind", "from_status", "to_status", "actor", "comment")


def canonical(obj: Any) -> bytes:
    """RFC 8785 canonical JSON bytes (UTF-8)."""
    return rfc8785.dumps(obj)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def evidence_item(name: str, kind: str, data: Any) -> dict:
    return {"name": name, "kind": kind, "data": data}


def item_hash(item: dict) -> str:
    return sha256_hex(canonical(item))


def bundle_header(alert_id: str, version: int, final: bool, entity_id: str, rule: str, trigger_at_ms: int,
                  sealed_at_ms: int, items: list[dict], supersedes: str = "") -> dict:
    return {"format": BUNDLE_FORMAT, "alert_id": alert_id, "version": version, "final": final,
            "entity_id": entity_id, "rule": rule, "trigger_at_ms": trigger_at_ms, "sealed_at_ms": sealed_at_ms,
            "supersedes": supersedes, "items": [{"name": it["name"], "sha256": item_hash(it)} for it in items]}


def bundle_hash(header: dict) -> str:
    return sha256_hex(canonical(header))


def chain_row(alert_id: str, seq: int, entity_id: str, at_ms: int, kind: str, from_status: str, to_status: str,
              actor: str, comment: str) -> dict:
    return {"alert_id": alert_id, "seq": int(seq), "entity_id": entity_id, "at_ms": int(at_ms), "kind": kind,
            "from_status": from_status or "", "to_status": to_status, "actor": actor, "comment": comment or ""}


def chain_hash(prev_hash: str, row: dict) -> str:
    """``SHA-256(prev_hash ‖ JCS(row))`` over the :data:`CHAIN_FIELDS` of ``row``."""
    return sha256_hex(prev_hash.encode("ascii") + canonical({k: row[k] for k in CHAIN_FIELDS}))


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
    return tree.get_root().hex()
