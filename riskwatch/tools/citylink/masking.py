"""What may leave the county: a record's value with personal data masked, and a relayed task's key.

MirrorMaker 2 copies bytes; it cannot look inside a JSON value. So the bridge passes every value
sent to the city through :func:`mask_value` first:

* every string in the JSON value goes through :func:`schemas.privacy.mask_pii` (mobile, landline
  and ID numbers), and the values of the ``redact`` fields (``citylink_redact_fields``: inspectors'
  names) become ``***``;
* a value that is not JSON is masked as text (the worker dead-letters it in the county anyway).

>>> mask_value(b'{"tel":"13812345678","inspectors":["x"]}', {"inspectors"})
b'{"tel":"138****5678","inspectors":["***"]}'
>>> task_key(b'{"entity_id":"E1","kind":"inspect"}'), task_key(b"not json")
(b'E1', None)
"""

from __future__ import annotations

import orjson

from schemas.privacy import mask_pii


def _mask_obj(obj, redact: frozenset[str]):
    if isinstance(obj, str):
        return mask_pii(obj)
    if isinstance(obj, dict):
        return {k: (_redact(v) if k in redact else _mask_obj(v, redact)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask_obj(v, redact) for v in obj]
    return obj


def _redact(v):
    if isinstance(v, str):
        return "***" if v else v
    if isinstance(v, list):
        return [_redact(x) for x in v]
    return v


def mask_value(value: bytes | None, redact: frozenset[str] | set[str] = frozenset()) -> bytes | None:
    """The value as it may leave the county.

    >>> mask_value(b'{"comment":"\\u5df2\\u8054\\u7cfb13812345678","inspectors":["\\u5f20\\u4e09"],"n":1}',
    ...            {"inspectors"}).decode()
    '{"comment":"已联系138****5678","inspectors":["***"],"n":1}'
    >>> mask_value(b'not json 410521199001011234')
    b'not json 4105**********1234'
    """
    if value is None:
        return None
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return mask_pii(value.decode("utf-8", errors="replace")).encode()
    return orjson.dumps(_mask_obj(obj, frozenset(redact)))


def task_key(value: bytes | None) -> bytes | None:
    """The county's partitioning key of a relayed task (its ``entity_id``), None if unreadable."""
    try:
        ent = orjson.loads(value or b"").get("entity_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return ent.encode() if isinstance(ent, str) and ent else None
