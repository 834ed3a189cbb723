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
    generation: int = 1  # bumped on disable / password change: older sessions stop working

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
        return password

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


class LoginThrottle:
    """After ``limit`` failures within ``window`` seconds the account is locked for ``lock`` seconds
    for that IP; after ``4 × limit`` failures from any IPs (distributed guessing) for everyone.

    With ``path`` (the app uses ``var/web/throttle.json``, next to users.json) the counts and locks
    are kept in a small JSON file, rewritten atomically under a lock at every failure or success:
    a restart does not unlock an account, and app processes sharing the directory share the counts.
    Times are wall-clock seconds then (a monotonic clock does not survive a restart).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "throttle.json"
    >>> t = LoginThrottle(path=p)
    >>> for _ in range(5): _ = t.failure("amr", "10.0.0.1")
    >>> LoginThrottle(path=p).locked_for("amr", "10.0.0.1") > 890    # a new process still sees the lock
    True
    """

    def __init__(
        self, limit: int = 5, lock: float = 15 * 60, window: float = 15 * 60, clock=None, path: Path | None = None
    ):
        self.limit, self.lock, self.window = limit, lock, window
        self.clock = clock or (time.time if path is not None else time.monotonic)
        self.path = Path(path) if path is not None else None
        self._fails: dict[tuple[str, str], list[float]] = {}
        self._locked: dict[str, float] = {}
        self._mtime: int | None = None

    # --- file ---------------------------------------------------------------------------------
    def _sync(self) -> None:
        """Re-read the file if another process (or a previous run) changed it."""
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            self._fails = {tuple(k.split("\t", 1)): [float(x) for x in v] for k, v in raw.get("fails", {}).items()}
            self._locked = {k: float(v) for k, v in raw.get("locked", {}).items()}
        except (ValueError, AttributeError, TypeError):  # a damaged file: start counting afresh, say so in the log
            import logging

            logging.getLogger("riskwatch.web.auth").warning(
                "login throttle file %s unreadable; counts reset", self.path
            )
            self._fails, self._locked = {}, {}
        self._mtime = mtime

    @contextmanager
    def _update(self):
        if self.path is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._mtime = None
            self._sync()
            yield
            now = self.clock()
            fails = {"\t".join(k): v for k, v in self._fails.items() if v and now - v[-1] < self.window}
            locked = {k: v for k, v in self._locked.items() if v > now}
            tmp = self.path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"fails": fails, "locked": locked}, f, ensure_ascii=False)
            os.replace(tmp, self.path)
            self._mtime = self.path.stat().st_mtime_ns

    # --- checks -------------------------------------------------------------------------------
    def locked_for(self, username: str, ip: str) -> float:
        """Seconds the account is still locked (0: not locked)."""
        self._sync()
        until = max(self._locked.get(username, 0.0), self._locked.get(f"{username}@{ip}", 0.0))
        return max(0.0, until - self.clock())

    def failure(self, username: str, ip: str) -> int:
        with self._update():
            now = self.clock()
            for key in ((username, ip), (username, "*")):
                fails = [t for t in self._fails.get(key, []) if now - t < self.window] + [now]
                self._fails[key] = fails
                if len(fails) >= (self.limit if key[1] != "*" else 4 * self.limit):
                    lock_key = username if key[1] == "*" else f"{username}@{ip}"
                    self._locked[lock_key] = now + self.lock
                    if key[1] != "*":
                        self._fails[key] = []
            return len(self._fails.get((username, ip), []))

    def success(self, username: str, ip: str) -> None:
        self._sync()
        if (username, ip) not in self._fails:
            return
        with self._update():
            self._fails.pop((username, ip), None)
