"""Workbench accounts: one JSON file under ``var/web`` (never in git), argon2id hashes.

Roles: ``dept`` (staff of one department code of the catalog), ``taskforce`` (the task-force
office: sees and decides everything) and ``leader`` (county leader: reads everything, acts on
nothing). The file is rewritten atomically (temp file + rename) under an exclusive lock, so the CLI
can add or disable accounts while the app runs; the app re-reads it when its mtime changes.

>>> import tempfile, pathlib
>>> store = UserStore(pathlib.Path(tempfile.mkdtemp()) / "users.json")
>>> u, pw = store.add("zhangsan", dept="amr", name="张三")
>>> store.verify("zhangsan", pw).dept, store.verify("zhangsan", "wrong")
('amr', None)
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from web.throttle import LoginThrottle  # noqa: F401  (re-exported: web.deps imports it from here)

ROLES = ("dept", "taskforce", "leader")
_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
_DUMMY = _hasher.hash("riskwatch-dummy")  # verify against this for unknown users: same time as a real check


@dataclass
class User:
    username: str
    name: str
    role: str
    dept: str  # department code; "taskforce" for the office; "" for leaders
    password_hash: str
    disabled: bool = False
    created_at: float = field(default_factory=time.time)
    generation: int = 1  # bumped on disable / password change: a second guard besides deleting the sessions

    @property
    def actor(self) -> str:
        """What alert_history records as the actor: department plus user."""
        return f"{self.dept or self.role}/{self.name}"

    @property
    def sees_all(self) -> bool:
        return self.role in ("taskforce", "leader")

    @property
    def can_act(self) -> bool:
        return self.role in ("dept", "taskforce")


class UserError(ValueError):
    pass


class UserStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache: dict[str, User] = {}
        self._mtime: float | None = None

    # --- file ---------------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, User]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        return {u["username"]: User(**u) for u in raw.get("users", [])}

    def _write(self, users: dict[str, User]) -> None:
        tmp = self.path.with_suffix(".tmp")
        data = {"users": [asdict(u) for u in users.values()]}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def all(self) -> dict[str, User]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime != self._mtime:
            self._cache, self._mtime = self._read(), mtime
        return self._cache

    def get(self, username: str) -> User | None:
        return self.all().get(username)

    # --- changes (CLI) ------------------------------------------------------------------------
    def add(
        self,
        username: str,
        *,
        dept: str = "",
        name: str = "",
        role: str = "dept",
        password: str | None = None,
        departments: tuple[str, ...] | None = None,
    ) -> tuple[User, str]:
        """Add an account; returns it and the password (generated when not given)."""
        if role not in ROLES:
            raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        if (
            not username
            or not username.replace("-", "").replace("_", "").replace(".", "").isalnum()
            or len(username) > 32
        ):
            raise UserError(f"user name {username!r}: use 1–32 letters, digits, '-', '_' or '.'")
        if role == "dept":
            if departments is not None and dept not in departments:
                raise UserError(f"unknown department {dept!r}; known: {', '.join(departments)}")
            if not dept:
                raise UserError("a department account needs --dept (a department code of the catalog)")
        elif role == "taskforce":
            dept = "taskforce"
        else:
            dept = ""
        if password is not None and len(password) < 10:
            raise UserError("password too short: use at least 10 characters (or leave it out to generate one)")
        password = password or secrets.token_urlsafe(12)
        with self._locked():
            users = self._read()
            if username in users:
                raise UserError(
                    f"user {username!r} exists; `riskwatch users disable {username}` first or pick another name"
                )
            u = User(
                username=username, name=name or username, role=role, dept=dept, password_hash=_hasher.hash(password)
            )
            users[username] = u
            self._write(users)
        return u, password

    def set_disabled(self, username: str, disabled: bool = True) -> User:
        with self._locked():
            users = self._read()
            if username not in users:
                raise UserError(f"no user {username!r}; `riskwatch users list` shows them")
            u = users[username]
            u.disabled = disabled
            u.generation += 1
            self._write(users)
        self.end_sessions(username)
        return u

    def reset_password(self, username: str) -> str:
        """A new generated password (printed once by the caller); older sessions end."""
        password = secrets.token_urlsafe(12)
        with self._locked():
            users = self._read()
            if username not in users:
                raise UserError(f"no user {username!r}; `riskwatch users list` shows them")
            u = users[username]
            u.password_hash, u.disabled = _hasher.hash(password), False
            u.generation += 1
            self._write(users)
        self.end_sessions(username)
        return password

    def end_sessions(self, username: str) -> int:
        """Delete the account's server-side sessions (``web/sessions.py``, same directory): at once."""
        from web.sessions import SessionStore
        from web.sqlite import state_path

        return SessionStore(state_path(self.path.parent), idle=0, lifetime=0).revoke_user(username)

    # --- login --------------------------------------------------------------------------------
    def verify(self, username: str, password: str) -> User | None:
        u = self.get(username)
        try:
            _hasher.verify(u.password_hash if u else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        if u is None or u.disabled:
            return None
        return u
