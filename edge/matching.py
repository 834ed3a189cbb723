"""Entity matching: which supervised entity an event names when it gives a name, an address, a
统一社会信用代码 or a licence number instead of riskwatch's ``entity_id``.

Order of evidence, first hit wins:

1. 统一社会信用代码: its check digit (GB 32100-2015) is validated with python-stdnum; a bad code is
   refused (:class:`BadIdentifier`), a valid one matches the registry entity of that code exactly;
2. licence number: exact;
3. an alias: a normalised name + address the office resolved before (``match_aliases``);
4. name and address: fuzzy (rapidfuzz ``WRatio`` on normalised names — county prefix, 有限公司,
   个体 and bracketed parts stripped — combined with ``partial_ratio`` on addresses and the township);
   accepted at ``threshold`` or above and ``margin`` ahead of the runner-up
   (``riskwatch/data/imports/matching.yaml``);
5. no business named, only a township: the township's pseudo-entity ``township:<slug>``.

Anything else is :class:`Candidates`: the event goes to the office's matching queue. No event is
ever keyed to an ``unknown`` entity. The gateway calls the same API::

    >>> m = Matcher([RegistryEntry("91411121MA40000001", "舞阳县某某食品有限公司", "舞泉镇", "人民路1号")])
    >>> r = m.match("某某食品", "舞阳县人民路1号", "", "", "舞泉镇")
    >>> r.entity_id, r.match.method.value, r.match.confidence >= 0.85
    ('91411121MA40000001', 'name_address', True)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import yaml
from rapidfuzz import fuzz, process
from stdnum.cn import uscc

from riskwatch.settings import DATA_DIR
from schemas.events import LOCAL_TZ, Match, MatchCandidate, MatchMethod, MatchQueueItem

CONFIG_PATH = DATA_DIR / "imports" / "matching.yaml"
REGISTRY_SQL = "SELECT entity_id, name, township, address, licence FROM {db}.registry FINAL WHERE status = 'active'"
ALIASES_SQL = "SELECT alias_key, entity_id FROM {db}.match_aliases FINAL"
_BRACKETS = re.compile(r"[(（\[【<《][^)）\]】>》]*[)）\]】>》]")
_SPACE_PUNCT = re.compile(r"[\s·,，.。、\-—_/\\:：;；\"'“”‘’]+")


class BadIdentifier(ValueError):
    """A 统一社会信用代码 that fails its check digit (or shape): the row is refused, not guessed."""


@dataclass(frozen=True, slots=True)
class MatchConfig:
    threshold: float = 0.85
    margin: float = 0.05
    candidates: int = 5
    min_candidate: float = 0.40
    name_weight: float = 0.75
    address_weight: float = 0.25
    township_mismatch: float = 0.85
    name_prefixes: tuple[str, ...] = ()
    name_suffixes: tuple[str, ...] = ()
    address_prefixes: tuple[str, ...] = ()
    townships: Mapping[str, str] = field(default_factory=dict)


@cache
def load_config(path: Path = CONFIG_PATH) -> MatchConfig:
    d: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    w = d.get("weights", {})
    by_len = lambda xs: tuple(sorted(xs or (), key=len, reverse=True))  # noqa: E731
    return MatchConfig(
        threshold=float(d["threshold"]),
        margin=float(d.get("margin", 0.05)),
        candidates=int(d.get("candidates", 5)),
        min_candidate=float(d.get("min_candidate", 0.4)),
        name_weight=float(w.get("name", 0.75)),
        address_weight=float(w.get("address", 0.25)),
        township_mismatch=float(d.get("township_mismatch", 0.85)),
        name_prefixes=by_len(d.get("name_prefixes")),
        name_suffixes=by_len(d.get("name_suffixes")),
        address_prefixes=by_len(d.get("address_prefixes")),
        townships=dict(d.get("townships") or {}),
    )


def _clean(s: str) -> str:
    s = unicodedata.normalize("NFKC", s or "").strip()
    return _SPACE_PUNCT.sub("", _BRACKETS.sub("", s))


def _strip(s: str, prefixes: Iterable[str], suffixes: Iterable[str] = ()) -> str:
    changed = True
    while changed and s:
        changed = False
        for p in prefixes:
            if s.startswith(p) and len(s) > len(p):
                s, changed = s[len(p) :], True
        for x in suffixes:
            if s.endswith(x) and len(s) > len(x):
                s, changed = s[: -len(x)], True
    return s


def normalise_name(name: str, cfg: MatchConfig | None = None) -> str:
    """``舞阳县某某食品有限公司(二分店)`` → ``某某食品``: NFKC, no brackets, punctuation, county prefix, legal form."""
    cfg = cfg or load_config()
    return _strip(_clean(name), cfg.name_prefixes, cfg.name_suffixes)


def normalise_address(address: str, cfg: MatchConfig | None = None) -> str:
    cfg = cfg or load_config()
    return _strip(_clean(address), cfg.address_prefixes)


def alias_key(name: str, address: str, cfg: MatchConfig | None = None) -> str:
    """What the office's choice is remembered under: normalised name ``|`` normalised address."""
    return f"{normalise_name(name, cfg)}|{normalise_address(address, cfg)}"


