"""Apply deploy/kafka/acls.yaml to the broker: SCRAM users, then ACLs (run by compose's kafka-init).

    python deploy/kafka/apply_acls.py deploy/kafka/acls.yaml          # apply (idempotent)
    python deploy/kafka/apply_acls.py deploy/kafka/acls.yaml --plan   # print the bindings only
    python deploy/kafka/apply_acls.py deploy/kafka/acls.yaml --writers  # topic → who may write it

Connects as the broker's super user ``admin`` over SASL/PLAIN (env KAFKA_BOOTSTRAP, default
kafka:9092, and KAFKA_ADMIN_PASSWORD). Department users and every ``per_department`` rule are
generated for each department code of the catalog (``departments.catalog``). For every user:
upsert its SCRAM-SHA-512 credential from the environment variable it names, create its ACLs
(creating an existing ACL is a no-op), and delete ACLs of that user that are no longer in the file.
Users not in the file are left alone. Exits non-zero, naming the variable, when a password is missing.

:func:`plan` is pure (no Kafka) and is what tests/test_compose.py checks.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

OPERATIONS = {
    "all",
    "read",
    "write",
    "create",
    "delete",
    "alter",
    "describe",
    "describe_configs",
    "alter_configs",
    "idempotent_write",
}
RESOURCES = {"topic", "group", "cluster", "transactional_id"}
PATTERNS = {"literal", "prefixed"}


@dataclass(frozen=True)
class Binding:
    user: str
    resource: str  # topic | group | cluster | transactional_id
    pattern: str  # literal | prefixed
    name: str
    operation: str


@dataclass(frozen=True)
class Plan:
    mechanism: str
    passwords: dict[str, str]  # user -> name of the env var with its password
    bindings: tuple[Binding, ...]
    departments: dict[str, str]  # department code -> user

    def allowed(self, user: str, operation: str, resource: str = "topic") -> list[Binding]:
        return [
            b for b in self.bindings if b.user == user and b.resource == resource and b.operation in (operation, "all")
        ]


def _bindings(user: str, allow: list[dict], fmt: dict[str, str]) -> list[Binding]:
    out = []
    for n, a in enumerate(allow):
        res, pat = a["resource"], a.get("pattern", "literal")
        if res not in RESOURCES or pat not in PATTERNS:
            raise ValueError(
                f"user {user} rule {n}: resource must be one of {sorted(RESOURCES)}, pattern one of {sorted(PATTERNS)}"
            )
        for op in a["operations"]:
            if op not in OPERATIONS:
                raise ValueError(f"user {user} rule {n}: unknown operation {op!r}; known: {sorted(OPERATIONS)}")
            out.append(Binding(user, res, pat, str(a["name"]).format(**fmt), op))
    return out


def department_codes(path: Path, d: dict) -> list[str]:
    """The department codes: those of the catalog named by ``departments.catalog`` (a path relative
    to the ACL file), else the list ``departments.codes``."""
    if d.get("catalog"):
        cat = yaml.safe_load((path.parent / d["catalog"]).read_text(encoding="utf-8"))
        return [str(x["code"]) for x in cat["departments"]]
    return [str(c) for c in d.get("codes", [])]


def plan(path: str | Path) -> Plan:
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    d = doc.get("departments") or {}
    codes = department_codes(path, d)
    passwords, bindings, depts = {}, [], {}
    for user, spec in (doc.get("users") or {}).items():
        passwords[user] = spec["password_env"]
        bindings += _bindings(user, spec.get("allow", []), {})
        for code in codes:  # rules repeated for every department ({code}), e.g. the workbench's writes
            bindings += _bindings(user, spec.get("per_department", []), {"code": code, "CODE": code.upper()})
    for code in codes:
        fmt = {"code": code, "CODE": code.upper()}
        user = d["user"].format(**fmt)
        if user in passwords:
            raise ValueError(f"department user {user} is also listed under users")
        depts[code] = user
        passwords[user] = d["password_env"].format(**fmt)
        bindings += _bindings(user, d.get("allow", []), fmt)
    return Plan(doc.get("mechanism", "SCRAM-SHA-512"), passwords, tuple(bindings), depts)


def writers(p: Plan) -> dict[str, list[str]]:
    """Topic name or prefix (``events.*``) → the users that may write it, in file order."""
    out: dict[str, list[str]] = {}
    for b in p.bindings:
        if b.resource == "topic" and b.operation in ("write", "all"):
            users = out.setdefault(b.name + ("*" if b.pattern == "prefixed" else ""), [])
            if b.user not in users:
                users.append(b.user)
    return out


def apply(p: Plan, bootstrap: str, admin_password: str) -> None:
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )  # fmt: skip

    from kafka import KafkaAdminClient

    missing = [env for env in p.passwords.values() if not os.environ.get(env)]
    if missing:
        raise SystemExit(f"apply_acls: set the password variable(s) {', '.join(missing)} (see .env.example)")
    admin = None
    for _attempt in range(60):  # the broker may still be starting
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap,
                client_id="riskwatch-acls",
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_plain_username="admin",
                sasl_plain_password=admin_password,
            )
            break
        except Exception as e:  # noqa: BLE001
            print(f"apply_acls: waiting for Kafka at {bootstrap} ({e})", file=sys.stderr)
            time.sleep(2)
    if admin is None:
        raise SystemExit(f"apply_acls: cannot reach Kafka at {bootstrap}")
    mech = ScramMechanism.SCRAM_SHA_512 if p.mechanism == "SCRAM-SHA-512" else ScramMechanism.SCRAM_SHA_256
    admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(u, mech, os.environ[env]) for u, env in p.passwords.items()]
    )
    print(f"apply_acls: {len(p.passwords)} SCRAM users upserted")

    def acl(b: Binding) -> ACL:
        rp = ResourcePattern(ResourceType[b.resource.upper()], b.name, ACLResourcePatternType[b.pattern.upper()])
        return ACL(f"User:{b.user}", "*", ACLOperation[b.operation.upper()], ACLPermissionType.ALLOW, rp)

    def key(a) -> tuple:  # kafka-python's ACL has no value equality
        r = a.resource_pattern
        return (
            a.principal,
            a.host,
            int(a.operation),
            int(a.permission_type),
            int(r.resource_type),
            r.resource_name,
            int(r.pattern_type),
        )

    wanted = {key(a): a for a in map(acl, p.bindings)}
    admin.create_acls(list(wanted.values()))
    stale = []
    for user in p.passwords:
        flt = ACLFilter(
            f"User:{user}",
            None,
            ACLOperation.ANY,
            ACLPermissionType.ANY,
            ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
        )
        current, _err = admin.describe_acls(flt)
        stale += [a for a in current if key(a) not in wanted]
    if stale:
        admin.delete_acls(
            [
                ACLFilter(
                    a.principal,
                    a.host,
                    a.operation,
                    a.permission_type,
                    ResourcePatternFilter(
                        a.resource_pattern.resource_type,
                        a.resource_pattern.resource_name,
                        a.resource_pattern.pattern_type,
                    ),
                )
                for a in stale
            ]
        )
    print(f"apply_acls: {len(wanted)} ACLs in place, {len(stale)} stale removed")
    admin.close()


def main(argv: list[str]) -> None:
    path = argv[1] if len(argv) > 1 and not argv[1].startswith("-") else str(Path(__file__).with_name("acls.yaml"))
    p = plan(path)
    if "--plan" in argv:
        for b in p.bindings:
            print(f"User:{b.user}\tALLOW\t{b.operation}\t{b.resource}:{b.pattern}:{b.name}")
        return
    if "--writers" in argv:  # which principal writes which topic (docs/security.md)
        for topic, users in writers(p).items():
            print(f"{topic}\t{' '.join(users)}")
        return
    pw = os.environ.get("KAFKA_ADMIN_PASSWORD")
    if not pw:
        raise SystemExit("apply_acls: set KAFKA_ADMIN_PASSWORD")
    apply(p, os.environ.get("KAFKA_BOOTSTRAP", "kafka:9092"), pw)


if __name__ == "__main__":
    main(sys.argv)
