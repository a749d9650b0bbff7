#!/usr/bin/python3
"""holistix-db-migrate: apply a platform build's database/ directory to one database.

    holistix-db-migrate check DATABASE DIRECTORY   # what is pending; exit 2 on a changed applied file
    holistix-db-migrate apply DATABASE DIRECTORY   # apply what is pending, each file in a transaction

Installed by holistix-deploy's postgres module (files/postgres/db_migrate.py). Runs as root,
talks to PostgreSQL as the postgres OS user through psql on the local socket.

Order and rules:
  schema/*.sql      only into a new database (the platform's schema drops everything first);
                    a database with tables but no record of its schema is refused
  migrations/*.sql  each file once, in name order; an applied file whose content changed is
                    an error (add a new migration instead)
  procedures/*.sql  re-runnable (CREATE OR REPLACE): applied again whenever its content changes
Every applied file is recorded with its sha256 in holistix.schema_migrations; a file and its
record are one transaction, so a failing file leaves the database as it was.
"""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

LEDGER = "holistix.schema_migrations"


def psql(database: str, sql: str, *, single_transaction: bool = False) -> subprocess.CompletedProcess:
    command = [
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        database,
    ]
    if single_transaction:
        command.append("--single-transaction")
    return subprocess.run(command, input=sql, capture_output=True, text=True)


def applied(database: str) -> dict[str, str] | None:
    """Recorded files and their sha256; None when the database does not exist yet."""
    result = psql(database, f"SELECT path, sha256 FROM {LEDGER} ORDER BY path;")
    if result.returncode != 0:
        if "does not exist" in result.stderr and "database" in result.stderr:
            return None
        if f'relation "{LEDGER}" does not exist' in result.stderr:
            return {}
        raise SystemExit(f"error reading {LEDGER} in {database}: {result.stderr.strip()}")
    return dict(line.split("|", 1) for line in result.stdout.splitlines() if "|" in line)


def public_tables(database: str) -> int:
    result = psql(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';")
    return int(result.stdout.strip() or 0) if result.returncode == 0 else 0


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.sql")


def plan(database: str, directory: Path) -> tuple[list[tuple[str, Path, str]], list[str]]:
    """(pending files as (path, file, sha256), errors)."""
    unsafe = [
        file.name
        for part in ("schema", "migrations", "procedures")
        if (directory / part).is_dir()
        for file in (directory / part).glob("*.sql")
        if not SAFE_NAME.fullmatch(file.name)
    ]
    if unsafe:
        return [], [f"file names may hold only letters, digits and ._- (they go into SQL): {unsafe}"]
    done = applied(database)
    new_database = done is None or not any(path.startswith("schema/") for path in done)
    pending, errors = [], []
    for part in ("schema", "migrations", "procedures"):
        for file in sorted((directory / part).glob("*.sql")) if (directory / part).is_dir() else []:
            path, digest = f"{part}/{file.name}", hashlib.sha256(file.read_bytes()).hexdigest()
            recorded = (done or {}).get(path)
            if part == "schema":
                if new_database:
                    if done is not None and public_tables(database):
                        errors.append(
                            f"{database} has tables but no record of its schema: refusing to run "
                            "schema/ (it drops everything); record or drop the database by hand"
                        )
                        return [], errors
                    pending.append((path, file, digest))
            elif recorded is None or (part == "procedures" and recorded != digest):
                pending.append((path, file, digest))
            elif recorded != digest:
                errors.append(
                    f"{path} was applied with sha256 {recorded[:12]}... and now has {digest[:12]}...: "
                    "an applied migration never changes; put the change in a new migration file"
                )
    return pending, errors


def apply(database: str, pending: list[tuple[str, Path, str]]) -> None:
    setup = psql(
        database,
        f"CREATE SCHEMA IF NOT EXISTS holistix; CREATE TABLE IF NOT EXISTS {LEDGER} ("
        "path text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
        "REVOKE ALL ON SCHEMA holistix FROM PUBLIC;",
    )
    if setup.returncode != 0:
        raise SystemExit(f"error creating {LEDGER}: {setup.stderr.strip()}")
    # the whole schema/ is one transaction (its first file drops everything: half a schema is no
    # schema); every other file is a transaction of its own
    schema = [entry for entry in pending if entry[0].startswith("schema/")]
    batches = ([schema] if schema else []) + [[entry] for entry in pending if not entry[0].startswith("schema/")]
    for batch in batches:
        script = "".join(
            f"\\i {file}\n"
            f"INSERT INTO {LEDGER} (path, sha256) VALUES ('{path}', '{digest}') "
            "ON CONFLICT (path) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now();\n"
            for path, file, digest in batch
        )
        names = ", ".join(path for path, _, _ in batch)
        result = psql(database, script, single_transaction=True)
        if result.returncode != 0:
            raise SystemExit(f"{names} failed and was rolled back, nothing of it is applied: {result.stderr.strip()}")
        for path, _, _ in batch:
            print(f"applied {path}")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("check", "apply"):
        print(__doc__, file=sys.stderr)
        return 64
    mode, database, directory = argv[0], argv[1], Path(argv[2])
    pending, errors = plan(database, directory)
    for error in errors:
        print(f"error {error}")
    if errors:
        return 2
    if mode == "check":
        for path, _, _ in pending:
            print(f"pending {path}")
        return 0
    apply(database, pending)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
