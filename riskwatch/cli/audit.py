"""`riskwatch evidence export|verify` and `riskwatch audit verify`: evidence bundles (远程取证固证)
and the tamper-evident audit trail (formats: schemas/audit.py; docs/evidence-and-audit.md).

Reads ClickHouse like `riskwatch query`: in embedded mode through the running worker (which owns
the chDB directory), else by opening the directory; in server mode from the server.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import typer

from riskwatch.tools.audit_verify import read_rows
from schemas.audit import BUNDLE_FORMAT, bundle_hash, item_hash, verify_bundle

evidence_app = typer.Typer(
    help="Evidence bundles (远程取证固证): export an alert's bundle, verify an export.", no_args_is_help=True
)
audit_app = typer.Typer(
    help="The tamper-evident audit trail of alert_history: verify chains and anchors.", no_args_is_help=True
)


@evidence_app.callback()
def _evidence_group() -> None:
    """Evidence bundles."""


@audit_app.callback()
def _audit_group() -> None:
    """Audit trail."""


def _settings():
    from riskwatch.settings import load_settings

    return load_settings()


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- evidence ---------------------------------------------------------------------------------------
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)[:80]


def write_export(out: Path, header: dict, items: list[dict], bundle_sha: str) -> Path:
    """Write bundle.json, items/NN-name.json and manifest.json (pretty JSON; hashes are over the
    RFC 8785 canonical form, so formatting does not matter, content does)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "items").mkdir(exist_ok=True)
    files = []
    for n, it in enumerate(items):
        f = f"items/{n:02d}-{_safe(it['name'])}.json"
        (out / f).write_text(json.dumps(it, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        files.append({"file": f, "name": it["name"], "sha256": item_hash(it)})
    (out / "bundle.json").write_text(json.dumps(header, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    manifest = {
        "format": BUNDLE_FORMAT,
        "alert_id": header["alert_id"],
        "version": header["version"],
        "final": header["final"],
        "bundle_sha256": bundle_sha,
        "hash": "SHA-256",
        "canonicalization": "RFC 8785 JSON Canonicalization Scheme",
        "items": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return out


def verify_export(d: Path, expect: str | None = None) -> list[str]:
    """Problems of an exported bundle directory (empty: it verifies)."""
    try:
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        header = json.loads((d / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [f"cannot read the export in {d}: {e}"]
    problems = []
    items = []
    for f in manifest.get("items", []):
        try:
            it = json.loads((d / f["file"]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            problems.append(f"item {f['name']!r} ({f['file']}) cannot be read: {e}")
            continue
        items.append(it)
        if item_hash(it) != f["sha256"]:
            problems.append(f"item {f['name']!r} ({f['file']}) does not match its hash in manifest.json (modified)")
    problems += verify_bundle(header, items)
    got = bundle_hash(header)
    if got != manifest.get("bundle_sha256"):
        problems.append(f"bundle.json hashes to {got}, manifest.json says {manifest.get('bundle_sha256')} (modified)")
    if expect and got != expect:
        problems.append(f"bundle hash {got} is not the expected {expect} (from the alert or its audit chain)")
    return list(dict.fromkeys(problems))


@evidence_app.command("export")
def evidence_export(
    alert_id: str = typer.Argument(..., help="The alert's id (alerts.alert_id)"),
    out: Path = typer.Option(..., "--out", help="Directory to write the bundle to"),
    version: int | None = typer.Option(None, "--version", help="Bundle version (default: the latest)"),
) -> None:
    """Write an alert's evidence bundle (JSON + manifest of SHA-256 hashes) and verify it."""
    s = _settings()
    rows = read_rows(
        s,
        f"SELECT version, bundle_hash, header, items FROM {s.clickhouse_database}.evidence FINAL "
        f"WHERE alert_id = {_q(alert_id)} ORDER BY version",
    )
    if version is not None:
        rows = [r for r in rows if int(r["version"]) == version]
    if not rows:
        raise SystemExit(
            f"riskwatch evidence export: no evidence bundle for alert {alert_id!r}"
            + (f" version {version}" if version else "")
            + "; check the id (SELECT alert_id FROM alerts FINAL)"
        )
    r = rows[-1]
    header = json.loads(r["header"])
    items = [json.loads(x) for x in r["items"]]
    if not items and header["items"]:
        raise SystemExit(
            f"riskwatch evidence export: version {r['version']} of {alert_id} is superseded and its items "
            "were folded into the next version; export the latest"
        )
    stored = verify_bundle(header, items, r["bundle_hash"])
    if stored:
        raise SystemExit("riskwatch evidence export: the stored bundle does not verify — " + "; ".join(stored))
    write_export(out, header, items, r["bundle_hash"])
    problems = verify_export(out, r["bundle_hash"])
    if problems:
        raise SystemExit("riskwatch evidence export: the written export does not verify — " + "; ".join(problems))
    typer.echo(f"证据包已导出并校验通过 (exported and verified): {out}")
    typer.echo(
        f"  alert {alert_id} version {r['version']}{' final' if header['final'] else ''}: "
        f"{len(items)} items, bundle sha256 {r['bundle_hash']}"
    )


@evidence_app.command("verify")
def evidence_verify(
    directory: Path = typer.Argument(..., help="A directory written by `riskwatch evidence export`"),
    expect: str | None = typer.Option(None, "--expect", help="The bundle hash it must have (from the alert)"),
) -> None:
    """Re-check an exported bundle: every item against its hash, the bundle against its hash."""
    problems = verify_export(directory, expect)
    if problems:
        for p in problems:
            typer.echo(f"FAIL {p}", err=True)
        raise SystemExit(1)
    m = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    typer.echo(
        f"证据包校验通过 (verified): alert {m['alert_id']} version {m['version']}, {len(m['items'])} items, "
        f"bundle sha256 {m['bundle_sha256']}"
    )


# --- audit ------------------------------------------------------------------------------------------
@audit_app.command("verify")
def audit_verify(
    since: str | None = typer.Option(
        None, "--since", help="Only alerts with history from this date (YYYY-MM-DD) on, and anchors since then"
    ),
    kafka: bool = typer.Option(
        True, "--kafka/--no-kafka", help="Read audit.anchors and alerts.all from Kafka (off: ClickHouse alone)"
    ),
    city: bool | None = typer.Option(
        None, "--city/--no-city", help="Read the city's copy of audit.anchors (default: where city-link runs)"
    ),
    notary: Path = typer.Option(
        Path("var/notary"), "--notary", help="RFC 3161 time stamps of `riskwatch audit notarise` (checked if present)"
    ),
    tsa_ca: Path | None = typer.Option(None, "--tsa-ca", help="PEM root certificate of the TSA: check signatures"),
) -> None:
    """Check every alert's hash chain against its revisions' chain heads and every copy of the anchors
    (Kafka, the city, ClickHouse, RFC 3161); one line per finding, exit 1 on any."""
    from rich.progress import track

    from riskwatch.tools.audit_verify import verify

    if since:
        try:
            datetime.fromisoformat(since)
        except ValueError:
            raise SystemExit(f"riskwatch audit verify: --since {since!r} is not a date; use YYYY-MM-DD") from None
    typer.echo("reading alerts, alert_history, evidence and the anchors …", err=True)
    rep = verify(
        _settings(),
        since,
        kafka=kafka,
        city=city,
        notary=notary,
        tsa_ca=tsa_ca,
        progress=lambda xs: track(list(xs), description="chains", transient=True, console=_stderr()),
    )
    typer.echo(rep.summary())
    for n in rep.notes:
        typer.echo(f"note: {n}", err=True)
    if rep.findings:
        for aid, seq, what in rep.findings:
            typer.echo(f"BROKEN alert {aid or '-'} seq {seq}: {what}", err=True)
        typer.echo(
            f"审计链校验失败 (audit trail broken): {len(rep.findings)} finding(s); the rows above were changed "
            "outside riskwatch",
            err=True,
        )
        raise SystemExit(1)
    typer.echo("审计链校验通过 (audit trail intact)")


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


# --- notarisation (RFC 3161) ------------------------------------------------------------------------
def timestamp_request(data: bytes) -> bytes:
    """A DER RFC 3161 TimeStampReq over SHA-512 of ``data``, with a nonce, asking for the TSA's certificate."""
    from rfc3161_client import TimestampRequestBuilder

    return TimestampRequestBuilder().data(data).nonce(nonce=True).cert_request(cert_request=True).build().as_bytes()


@audit_app.command("notarise")
def audit_notarise(
    tsa: str = typer.Option(
        ..., "--tsa", help="URL of an RFC 3161 time-stamping authority, e.g. https://freetsa.org/tsr"
    ),
    out: Path = typer.Option(Path("var/notary"), "--out", help="Directory for anchor.json, .tsq and .tsr files"),
    since: str | None = typer.Option(None, "--since", help="Only anchors from this date (YYYY-MM-DD) on"),
) -> None:
    """Have a time-stamping authority outside the county sign each anchor (RFC 3161).

    Writes, per anchor, the anchor record (the exact bytes hashed), the request and the signed
    response; check them later with `openssl ts -verify -data X.json -in X.tsr -CAfile tsa-ca.pem`."""
    import hashlib
    import urllib.error
    import urllib.request

    from rfc3161_client import PKIStatus, decode_timestamp_response

    s = _settings()
    rows = read_rows(
        s,
        f"SELECT partition, toUnixTimestamp64Milli(anchored_at) AS at_ms, record FROM "
        f"{s.clickhouse_database}.audit_anchors FINAL"
        + (f" WHERE anchored_at >= toDateTime64({_q(since)}, 3, 'Asia/Shanghai')" if since else "")
        + " ORDER BY anchored_at",
    )
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    with typer.progressbar(rows, label="anchors") as bar:
        for r in bar:
            stem = out / f"anchor-p{r['partition']}-{r['at_ms']}"
            if stem.with_suffix(".tsr").exists():
                continue
            data = r["record"].encode()
            tsq = timestamp_request(data)
            req = urllib.request.Request(
                tsa, data=tsq, method="POST", headers={"Content-Type": "application/timestamp-query"}
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    tsr = resp.read()
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                raise SystemExit(
                    f"riskwatch audit notarise: the TSA at {tsa} did not answer ({e}); "
                    f"{done} anchors notarised so far — check the URL and the network, then rerun"
                ) from None
            try:
                res = decode_timestamp_response(tsr)
            except ValueError as e:
                raise SystemExit(
                    f"riskwatch audit notarise: the TSA at {tsa} sent no RFC 3161 response ({e}); check the URL"
                ) from None
            ok = (PKIStatus.GRANTED.value, PKIStatus.GRANTED_WITH_MODS.value)
            if (
                int(getattr(res.status, "value", res.status)) not in ok
                or res.tst_info.message_imprint.message != hashlib.sha512(data).digest()
            ):
                raise SystemExit(
                    f"riskwatch audit notarise: the TSA refused anchor {stem.name} or signed other data "
                    f"(status {res.status}); check the TSA's policy"
                )
            stem.with_suffix(".json").write_bytes(data)
            stem.with_suffix(".tsq").write_bytes(tsq)
            stem.with_suffix(".tsr").write_bytes(tsr)
            done += 1
    typer.echo(f"{done} anchors notarised by {tsa} into {out} ({len(rows) - done} already were)")
