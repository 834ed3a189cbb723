"""A whole export → Kafka: every row converted (:mod:`edge.imports.rows`), events produced with
``acks=all`` (and idempotence), queued events to ``events.unmatched``, refused rows to the
``deadletter`` topic with the source, and a report CSV (行号, 标识, 状态, 原因) of every row that
was not sent as an event. A file missing a required column is refused before any row is read
(:class:`MissingColumns`). ``dry_run`` converts and reports but sends nothing.

    >>> from riskwatch.domain.catalog import load_catalog
    >>> from edge.matching import Matcher
    >>> data = "工单编号,来电时间,诉求内容\\nGD1,2026-11-27 08:00,x\\n".encode()
    >>> try:
    ...     run_import(data, "a.csv", "complaints", catalog=load_catalog(), matcher=Matcher([]),
    ...                source="import:12345:op", dry_run=True)
    ... except MissingColumns as e:
    ...     print(e)
    缺少必需的列:被反映单位、问题分类、所属乡镇
"""

from __future__ import annotations

import base64
import csv
import getpass
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from edge.imports.layout import Layout, load_layout
from edge.imports.rows import BASE_TOPIC, Outcome, Queued, Ready, Refusal, RowConverter
from edge.imports.table import Table, read_bytes
from edge.matching import Matcher
from riskwatch.domain.catalog import Catalog
from schemas.events import LOCAL_TZ, DeadLetter, MatchQueueItem

PREVIEW = 10
DEADLETTER = "deadletter"


class MissingColumns(ValueError):
    """The file lacks required headers: refused up front, nothing sent."""

    def __init__(self, missing: list[str]):
        super().__init__(f"缺少必需的列:{'、'.join(missing)}")
        self.missing = missing


class Sender(Protocol):
    def send(self, topic: str, key: bytes, value: bytes) -> None: ...
    def flush(self) -> None: ...


class KafkaSender:
    """kafka-python producer, ``acks=all`` and idempotent; :meth:`flush` raises if any send failed."""

    def __init__(self, settings: Any, timeout_s: float = 30.0):
        from kafka import KafkaProducer

        self.settings = settings
        self.timeout_s = timeout_s
        self._p = KafkaProducer(
            **settings.kafka_kwargs(),
            acks="all",
            enable_idempotence=True,
            client_id="riskwatch-import",
            request_timeout_ms=int(timeout_s * 1000),
        )
        self._futures: list[Any] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._futures.append(self._p.send(self.settings.topic(topic), key=key, value=value))

    def flush(self) -> None:
        self._p.flush(timeout=self.timeout_s)
        futures, self._futures = self._futures, []
        for f in futures:
            f.get(timeout=self.timeout_s)  # raises the broker's error: nothing is reported sent that was not

    def close(self) -> None:
        self._p.close(timeout=self.timeout_s)


def operator_source(layout: str, login: str | None = None) -> str:
    """``import:<layout>:<login>``: the workbench passes the logged-in user, the CLI the OS user."""
    return f"import:{layout}:{login or getpass.getuser()}"


@dataclass(slots=True)
class ImportReport:
    kind: str
    layout: str
    file: str
    source: str
    dry_run: bool
    rows: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # by topic (unprefixed)
    matched: Counter[str] = field(default_factory=Counter)  # by match method
    queued: list[Queued] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    preview: list[Outcome] = field(default_factory=list)
    report_path: Path | None = None

    @property
    def ready(self) -> int:
        return sum(self.sent.values())

    def summary(self) -> str:
        verb = "将发送" if self.dry_run else "已发送"
        return (
            f"共 {self.rows} 行:{verb} {self.ready} 条事件,待人工匹配 {len(self.queued)} 条,拒收 {len(self.refused)} 行"
        )


def _dead_letter(r: Refusal, kind: str, source: str, settings: Any) -> DeadLetter:
    payload = orjson.dumps({"row": r.row, "cells": r.cells}, default=str)
    offset = uuid.uuid5(uuid.NAMESPACE_URL, f"{source}:{r.identity}:{r.row}").int >> 65  # stable: re-import replaces
    topic = BASE_TOPIC[kind]
    return DeadLetter(
        topic=settings.topic(topic) if settings is not None else topic,
        partition=-1,
        offset=offset,
        key=r.identity or None,
        payload_b64=base64.b64encode(payload).decode(),
        error=f"第 {r.row} 行:{r.reason}",
        received_at=datetime.now(LOCAL_TZ),
        source=source,
    )


def conform(table: Table, layout: Layout) -> Table:
    """The table with its headers spelt as the layout spells them (``额定压力（MPa）`` → ``额定压力(MPa)``)."""
    names = layout.renames(table.headers)
    if not names:
        return table
    rows = [(n, {names.get(h, h): v for h, v in cells.items()}) for n, cells in table.rows]
    return Table(headers=[names.get(h, h) for h in table.headers], rows=rows)


def write_report(report: ImportReport, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(LOCAL_TZ).strftime("%Y%m%d-%H%M%S")
    p = directory / f"{Path(report.file).stem}.{report.kind}.{stamp}.report.csv"
    with open(p, "w", newline="", encoding="utf-8-sig") as f:  # with BOM: Excel opens it as UTF-8
        w = csv.writer(f)
        w.writerow(["行号", "标识", "状态", "原因"])
        rows: list[tuple[int, str, str, str]] = [(r.row, r.identity, "拒收", r.reason) for r in report.refused]
        rows += [(q.row, q.item.queue_id, "待人工匹配", q.item.reason) for q in report.queued]
        for row in sorted(rows):
            w.writerow(row)
    report.report_path = p
    return p


def run_import(
    data: bytes,
    filename: str,
    kind: str,
    *,
    catalog: Catalog,
    matcher: Matcher,
    source: str,
    dry_run: bool = False,
    sender: Sender | None = None,
    settings: Any = None,
    report_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    table: Table | None = None,
    credit_list: str | None = None,
) -> ImportReport:
    """Convert every row of ``data`` and (unless ``dry_run``) send it through ``sender``."""
    layout = load_layout(kind)
    table = conform(table or read_bytes(data, filename), layout)
    missing = layout.missing(table.headers)
    if missing:
        raise MissingColumns(missing)
    conv = RowConverter(layout, catalog, matcher, source, credit_list=credit_list)
    rep = ImportReport(kind=kind, layout=layout.name, file=filename, source=source, dry_run=dry_run)
    if not dry_run and sender is None:
        raise ValueError("a sender is needed unless dry_run")
    total = len(table.rows)
    for i, (rowno, cells) in enumerate(table.rows, start=1):
        out = conv.convert(rowno, cells)
        rep.rows += 1
        if len(rep.preview) < PREVIEW:
            rep.preview.append(out)
        if isinstance(out, Ready):
            rep.sent[out.topic] += 1
            if out.match is not None:
                rep.matched[out.match.method.value] += 1
            if sender is not None and not dry_run:
                sender.send(out.topic, out.event.entity_id.encode(), out.event.model_dump_json().encode())
        elif isinstance(out, Queued):
            rep.queued.append(out)
            if sender is not None and not dry_run:
                sender.send(MatchQueueItem.topic, out.item.queue_id.encode(), out.item.model_dump_json().encode())
        else:
            rep.refused.append(out)
            if sender is not None and not dry_run:
                dl = _dead_letter(out, kind, source, settings)
                sender.send(DEADLETTER, (out.identity or str(out.row)).encode(), dl.model_dump_json().encode())
        if progress is not None:
            progress(i, total)
    if sender is not None and not dry_run:
        sender.flush()
    if report_dir is not None:
        write_report(rep, report_dir)
    return rep
