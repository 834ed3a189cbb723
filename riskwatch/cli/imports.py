"""`riskwatch import registry|complaints|inspections|credit|devices FILE.{xlsx,csv}`: a county export → Kafka.

Column mappings are data (``riskwatch/data/imports/``); ``--dry-run`` shows what would be sent and
sends nothing; refused and queued rows are listed in a report CSV whose path is printed.
``source`` is ``import:<layout>:<OS user>``. See docs/imports.md; the credit exports (信用风险分类结果,
经营异常名录, 严重违法失信名单; ``--list`` when the file has no 名单类型 column): docs/credit.md; the device
ledger (特种设备/物联网设备台账 → events.device, 使用单位 matched to its entity): docs/imports.md."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="导入 Excel/CSV 导出文件 (名录库, 12345 工单, 检查结果, 信用, 设备台账) → Kafka.", no_args_is_help=True
)
REPORT_DIR = Path("var/imports")


def _run(kind: str, file: Path, dry_run: bool, report_dir: Path, credit_list: str | None = None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table as RichTable

    from edge.imports.layout import load_layout
    from edge.imports.rows import Queued, Ready
    from edge.imports.run import KafkaSender, MissingColumns, conform, operator_source, run_import
    from edge.imports.table import TableError, read_table
    from edge.matching import Matcher, StoreUnavailable, load_matcher
    from riskwatch.domain.catalog import load_catalog
    from riskwatch.settings import load_settings

    con = Console()
    settings = load_settings()
    catalog = load_catalog(settings.catalog_path)
    layout = load_layout(kind)
    try:
        table = conform(read_table(file), layout)
    except (OSError, TableError) as e:
        con.print(f"[red]无法读取 {file}:{e}[/red]")
        raise typer.Exit(2) from None
    missing = layout.missing(table.headers)
    if missing:
        con.print(f"[red]{file}: {MissingColumns(missing)}(版式:{layout.title}),未导入任何行[/red]")
        raise typer.Exit(2)
    try:
        matcher = Matcher([]) if kind == "registry" else load_matcher(settings)
    except StoreUnavailable as e:
        con.print(f"[red]{e}[/red]")
        raise typer.Exit(3) from None
    sender = None if dry_run else KafkaSender(settings)
    try:
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=con, transient=True,
        ) as prog:  # fmt: skip
            task = prog.add_task(f"导入 {file.name}", total=len(table.rows))
            rep = run_import(
                b"",
                file.name,
                kind,
                catalog=catalog,
                matcher=matcher,
                source=operator_source(layout.name),
                dry_run=dry_run,
                sender=sender,
                settings=settings,
                report_dir=report_dir,
                progress=lambda i, n: prog.update(task, completed=i),
                table=table,
                credit_list=credit_list,
            )
    finally:
        if sender is not None:
            sender.close()
    if dry_run:
        t = RichTable(title=f"试运行:前 {len(rep.preview)} 行(未发送)")
        for c in ("行号", "结果", "实体", "匹配", "主题 / 原因"):
            t.add_column(c)
        for o in rep.preview:
            if isinstance(o, Ready):
                m = o.match
                how = f"{m.method.value} {m.confidence:.2f}" if m is not None else "—"
                t.add_row(str(o.row), "发送", o.event.entity_id, how, o.topic)
            elif isinstance(o, Queued):
                t.add_row(str(o.row), "待人工匹配", "—", "—", o.item.reason)
            else:
                t.add_row(str(o.row), "[red]拒收[/red]", "—", "—", o.reason)
        con.print(t)
    con.print(rep.summary())
    if rep.sent:
        con.print("按主题:" + ",".join(f"{k} {v}" for k, v in sorted(rep.sent.items())))
    if rep.matched:
        con.print("匹配方式:" + ",".join(f"{k} {v}" for k, v in sorted(rep.matched.items())))
    con.print(f"报告:{rep.report_path}")
    con.print(f"来源:{rep.source}")


def _command(kind: str, help_: str):
    def cmd(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="导出文件 .xlsx 或 .csv"),
        dry_run: bool = typer.Option(False, "--dry-run", help="只显示将发送的内容,不发送"),
        report_dir: Path = typer.Option(REPORT_DIR, "--report-dir", help="报告 CSV 的目录"),
    ) -> None:
        _run(kind, file, dry_run, report_dir)

    cmd.__doc__ = help_
    return cmd


app.command("registry")(_command("registry", "互联网+监管 名录库导出 → events.registry"))
app.command("complaints")(_command("complaints", "12345 工单导出 → events.complaint(匹配主体)"))
app.command("inspections")(_command("inspections", "监督检查结果导出 → events.inspection.<部门>(匹配主体)"))
app.command("devices")(_command("devices", "特种设备 / 物联网设备台账导出 → events.device(按使用单位匹配主体)"))


@app.command("credit")
def credit(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="导出文件 .xlsx 或 .csv"),
    list_: str | None = typer.Option(
        None,
        "--list",
        help="文件没有「名单类型」列时:tier(信用风险分类结果)、abnormal(经营异常名录)、serious(严重违法失信名单)",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="只显示将发送的内容,不发送"),
    report_dir: Path = typer.Option(REPORT_DIR, "--report-dir", help="报告 CSV 的目录"),
) -> None:
    """信用风险分类结果 / 经营异常名录 / 严重违法失信名单导出 → events.credit(按信用代码匹配主体)"""
    from edge.imports.rows import CREDIT_LISTS

    if list_ is not None and list_ not in CREDIT_LISTS:
        raise typer.BadParameter(f"--list 应为 {'、'.join(CREDIT_LISTS)} 之一", param_hint="--list")
    _run("credit", file, dry_run, report_dir, CREDIT_LISTS[list_] if list_ else None)
