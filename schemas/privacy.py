"""Masking of personal numbers in free text before it is stored (complaints, feedback).

Masks, keeping a few characters so a case officer can still match a callback:

* mainland mobile numbers ``1[3-9]x xxxx xxxx`` with or without spaces/dashes and an optional
  ``+86`` / ``0086`` / ``86`` prefix → ``138****5678`` (prefix kept),
* landlines with an area code, ``0395-1234567``, ``(0395)1234567``, ``010 12345678`` →
  ``0395-*****67``,
* 18-digit resident ID numbers (last character a digit or X) → ``4105**********123X``.

A number glued to letters or other digits (licence numbers like ``JY14105210012345``, order
numbers) is left alone, as are prices, dates and times.

>>> mask_pii("我是张三,电话13812345678,身份证410521199001011234,在舞泉镇某超市买到过期食品")
'我是张三,电话138****5678,身份证4105**********1234,在舞泉镇某超市买到过期食品'
>>> mask_pii("座机0395-1234567，价格12.5元，日期2026-11-27")
'座机0395-*****67，价格12.5元，日期2026-11-27'
"""

from __future__ import annotations

import re

_EDGE_L = r"(?<![0-9A-Za-z])"
_EDGE_R = r"(?![0-9A-Za-z])"

_ID18 = re.compile(
    _EDGE_L + r"([1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx])" + _EDGE_R
)
_MOBILE = re.compile(
    r"(?<![0-9A-Za-z+])"
    r"((?:\+|00)?86[\s\-]?)?"  # country code, kept
    r"(1[3-9]\d(?:[\s\-]?\d){8})" + r"(?![0-9A-Za-z])"
)
_LANDLINE = re.compile(
    _EDGE_L + r"(\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3})([\s\-]?)(\d{7,8})" + r"(?![0-9A-Za-z])"
)


def _id(m: re.Match) -> str:
    s = m.group(1)
    return s[:4] + "*" * 10 + s[-4:]


def _mobile(m: re.Match) -> str:
    digits = re.sub(r"[\s\-]", "", m.group(2))
    return (m.group(1) or "") + digits[:3] + "****" + digits[-4:]


def _landline(m: re.Match) -> str:
    number = m.group(3)
    return m.group(1) + m.group(2) + "*" * (len(number) - 2) + number[-2:]


def mask_pii(text: str) -> str:
    """``text`` with mobile, landline and resident ID numbers masked (see module doc)."""
    if not text or not any(c.isdigit() for c in text):
        return text
    text = _ID18.sub(_id, text)
    text = _MOBILE.sub(_mobile, text)
    return _LANDLINE.sub(_landline, text)