def check_credit_code(code: str) -> str:
    """The code, upper-cased, if its shape and check digit are valid; else :class:`BadIdentifier`."""
    c = unicodedata.normalize("NFKC", code or "").strip().upper()
    if not uscc.is_valid(c):
        why = "长度应为18位" if len(c) != 18 else "校验位错误"
        raise BadIdentifier(f"统一社会信用代码 {c} 无效({why},GB 32100-2015)")
    return c


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One active entity of the registry (``registry FINAL``). Its ``entity_id`` is its credit code
    when it was imported from 名录库 (edge/imports)."""

    entity_id: str
    name: str
    township: str = ""
    address: str = ""
    licence: str = ""


@dataclass(frozen=True, slots=True)
class Matched:
    entity_id: str
    match: Match


@dataclass(frozen=True, slots=True)
class Candidates:
    """No confident match: the best candidates (may be empty) and why; the event is queued."""

    candidates: tuple[MatchCandidate, ...]
    reason: str
    alias_key: str


class Matcher:
    """Matches against a snapshot of the registry and the office's aliases (reload to refresh)."""

    def __init__(
        self,
        entries: Iterable[RegistryEntry],
        aliases: Mapping[str, str] | None = None,
        config: MatchConfig | None = None,
    ):
        self.cfg = config or load_config()
        self.entries = list(entries)
        self.by_id = {e.entity_id: e for e in self.entries}
        self.by_licence = {e.licence.strip(): e for e in self.entries if e.licence.strip()}
        self.aliases = dict(aliases or {})
        self._names = [normalise_name(e.name, self.cfg) for e in self.entries]
        self._addresses = [normalise_address(e.address, self.cfg) for e in self.entries]

    @classmethod
    def from_rows(cls, registry: Iterable[Mapping[str, Any]], aliases: Iterable[Mapping[str, Any]] = ()) -> Matcher:
        """From the rows of :data:`REGISTRY_SQL` and :data:`ALIASES_SQL`."""
        entries = (
            RegistryEntry(
                str(r["entity_id"]),
                str(r.get("name") or ""),
                str(r.get("township") or ""),
                str(r.get("address") or ""),
                str(r.get("licence") or ""),
            )
            for r in registry
        )
        return cls(entries, {str(a["alias_key"]): str(a["entity_id"]) for a in aliases})

    def remember(self, key: str, entity_id: str) -> None:
        """The office's choice, for the rest of this snapshot's life (it is stored in match_aliases too)."""
        self.aliases[key] = entity_id

    def township_entity(self, township: str) -> str | None:
        slug = self.cfg.townships.get((township or "").strip())
        return f"township:{slug}" if slug else None

    def match(
        self, name: str = "", address: str = "", credit_code: str = "", licence: str = "", township: str = ""
    ) -> Matched | Candidates:
        """The entity these name an exactly or confidently enough, else the candidates to queue.
        Raises :class:`BadIdentifier` for a credit code with a bad check digit."""
        key = alias_key(name, address, self.cfg)
        if credit_code.strip():
            code = check_credit_code(credit_code)
            if code in self.by_id:
                return Matched(code, Match(method=MatchMethod.credit_code, confidence=1.0))
        if licence.strip() and licence.strip() in self.by_licence:
            return Matched(
                self.by_licence[licence.strip()].entity_id, Match(method=MatchMethod.licence, confidence=1.0)
            )
        if key in self.aliases and self.aliases[key] in self.by_id:
            return Matched(self.aliases[key], Match(method=MatchMethod.alias, confidence=1.0))
        nname = normalise_name(name, self.cfg)
        if not nname:
            if credit_code.strip() or licence.strip():
                return Candidates((), "信用代码/许可证号不在名录库中,且未给出主体名称", key)
            tw = self.township_entity(township)
            if tw is not None:
                return Matched(tw, Match(method=MatchMethod.township, confidence=1.0))
            return Candidates((), f"未反映具体单位,乡镇「{township or '空'}」不在乡镇表中", key)
        scored = self._score(nname, normalise_address(address, self.cfg), township.strip())
        cands = tuple(c for c in scored if c.score >= self.cfg.min_candidate)[: self.cfg.candidates]
        if not scored:
            return Candidates((), "名录库中没有相近的主体", key)
        best = scored[0]
        second = scored[1].score if len(scored) > 1 else 0.0
        if best.score >= self.cfg.threshold and best.score - second >= self.cfg.margin:
            return Matched(best.entity_id, Match(method=MatchMethod.name_address, confidence=round(best.score, 3)))
        if best.score >= self.cfg.threshold:
            why = f"多个主体相近(最高 {best.score:.2f},次高 {second:.2f}),需人工确认"
        else:
            why = f"最相近主体得分 {best.score:.2f} 低于阈值 {self.cfg.threshold:.2f}"
        return Candidates(cands, why, key)

    def _score(self, nname: str, naddr: str, township: str) -> list[MatchCandidate]:
        hits = process.extract(nname, self._names, scorer=fuzz.WRatio, limit=20, score_cutoff=30)
        out = []
        for _, name_score, i in hits:
            e = self.entries[i]
            s = name_score / 100.0
            if naddr and self._addresses[i]:
                a = fuzz.partial_ratio(naddr, self._addresses[i]) / 100.0
                s = self.cfg.name_weight * s + self.cfg.address_weight * a
            if township and e.township and township != e.township:
                s *= self.cfg.township_mismatch
            out.append(
                MatchCandidate(entity_id=e.entity_id, name=e.name, address=e.address, township=e.township, score=s)
            )
        out.sort(key=lambda c: -c.score)
        return out


