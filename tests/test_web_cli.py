"""`riskwatch users add|list|disable` and `riskwatch web status` (no server needed)."""

from __future__ import annotations

from typer.testing import CliRunner

from riskwatch.cli.main import app
from web.users import UserStore


def test_users_add_list_disable(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKWATCH_WORKBENCH_DIR", str(tmp_path))
    run = CliRunner().invoke
    r = run(app, ["users", "add", "--dept", "amr", "--name", "张三"])
    assert r.exit_code == 0, r.output
    assert "added amr-1 (张三, dept, amr)" in r.output
    pw = r.output.split("password (shown once): ")[1].strip()
    store = UserStore(tmp_path / "users.json")
    assert store.verify("amr-1", pw).actor == "amr/张三"
    assert pw not in (tmp_path / "users.json").read_text() and "$argon2id$" in (tmp_path / "users.json").read_text()
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0  # not readable by others
    assert "amr-2" in run(app, ["users", "add", "--dept", "amr", "--name", "李四"]).output
    r = run(app, ["users", "add", "--dept", "nosuch", "--name", "x"])
    assert r.exit_code != 0 and "unknown department" in r.output
    r = run(app, ["users", "add", "--role", "leader", "--name", "县长", "--user", "leader"])
    assert r.exit_code == 0 and "leader" in r.output
    assert run(app, ["users", "disable", "amr-1"]).exit_code == 0
    assert store.verify("amr-1", pw) is None
    out = run(app, ["users", "list"]).output
    assert "amr-1" in out and "disabled" in out and "$argon2" not in out
    monkeypatch.setenv("RISKWATCH_WORKBENCH_PORT", "1")
    assert "stopped" in run(app, ["web", "status"]).output
