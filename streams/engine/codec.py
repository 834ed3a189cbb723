"""The bytes of a stored entity state: ``b"RW"``, a version byte, then msgpack of plain data.

Data only (maps, lists, numbers incl. NaN and ±inf, strings, bytes): reading never imports or
calls a name found in the bytes. A pickle starts ``b"\\x80<protocol>"``, never ``b"RW"``, so an old
pickled state is told apart at its first byte (``legacy_state.py`` reads those, restricted).
The checked readers below raise :class:`StateFormatError` (a ``ValueError``) on a wrong shape.

>>> raw = HEADER + pack({"a": [1, 2.5, b"x"]})
>>> raw[:3] == MAGIC + bytes([VERSION]), unpack(raw[3:])
(True, {'a': [1, 2.5, b'x']})
>>> from_le_bytes(le_bytes(array("d", [1.0, 2.0])), "d").tolist()
[1.0, 2.0]
>>> number(3), checked("x", str)
(3.0, 'x')
"""

from __future__ import annotations

import sys
from array import array
from functools import partial
from typing import Any

import msgpack

MAGIC = b"RW"
# the format written; bumped when a field is added that an older version must not drop silently
# (it would read the new state and write it back without the field). 2: the entity's devices;
# 3: its rectification orders (整改令); 4: its outbox (a timer's outputs until committed).
VERSION = 4
READS = frozenset({1, 2, 3, 4})  # formats read: 1 lacks the newer fields, which start empty
READS_TEXT = ", ".join(map(str, sorted(READS)))
HEADER = MAGIC + bytes([VERSION])
pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
unpack = partial(msgpack.unpackb, raw=False, use_list=True, strict_map_key=True)


class StateFormatError(ValueError):
    """Bytes that are not an entity state this version reads; the worker skips them (streams/runtime/store.py)."""


def checked(v: Any, typ: type) -> Any:
    if type(v) is not typ:
        raise ValueError(f"expected {typ.__name__}, found {type(v).__name__}")
    return v


def number(v: Any) -> float:
    if type(v) is not float and type(v) is not int:
        raise ValueError(f"expected a number, found {type(v).__name__}")
    return float(v)


def le_bytes(a: array[Any]) -> bytes:
    if sys.byteorder != "little":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def from_le_bytes(b: bytes, typecode: str = "q") -> array[Any]:
    a: array[Any] = array(typecode)
    a.frombytes(b)
    if sys.byteorder != "little":
        a.byteswap()
    return a