def queue_item(
    fields: Mapping[str, Any],
    topic: str,
    m: Candidates,
    subject: Subject,
    source: str,
) -> MatchQueueItem:
    """The matching-queue record of an event whose entity was not matched with confidence: the event
    (without ``entity_id``), what it named, the candidates and why, keyed by its ``event_id``."""
    now = datetime.now(LOCAL_TZ)
    return MatchQueueItem(
        queue_id=str(fields["event_id"]),
        version=int(now.timestamp() * 1000),
        event_topic=topic,
        event=orjson.dumps(dict(fields), default=str).decode(),
        name=subject.name,
        address=subject.address,
        township=subject.township,
        credit_code=subject.credit_code,
        licence=subject.licence,
        alias_key=m.alias_key,
        candidates=list(m.candidates),
        reason=m.reason,
        source=source,
        at=now,
    )


@dataclass(frozen=True, slots=True)
class Subject:
    """What an event names instead of an ``entity_id``: the business as a citizen or a vendor gives it."""

    name: str = ""
    address: str = ""
    credit_code: str = ""
    licence: str = ""
    township: str = ""

    def match(self, matcher: Matcher) -> Matched | Candidates:
        return matcher.match(self.name, self.address, self.credit_code, self.licence, self.township)


class StoreUnavailable(RuntimeError):
    """The registry could not be read (worker's /query or ClickHouse down)."""


def store_rows(settings: Any, sql: str) -> list[dict[str, Any]]:
    """Rows of a read query, through the worker's ``/query`` on the embedded store (the worker owns
    it) or the ClickHouse server directly, the way ``riskwatch query`` reads."""
    sql = sql.replace("{db}", settings.clickhouse_database)
    if settings.clickhouse_url.startswith("chdb://"):
        import httpx

        from sinks.query_token import auth_headers

        url = f"http://{settings.web_host}:{settings.web_port}/query"
        try:
            body = httpx.post(url, content=sql.encode(), headers=auth_headers(settings), timeout=60).json()
        except (httpx.HTTPError, ValueError) as e:
            raise StoreUnavailable(
                f"名录库读取失败(处理引擎 {url}):{type(e).__name__};请确认 worker 正在运行"
            ) from None
        if "error" in body:
            raise StoreUnavailable(f"名录库读取失败:{body['error']}")
        return [dict(zip(body["columns"], r, strict=True)) for r in body["rows"]]
    from sinks.clickhouse import make_client
    from sinks.query import run_read_query

    try:
        cols, rows = run_read_query(make_client(settings.clickhouse_url), sql)
    except Exception as e:  # noqa: BLE001 — any driver error: the store is unavailable
        raise StoreUnavailable(f"名录库读取失败(ClickHouse):{type(e).__name__}") from None
    return [dict(zip(cols, r, strict=True)) for r in rows]


def load_matcher(settings: Any) -> Matcher:
    """A matcher over the current registry (``registry FINAL``, active) and the office's aliases."""
    return Matcher.from_rows(store_rows(settings, REGISTRY_SQL), store_rows(settings, ALIASES_SQL))
