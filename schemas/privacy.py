"""The one masking function for personal data in free text, applied wherever text leaves riskwatch.

:func:`mask_pii` runs on every free-text field before it is stored (ClickHouse rows), published
(``alerts.<dept>``, dead letters) or sent (Alertmanager, robots, e-mail). It masks, keeping a few
characters so a case officer can still match a callback:

* mainland mobile numbers ``1[3-9]x xxxx xxxx``, as one run or grouped 3-4-4 by spaces or dashes,
  with an optional ``+86`` / ``0086`` / ``86`` prefix (kept) → ``138****5678``;
* landlines with an area code (``010``, ``02x`` or ``0xxx``): ``0571-87654321``, ``(0395)1234567``,
  ``010 62345678``, ``057187654321`` → ``0571-******21``;
* resident ID numbers: 18 digits (last one may be ``X``/``x``) and the older 15 digits, both with a
  province code and a birth date in place → ``4105**********1234`` / ``4105*******0123``;
* bank card numbers: 16–19 digits (as one run or in groups of four) starting 3–6 or 9 that pass
  the Luhn check → ``6222***********1234``;
* e-mail addresses → ``z***@example.com``.

Full-width characters (``１３８…``, ``＠``, ``（０５７１）``) are matched through their NFKC form
(:mod:`unicodedata`); the text around a number is returned unchanged, and the digits a mask keeps
keep their original width. A number may be glued to letters (``tel13812345678``) but not to other
digits, nor follow a decimal point. Left alone, because they are not personal:

* 18-character 统一社会信用代码 (business ids) that pass their GB 32100 check character: with
  letters, nothing in them is masked; digits-only ones are not bank cards, and not IDs unless they
  pass the ID check digit too (or ``身份证``/``证件`` precedes them);
* licence, order and equipment numbers of other lengths (``SC10441102100123``), riskwatch ids
  (``E000123``), hex ids (UUIDs, SHA-256 hashes: a token of 16+ hex characters), dates, times and
  measured values (``1.35 MPa``, ``2026-11-27 08:00``).

The function is idempotent (a masked text masks to itself) and cheap: the number patterns run only
around groups of 7+ digits, so text without such a group costs two short scans (about 2 µs for 80
characters) and a comment with a date and a phone tens of µs (``tests/test_privacy.py::test_speed``
prints both).

>>> mask_pii("我是张三,电话13812345678,身份证410521199001011234,在舞泉镇某超市买到过期食品")
'我是张三,电话138****5678,身份证4105**********1234,在舞泉镇某超市买到过期食品'
>>> mask_pii("座机0395-1234567，价格12.5元，日期2026-11-27")
'座机0395-*****67，价格12.5元，日期2026-11-27'
>>> mask_pii("tel１３８１２３４５６７８，卡号6222021234567890128，邮箱zhangsan@example.com")
'tel１３８****５６７８，卡号6222***********0128，邮箱z***@example.com'
>>> mask_pii("营业执照913100006073500310，设备E000123压力1.35MPa")
'营业执照913100006073500310，设备E000123压力1.35MPa'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = ["mask_pii"]


def _fold_table() -> dict[int, str]:
    """Length-preserving NFKC for the characters that can spell a number or an address: the
    full-width ASCII block, the ideographic and other spaces, and dashes (as ``-``)."""
    table: dict[int, str] = {}
    for cp in [*range(0xFF01, 0xFF5F), 0x3000, 0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F]:
        n = unicodedata.normalize("NFKC", chr(cp))
        if len(n) == 1 and n != chr(cp):
            table[cp] = n
    for cp in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2212, 0xFE63):  # ‐ ‑ ‒ – — − ﹣
        table[cp] = "-"
    return table


_FOLD = _fold_table()
# translate only a text that has a full-width digit, letter or ＠ (then with its spaces, dashes, brackets)
_WIDE = re.compile("[\uff10-\uff19\uff20-\uff3a\uff41-\uff5a]")

# a number starts where no digit (nor a decimal point after a digit) precedes it, and ends where
# no digit (nor a decimal fraction) follows: letters may be glued on either side
_L = r"(?<![0-9])(?<![0-9]\.)"
_R = r"(?![0-9])(?!\.[0-9])"
_SEP = r"[ \-]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])")
_ID = re.compile(_L + r"(?:[1-9][0-9]{16}[0-9Xx]|[1-9][0-9]{14})(?![0-9Xx])(?!\.[0-9])")
_CARD = re.compile(
    _L + r"(?:[3-69][0-9]{15,18}"  # one run, or 4-4-4-4(-1..3) with one kind of separator
    r"|[3-69][0-9]{3}(" + _SEP + r")[0-9]{4}\1[0-9]{4}\1[0-9]{4}(?:\1[0-9]{1,3})?)" + _R
)
_MOBILE = re.compile(
    r"(?<![0-9+])(?<![0-9]\.)((?:\+|00)?86" + _SEP + r"?|0)?"  # +86 / 0086 / 86 / trunk 0: kept
    r"(1[3-9][0-9])(" + _SEP + r"?)([0-9]{4})\3([0-9]{4})" + _R
)
_LANDLINE = re.compile(
    _L + r"([(（](?:010|02[0-9]|0[3-9][0-9]{2})[)）]|(?:010|02[0-9]|0[3-9][0-9]{2}))( ?[ \-]? ?)"
    r"([1-9][0-9]{2,3}[ \-]?[0-9]{4})" + _R
)
_ANY = re.compile(r"[0-9@]")
_HEX = re.compile(r"[0-9A-Fa-f\-]+")
_TOKEN_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")

_ID_WORDS = ("身份", "证件", "证号", "ID")
_PROVINCES = frozenset(
    {
        11,
        12,
        13,
        14,
        15,
        21,
        22,
        23,
        31,
        32,
        33,
        34,
        35,
        36,
        37,
        41,
        42,
        43,
        44,
        45,
        46,
        50,
        51,
        52,
        53,
        54,
        61,
        62,
        63,
        64,
        65,
        71,
        81,
        82,
        83,
    }
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def _valid_date(y: int, m: int, d: int) -> bool:
    return 1 <= m <= 12 and 1 <= d <= (29 if m == 2 else 30 if m in (4, 6, 9, 11) else 31)


def _id_check_ok(s: str) -> bool:
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS, strict=False))
    return "10X98765432"[total % 11] == s[17].upper()


def _uscc_check_ok(s: str) -> bool:
    """GB 32100 check character of a 统一社会信用代码 (here: one written in digits only)."""
    total = sum(_USCC_CHARS.index(c) * w for c, w in zip(s[:17], _USCC_WEIGHTS, strict=False))
    return _USCC_CHARS[(31 - total % 31) % 31] == s[17]


def _is_id(s: str, check: bool = True) -> bool:
    if int(s[:2]) not in _PROVINCES:
        return False
    if len(s) == 15:
        return _valid_date(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))
    if s[6:8] not in ("18", "19", "20") or not _valid_date(int(s[6:10]), int(s[10:12]), int(s[12:14])):
        return False
    # an ID unless it reads as a business id (check character right) and not as an ID (check digit wrong)
    return not check or _id_check_ok(s) or not _uscc_check_ok(s)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = ord(c) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _digits(orig: str, norm: str) -> list[str]:
    """The original characters of ``orig`` whose NFKC form (``norm``) is a digit or X."""
    return [o for o, n in zip(orig, norm, strict=False) if n.isdigit() or n in "Xx"]


def _mask_id(orig: str, norm: str, m: re.Match[str]) -> str | None:
    said_id = any(w in m.string[max(0, m.start() - 8) : m.start()] for w in _ID_WORDS)
    if not (_is_id(norm) or said_id and _is_id(norm, check=False)):
        return None
    return orig[:4] + "*" * (len(orig) - 8) + orig[-4:]


def _mask_card(orig: str, norm: str, m: re.Match[str]) -> str | None:
    digits = "".join(c for c in norm if c.isdigit())
    if not _luhn_ok(digits) or (len(digits) == 18 and _uscc_check_ok(digits)):
        return None
    d = _digits(orig, norm)
    return "".join(d[:4]) + "*" * (len(d) - 8) + "".join(d[-4:])


def _mask_mobile(orig: str, norm: str, m: re.Match[str]) -> str:
    prefix = len(m.group(1) or "")
    d = _digits(orig[prefix:], norm[prefix:])
    return orig[:prefix] + "".join(d[:3]) + "****" + "".join(d[-4:])


def _mask_landline(orig: str, norm: str, m: re.Match[str]) -> str:
    keep = m.end(2) - m.start()
    d = _digits(orig[keep:], norm[keep:])
    return orig[:keep] + "*" * (len(d) - 2) + "".join(d[-2:])


def _mask_email(orig: str, norm: str, m: re.Match[str]) -> str:
    at = norm.index("@")
    return orig[0] + "***" + orig[at:]


_NUMBER_RULES: tuple[tuple[re.Pattern[str], Callable[[str, str, re.Match[str]], str | None]], ...] = (
    (_ID, _mask_id),
    (_CARD, _mask_card),
    (_MOBILE, _mask_mobile),
    (_LANDLINE, _mask_landline),
)
# the number patterns run only around digit groups of 7+ digits (prefixes and area codes in brackets
# come up to 8 characters before): a search over the whole text per pattern costs ten times more
_GROUP = re.compile(r"[0-9][0-9 \-]*")


_MASKS = dict(_NUMBER_RULES)


def _windows(norm: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for g in _GROUP.finditer(norm):
        s, e = g.span()
        if e - s >= 7 and (e - s) - g.group().count(" ") - g.group().count("-") >= 7:
            s, e = max(0, s - 8), min(len(norm), e + 2)
            if out and s <= out[-1][1]:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
    return out


def _business_token(norm: str, start: int, end: int) -> bool:
    """The number is part of an id, not written by a person: a long hex id (UUID, SHA-256, alert
    id: 16+ hex characters with a letter) or a 统一社会信用代码 with letters (18 characters, check
    character right)."""
    a, b = start, end
    while a > 0 and norm[a - 1] in _TOKEN_CHARS:
        a -= 1
    while b < len(norm) and norm[b] in _TOKEN_CHARS:
        b += 1
    if a == start and b == end:
        return False
    token = norm[a:b]
    if (
        len(token) - token.count("-") >= 16
        and _HEX.fullmatch(token) is not None
        and any(c in "abcdefABCDEF" for c in token)
    ):
        return True
    return len(token) == 18 and all(c in _USCC_CHARS for c in token) and _uscc_check_ok(token)


def mask_pii(text: str) -> str:
    """``text`` with phone, ID and bank card numbers and e-mail addresses masked (see module doc)."""
    if not text:
        return text
    norm = text.translate(_FOLD) if _WIDE.search(text) else text
    if not _ANY.search(norm):
        return text
    spans: list[tuple[int, int, str]] = []
    matches = [m for m in _EMAIL.finditer(norm)] if "@" in norm else []
    windows = _windows(norm)
    for pattern, _ in _NUMBER_RULES:
        matches += [m for s, e in windows for m in pattern.finditer(norm, s, e)]
    for m in matches:  # in order of priority: e-mail, ID, card, mobile, landline
        s, e = m.span()
        if any(s < e2 and s2 < e for s2, e2, _ in spans):
            continue
        out: str | None
        if m.re is _EMAIL:
            out = _mask_email(text[s:e], norm[s:e], m)
        elif _business_token(norm, s, e):
            continue
        else:
            out = _MASKS[m.re](text[s:e], norm[s:e], m)
        if out is not None:
            spans.append((s, e, out))
    if not spans:
        return text
    spans.sort()
    parts: list[str] = []
    pos = 0
    for s, e, out in spans:
        parts += (text[pos:s], out)
        pos = e
    parts.append(text[pos:])
    return "".join(parts)
