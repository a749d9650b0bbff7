#!/usr/bin/python3
"""holistix-backup: consistent, encrypted restic backups of a Holistix environment, and restores.

    holistix-backup run          ENV             stage, back up, copy off-site, then prune (only after success)
    holistix-backup check        ENV             restic check --read-data-subset on every repository
    holistix-backup restore-test ENV [SNAPSHOT] [--from R]   restore a snapshot (default: this installation's
                                                 newest) into scratch and compare it with its manifest
    holistix-backup restore      ENV SNAPSHOT --yes [--from R]   put a snapshot back (database, org data, secrets,
                                                 certificates); R: local (default) or offsite
    holistix-backup snapshots    ENV [--from R]  a repository's snapshots, every installation's (JSON)
    holistix-backup forget       ENV [--repository PATH]   apply the retention policy (also done by run)
    holistix-backup init         ENV             create the local repository if there is none
    holistix-backup status       ENV             JSON: does the local repository exist, how many snapshots (from its files)
    holistix-backup ls           ENV SNAPSHOT    the paths a snapshot holds

Installed by holistix-deploy's backups module (files/backups/holistix_backup.py). Runs as root.
The plan is /etc/holistix-backup/ENV/backup.json (written by the module, no secrets); the
repository password is /etc/holistix-backup/ENV/restic-password (generated on the host, 0600).
Secrets reach restic through files and its environment, never its arguments.

A snapshot is the staging directory /var/lib/holistix/ENV/backup-staging:

    manifest.json              sha256, size and owner of every part; per database and table the row
                               count and an order-independent checksum, taken in the dump's own snapshot
    postgres/roles.sql         the ganymede_* roles (pg_dumpall --roles-only, filtered)
    postgres/<database>.dump   pg_dump -Fc --create of every ganymede_* database
    files/<absolute path>      org data, the environment's secrets and env files, nginx, letsencrypt, coredns

Files are copied by reading each one once through an open descriptor: Ganymede replaces org
data files by rename, so every copy is one whole version of its file, and the manifest's sha256
is of exactly the bytes backed up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

PLAN_DIR = Path("/etc/holistix-backup")
STATE_ROOT = Path("/var/lib/holistix")
SAMPLE_QUERY = (
    # one row per table: name, row count, and the sum of the first 60 bits of each row's md5
    # (order-independent, streams without sorting, cannot overflow numeric)
    "SELECT format('SELECT %L, count(*), coalesce(sum((''x'' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"
    " FROM %I.%I t', schemaname || '.' || tablename, schemaname, tablename)"
    " FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)


class BackupError(Exception):
    pass


def log(message: str) -> None:
    print(f"holistix-backup: {message}", flush=True)


# -- the plan and the paths ---------------------------------------------------------------------------


def load_plan(env: str) -> dict:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", env):
        raise BackupError(f"bad environment name {env!r}")
    path = PLAN_DIR / env / "backup.json"
    if not path.is_file():
        raise BackupError(f"{path} is missing: run the backups module (deploys/backups.py) first")
    return json.loads(path.read_text())


def installation(plan: dict) -> str:
    """The snapshots' host name: the environment and this installation's machine id. restic
    prunes each host's snapshots apart (--group-by host,tags), so a rebuilt host's first
    backups of an empty platform never prune the last good snapshots of the host it replaces."""
    machine_id = Path("/etc/machine-id").read_text().strip()[:12]
    return f"{plan['snapshot_host']}-{machine_id}"


def staging_dir(env: str) -> Path:
    return STATE_ROOT / env / "backup-staging"


def state_file(env: str) -> Path:
    return STATE_ROOT / env / "backup-state.json"


# -- restic ----------------------------------------------------------------------------------------------


def restic_environment(plan: dict, repository: dict) -> dict[str, str]:
    environment = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "RESTIC_PASSWORD_FILE": plan["password_file"],
        "RESTIC_CACHE_DIR": plan["cache_dir"],
        "RESTIC_REPOSITORY": repository["url"],
    }
    # S3 keys: each from its file (the operator's secrets, stored by the base module)
    for variable, path in repository.get("environment_files", {}).items():
        environment[variable] = Path(path).read_text().strip()
    return environment


def restic(plan: dict, repository: dict, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    options = ["-o", f"sftp.command={repository['sftp_command']}"] if repository.get("sftp_command") else []
    done = subprocess.run(
        ["restic", *options, *arguments],
        env=restic_environment(plan, repository),
        capture_output=True,
        text=True,
    )
    if check and done.returncode != 0:
        raise BackupError(
            f"restic {arguments[0]} ({repository['name']}) failed, exit {done.returncode}: {done.stderr.strip()[-800:]}"
        )
    return done


def repository_exists(plan: dict, repository: dict) -> bool:
    probe = restic(plan, repository, "cat", "config", check=False)
    if probe.returncode == 0:
        return True
    # 10: no repository there (0.16+); older restics say so in words
    if probe.returncode == 10 or "does not exist" in probe.stderr or "unable to open config file" in probe.stderr:
        return False
    raise BackupError(f"repository {repository['name']} cannot be opened: {probe.stderr.strip()[-800:]}")


def snapshots(plan: dict, repository: dict) -> list[dict]:
    listing = restic(plan, repository, "snapshots", "--json", "--tag", plan["tag"])
    return json.loads(listing.stdout or "[]") or []


def selected(plan: dict, snapshot: str) -> list[str]:
    """restic's arguments naming ``snapshot``: "latest" is this installation's newest; an id may be
    any host's (a rebuilt host restores the snapshot of the one it replaces)."""
    hosts = ["--host", installation(plan)] if snapshot == "latest" else []
    return [snapshot, *hosts, "--tag", plan["tag"]]


def from_local(plan: dict) -> list[str]:
    """restic's arguments reading the local repository from another one (copy, init of an off-site one)."""
    return ["--from-repo", local_repository(plan)["url"], "--from-password-file", plan["password_file"]]


def forget_arguments(plan: dict) -> list[str]:
    keep = plan["retention"]
    return [
        "forget",
        "--tag",
        plan["tag"],
        "--group-by",
        "host,tags",
        "--keep-daily",
        str(keep["daily"]),
        "--keep-weekly",
        str(keep["weekly"]),
        "--keep-monthly",
        str(keep["monthly"]),
        "--prune",
    ]


# -- staging: the database ---------------------------------------------------------------------------------


def as_postgres(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client as the postgres OS user (peer authentication over the socket)."""
    account = pwd.getpwnam("postgres")
    return subprocess.run(
        command,
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": account.pw_dir, "PGAPPNAME": "holistix-backup"},
        capture_output=True,
        text=True,
        **kwargs,
    )


def run_psql(database: str, script: str) -> subprocess.CompletedProcess:
    """``script`` through psql as postgres: unaligned, tab-separated, stopping at the first error."""
    return as_postgres(
        ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-F", "\t", "-d", database, "-f", "-"], input=script
    )


def psql(database: str, sql: str) -> str:
    done = run_psql(database, sql)
    if done.returncode != 0:
        raise BackupError(f"psql on {database} failed: {done.stderr.strip()[-800:]}")
    return done.stdout


def databases(plan: dict) -> list[str]:
    """The platform's databases; not the live ones a restore set aside (*_pre_restore_<time>)."""
    prefix = plan["database_prefix"].replace("_", "\\_")  # LIKE's "_" is a wildcard
    output = psql(
        "postgres",
        f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'"
        " AND datname NOT LIKE '%\\_pre\\_restore\\_%' ORDER BY 1;",
    )
    return [line for line in output.splitlines() if line]


def parse_samples(output: str) -> dict[str, dict]:
    tables = {}
    for line in output.splitlines():
        if line.count("\t") == 2:
            table, rows, checksum = line.split("\t")
            tables[table] = {"rows": int(rows), "checksum": checksum}
    return tables


def table_samples(database: str) -> dict[str, dict]:
    return parse_samples(psql(database, SAMPLE_QUERY + " \\gexec\n"))


def dump_database(database: str, target: Path) -> dict[str, dict]:
    """pg_dump -Fc --create of ``database`` into ``target`` and the row counts and checksums of
    every table, both from one exported snapshot (so they describe the same moment)."""
    script = (
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
        "SELECT pg_export_snapshot() AS exported \\gset\n"
        "\\setenv HOLISTIX_SNAPSHOT :exported\n"
        f"\\! pg_dump -Fc --create --snapshot=\"$HOLISTIX_SNAPSHOT\" -f '{target}' '{database}' || echo __dump_failed__\n"
        f"{SAMPLE_QUERY} \\gexec\n"
        "COMMIT;\n"
    )
    done = run_psql(database, script)
    if done.returncode != 0 or "__dump_failed__" in done.stdout or not target.is_file() or target.stat().st_size == 0:
        raise BackupError(f"pg_dump of {database} failed: {done.stderr.strip()[-800:]}")
    return parse_samples(done.stdout)


def dump_roles(plan: dict, target: Path) -> list[str]:
    done = as_postgres(["pg_dumpall", "--roles-only"])
    if done.returncode != 0:
        raise BackupError(f"pg_dumpall --roles-only failed: {done.stderr.strip()[-800:]}")
    prefix = re.escape(plan["database_prefix"])
    wanted = re.compile(rf"^(CREATE|ALTER) ROLE ({prefix}[a-z0-9_]*)[ ;]")
    lines = [line for line in done.stdout.splitlines() if wanted.match(line)]
    write_private(target, "".join(line + "\n" for line in lines).encode())
    return sorted({wanted.match(line)[2] for line in lines})


# -- staging: files ------------------------------------------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_tree(source: Path, target: Path, manifest: dict, relative_to: Path) -> None:
    """Copy ``source`` into ``target`` keeping modes, owners and symlinks; each regular file read
    once, hashed as it is copied, and recorded in ``manifest`` by its path under ``relative_to``."""
    for directory, subdirectories, names in os.walk(source, followlinks=False):
        here = Path(directory)
        subdirectories.sort()
        destination = target / here.relative_to(source)
        info = os.lstat(here)
        destination.mkdir(parents=True, exist_ok=True)
        os.chown(destination, info.st_uid, info.st_gid)
        os.chmod(destination, stat.S_IMODE(info.st_mode))
        for name in sorted(names) + [d for d in subdirectories if (here / d).is_symlink()]:
            path = here / name
            info = os.lstat(path)
            copy = destination / name
            key = str(copy.relative_to(relative_to))
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(path), copy)
                manifest[key] = {"link": os.readlink(path)}
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256()
                size = 0
                with open(path, "rb") as reader, open(copy, "wb") as writer:
                    for block in iter(lambda: reader.read(1 << 20), b""):
                        digest.update(block)
                        writer.write(block)
                        size += len(block)
                os.chown(copy, info.st_uid, info.st_gid)
                os.chmod(copy, stat.S_IMODE(info.st_mode))
                manifest[key] = {
                    "sha256": digest.hexdigest(),
                    "size": size,
                    "mode": oct(stat.S_IMODE(info.st_mode)),
                    "owner": _name_of(info.st_uid),
                }
        # symlinked directories are listed in subdirectories but must not be walked into
        subdirectories[:] = [d for d in subdirectories if not (here / d).is_symlink()]


def _name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def empty_directory(path: Path) -> None:
    """``path`` as an empty directory; its contents go, the directory stays (it may be a mount)."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def stage(plan: dict, staging: Path) -> dict:
    """Everything one snapshot holds, in ``staging``; returns the manifest (also written there)."""
    empty_directory(staging)
    # 0711: postgres reaches its own 0700 dump directory inside, and lists nothing else
    staging.chmod(0o711)
    dumps = staging / "postgres"
    dumps.mkdir(mode=0o700)
    postgres = pwd.getpwnam("postgres")
    os.chown(dumps, postgres.pw_uid, postgres.pw_gid)  # pg_dump writes as postgres
    manifest: dict = {
        "format": 1,
        "environment": plan["environment"],
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "databases": {},
        "roles": dump_roles(plan, dumps / "roles.sql"),
        "files": {},
    }
    for database in databases(plan):
        target = dumps / f"{database}.dump"
        manifest["databases"][database] = {"tables": dump_database(database, target)}
    for part in sorted(dumps.iterdir()):
        manifest["files"][str(part.relative_to(staging))] = {"sha256": sha256_file(part), "size": part.stat().st_size}
    for source in plan["paths"]:
        if Path(source).is_dir():
            copy_tree(Path(source), staging / "files" / source.lstrip("/"), manifest["files"], staging)
    write_private(staging / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return manifest


# -- metrics for node_exporter's textfile collector ---------------------------------------------------------


def load_state(env: str) -> dict:
    try:
        return json.loads(state_file(env).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def record(plan: dict, updates: dict) -> None:
    """Merge ``updates`` into the environment's state, then rewrite its metrics atomically."""
    env = plan["environment"]
    state = load_state(env)
    for key, value in updates.items():
        state.setdefault(key, {}).update(value)
    path = state_file(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path.with_suffix(".new"), json.dumps(state, indent=1, sort_keys=True).encode())
    os.replace(path.with_suffix(".new"), path)
    write_metrics(plan, state)


METRICS = (
    # (state key, field, metric, help)
    ("backup", "last_run", "holistix_backup_last_run_timestamp_seconds", "When the last backup run ended."),
    ("backup", "success", "holistix_backup_last_run_success", "1 if the last backup run succeeded, else 0."),
    (
        "backup",
        "last_success",
        "holistix_backup_last_success_timestamp_seconds",
        "When a backup last succeeded (absent until one does).",
    ),
    ("backup", "duration", "holistix_backup_duration_seconds", "How long the last backup run took."),
    ("backup", "staged_bytes", "holistix_backup_size_bytes", "Bytes the last successful backup read."),
    ("backup", "repository_bytes", "holistix_backup_repository_size_bytes", "Size of the repository on disk."),
    ("backup", "snapshots", "holistix_backup_snapshots", "Snapshots in the repository after pruning."),
    ("check", "last_run", "holistix_backup_check_last_run_timestamp_seconds", "When restic check last ran."),
    ("check", "success", "holistix_backup_check_success", "1 if the last restic check found no error, else 0."),
    (
        "restore_test",
        "last_run",
        "holistix_backup_restore_test_last_run_timestamp_seconds",
        "When the restore test last ran.",
    ),
    (
        "restore_test",
        "success",
        "holistix_backup_restore_test_success",
        "1 if the last restore test matched its manifest.",
    ),
    (
        "restore_test",
        "last_success",
        "holistix_backup_restore_test_last_success_timestamp_seconds",
        "When a restore test last matched its manifest (absent until one does).",
    ),
)


def write_metrics(plan: dict, state: dict) -> None:
    env = plan["environment"]
    # a repository taken out of the plan (an off-site one removed) is no longer reported
    configured = {repository["name"] for repository in plan.get("repositories", [{"name": "local"}])}
    # state keys are "<section>:<repository>"
    entries = sorted((*key.split(":", 1), values) for key, values in state.items())
    lines = []
    for section, field, metric, help_text in METRICS:
        samples = [
            (repository, values[field])
            for key_section, repository, values in entries
            if key_section == section and repository in configured and field in values
        ]
        if not samples:
            continue
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for repository, value in samples:
            lines.append(f'{metric}{{environment="{env}",repository="{repository}"}} {value}')
    directory = Path(plan["metrics_dir"])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"holistix_backup_{env}.prom"
    temporary = directory / f".holistix_backup_{env}.prom.new"
    temporary.write_text("\n".join(lines) + "\n")
    temporary.chmod(0o644)
    os.replace(temporary, path)


def directory_bytes(path: Path) -> int:
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(Path(directory) / name).st_size
    return total


# -- the jobs ----------------------------------------------------------------------------------------------------


class Lock:
    """One job per environment at a time (a second one waits for the first)."""

    def __init__(self, env: str):
        self.path = Path("/run/lock", f"holistix-backup-{env}.lock")

    def __enter__(self):
        self.stream = open(self.path, "w")
        fcntl.flock(self.stream, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.stream.close()


def local_repository(plan: dict) -> dict:
    """The plan's first repository: a directory on this host."""
    return plan["repositories"][0]


def init(plan: dict) -> None:
    repository = local_repository(plan)
    Path(repository["url"]).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not repository_exists(plan, repository):
        restic(plan, repository, "init")
        log(f"created the {repository['name']} repository")


def ensure_offsite(plan: dict, repository: dict) -> None:
    if not repository_exists(plan, repository):
        # same chunker parameters as the local repository, so `restic copy` deduplicates
        restic(plan, repository, "init", "--copy-chunker-params", *from_local(plan))
        log(f"created the {repository['name']} repository")


def run(plan: dict) -> int:
    env = plan["environment"]
    started = time.time()
    staging = staging_dir(env)
    local = local_repository(plan)
    failures = []
    try:
        manifest = stage(plan, staging)
        staged_bytes = directory_bytes(staging)
        restic(
            plan,
            local,
            "backup",
            "--host",
            installation(plan),
            "--tag",
            plan["tag"],
            str(staging),
        )
        log(f"backed up {len(manifest['files'])} parts, {len(manifest['databases'])} database(s), {staged_bytes} bytes")
    except (BackupError, OSError) as error:
        # nothing is pruned after a failed backup: every earlier snapshot stays
        record(plan, {"backup:local": {"last_run": int(time.time()), "success": 0, "duration": _since(started)}})
        log(f"FAILED, nothing pruned: {error}")
        return 1
    finally:
        empty_directory(staging)  # a second copy of the database must not stay on disk
    try:
        restic(plan, local, *forget_arguments(plan))
    except BackupError as error:
        failures.append("local")
        log(f"the snapshot was taken, but pruning FAILED: {error}")
    record(
        plan,
        {
            "backup:local": {
                "last_run": int(time.time()),
                "success": 1,
                "last_success": int(time.time()),
                "duration": _since(started),
                "staged_bytes": staged_bytes,
                "snapshots": len(snapshots(plan, local)),
                "repository_bytes": directory_bytes(Path(local["url"])),
            }
        },
    )
    for repository in plan["repositories"][1:]:
        key = f"backup:{repository['name']}"
        try:
            ensure_offsite(plan, repository)
            restic(plan, repository, "copy", "--tag", plan["tag"], *from_local(plan))
            restic(plan, repository, *forget_arguments(plan))
            count = len(snapshots(plan, repository))
        except BackupError as error:
            failures.append(repository["name"])
            record(plan, {key: {"last_run": int(time.time()), "success": 0}})
            log(f"FAILED to copy to the {repository['name']} repository, its snapshots are unchanged: {error}")
            continue
        record(
            plan,
            {key: {"last_run": int(time.time()), "success": 1, "last_success": int(time.time()), "snapshots": count}},
        )
        log(f"copied to the {repository['name']} repository ({count} snapshots)")
    return 1 if failures else 0


def _since(started: float) -> float:
    return round(time.time() - started, 3)


def check(plan: dict) -> int:
    status = 0
    for repository in plan["repositories"]:
        done = restic(plan, repository, "check", f"--read-data-subset={plan['check_subset']}", check=False)
        ok = done.returncode == 0
        record(plan, {f"check:{repository['name']}": {"last_run": int(time.time()), "success": int(ok)}})
        log(f"check of the {repository['name']} repository: {'no errors' if ok else 'FAILED'}")
        if not ok:
            print(done.stderr.strip()[-2000:], file=sys.stderr)
            status = 1
    return status


def repository_named(plan: dict, name: str) -> dict:
    for repository in plan["repositories"]:
        if repository["name"] == name:
            return repository
    names = ", ".join(repository["name"] for repository in plan["repositories"])
    raise BackupError(f"no {name} repository in the plan (repositories: {names})")


def restore_snapshot(plan: dict, snapshot: str, target: Path, source: str = "local") -> Path:
    """Restore ``snapshot`` of the ``source`` repository into ``target``; returns the staging tree in it."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    target.chmod(0o711)  # postgres reaches the dumps (its own 0700 directory) to restore them
    # the whole snapshot (restic 0.14 has no snapshot:subfolder), then its staging tree
    restic(plan, repository_named(plan, source), "restore", *selected(plan, snapshot), "--target", str(target))
    tree = target / str(staging_dir(plan["environment"])).lstrip("/")
    if not (tree / "manifest.json").is_file():
        raise BackupError(f"snapshot {snapshot} holds no manifest.json: not a holistix-backup snapshot")
    # pg_restore reads the dumps as postgres, whose uid may differ on a rebuilt host
    postgres = pwd.getpwnam("postgres")
    os.chown(tree / "postgres", postgres.pw_uid, postgres.pw_gid)
    return tree


def verify_files(tree: Path) -> dict:
    """The restored manifest, after checking every part against it; BackupError names the first difference."""
    manifest = json.loads((tree / "manifest.json").read_text())
    for relative, expected in sorted(manifest["files"].items()):
        path = tree / relative
        if "link" in expected:
            if not path.is_symlink() or os.readlink(path) != expected["link"]:
                raise BackupError(f"{relative}: the restored link differs from the manifest")
        elif not path.is_file() or sha256_file(path) != expected["sha256"]:
            raise BackupError(f"{relative}: the restored file's sha256 differs from the manifest")
    return manifest


def compare_tables(database: str, restored: str, expected: dict) -> None:
    found = table_samples(restored)
    if found != expected:
        differing = sorted(set(found) ^ set(expected)) or sorted(t for t in expected if found.get(t) != expected[t])
        raise BackupError(f"database {database}: restored tables differ from the manifest ({', '.join(differing[:5])})")


def restore_test(plan: dict, source: str = "local", snapshot: str = "latest") -> int:
    env = plan["environment"]
    scratch = STATE_ROOT / env / "restore-test"
    scratch_databases = []
    try:
        tree = restore_snapshot(plan, snapshot, scratch, source)
        manifest = verify_files(tree)
        for database, content in sorted(manifest["databases"].items()):
            scratch_name = f"holistix_restore_test_{database}"[:63]
            scratch_databases.append(scratch_name)
            psql(
                "postgres",
                f'DROP DATABASE IF EXISTS "{scratch_name}";\nCREATE DATABASE "{scratch_name}" TEMPLATE template0;\n',
            )
            dump = tree / "postgres" / f"{database}.dump"
            restored = as_postgres(["pg_restore", "--exit-on-error", "--no-owner", "-d", scratch_name, str(dump)])
            if restored.returncode != 0:
                raise BackupError(f"pg_restore of {database} failed: {restored.stderr.strip()[-800:]}")
            compare_tables(database, scratch_name, content["tables"])
        tables = sum(len(content["tables"]) for content in manifest["databases"].values())
        log(
            f"restore test passed: {len(manifest['files'])} parts and {tables} tables match the manifest of {manifest['created']}"
        )
        ok = 1
    except (BackupError, OSError, ValueError) as error:
        log(f"restore test FAILED: {error}")
        ok = 0
    finally:
        for name in scratch_databases:
            _drop_quietly(name)
        shutil.rmtree(scratch, ignore_errors=True)
    now = int(time.time())
    record(
        plan,
        {
            f"restore_test:{source}": {
                "last_run": now,
                "success": ok,
                **({"last_success": now} if ok else {}),
            }
        },
    )
    return 0 if ok else 1


def _drop_quietly(database: str) -> None:
    try:
        psql("postgres", f'DROP DATABASE IF EXISTS "{database}";\n')
    except BackupError as error:
        log(f"could not drop the scratch database {database}: {error}")


# -- restore ------------------------------------------------------------------------------------------------------


def systemctl(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["systemctl", *arguments], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise BackupError(f"systemctl {' '.join(arguments)} failed: {done.stderr.strip()}")
    return done


def restore(plan: dict, snapshot: str, source: str = "local") -> int:
    env = plan["environment"]
    stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
    scratch = STATE_ROOT / env / f"restore-{stamp}"
    tree = restore_snapshot(plan, snapshot, scratch, source)
    manifest = verify_files(tree)
    log(
        f"snapshot {snapshot} of the {source} repository ({manifest['created']}) restored into {scratch} and matches its manifest"
    )

    # nothing may write the database or the org data while they are swapped
    stopped = [unit for unit in (f"holistix-gateway-pool@{env}.service", f"ganymede@{env}.service") if _active(unit)]
    for unit in stopped:
        systemctl("stop", unit)
        log(f"stopped {unit}")

    roles = (tree / "postgres" / "roles.sql").read_text().splitlines()
    existing = set(psql("postgres", "SELECT rolname FROM pg_roles;").split())
    for role in manifest["roles"]:
        if role not in existing:
            psql(
                "postgres",
                "".join(line + "\n" for line in roles if re.match(rf"^(CREATE|ALTER) ROLE {role}[ ;]", line)),
            )
            log(f"created role {role}")

    try:
        for database, content in sorted(manifest["databases"].items()):
            restore_database(database, tree / "postgres" / f"{database}.dump", content["tables"], stamp)
    except BackupError:
        if stopped:
            log(f"still stopped: {', '.join(stopped)} (systemctl start them once the database is sorted out)")
        raise

    restored_paths = [Path(path) for path in plan["restore_paths"]]
    for live in restored_paths:
        copy = tree / "files" / str(live).lstrip("/")
        if not copy.exists():
            continue
        if live.exists():
            aside = live.with_name(f"{live.name}.pre-restore-{stamp}")
            os.rename(live, aside)
            log(f"kept the live {live} as {aside}")
        shutil.copytree(copy, live, symlinks=True)
        _copy_owners(copy, live)
        log(f"restored {live}")

    _platform_fixups(plan, stopped)
    shutil.rmtree(scratch, ignore_errors=True)
    log(
        "restore done. Next: run the converge (pyinfra inventories/<env>.py deploys/all.py), then check the platform; "
        f"drop the *_pre_restore_{stamp} databases and remove the *.pre-restore-{stamp} directories once satisfied"
    )
    return 0


def _active(unit: str) -> bool:
    return systemctl("is-active", "--quiet", unit, check=False).returncode == 0


def _copy_owners(source: Path, target: Path) -> None:
    for directory, subdirectories, names in os.walk(source):
        for name in [*subdirectories, *names]:
            info = os.lstat(Path(directory) / name)
            os.lchown(target / Path(directory).relative_to(source) / name, info.st_uid, info.st_gid)
    info = os.lstat(source)
    os.chown(target, info.st_uid, info.st_gid)


def restore_database(database: str, dump: Path, tables: dict, stamp: str) -> None:
    """Restore ``dump`` under its own name (pg_restore --create brings back the database's grants
    and settings too) after renaming the live database aside; put the live one back if the
    restored one does not match its manifest."""
    aside = f"{database}_pre_restore_{stamp}"[:63]
    exists = psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{database}';").strip() == "1"
    if exists:
        psql(
            "postgres",
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}';\n"
            f'ALTER DATABASE "{database}" RENAME TO "{aside}";\n',
        )
    restored = as_postgres(["pg_restore", "--exit-on-error", "--create", "-d", "postgres", str(dump)])
    try:
        if restored.returncode != 0:
            raise BackupError(f"pg_restore of {database} failed: {restored.stderr.strip()[-800:]}")
        compare_tables(database, database, tables)
    except BackupError:
        _drop_quietly(database)
        if exists:
            psql("postgres", f'ALTER DATABASE "{aside}" RENAME TO "{database}";\n')
            log(f"put the live {database} back")
        raise
    log(f"restored database {database}" + (f" (the live one kept as {aside})" if exists else ""))


def _platform_fixups(plan: dict, stopped: list[str]) -> None:
    """Platform contract 1.11: the restored gateway rows describe containers and allocations that
    no longer exist. Remove them (allocations go with them), remove the pool's containers, tokens
    and per-organisation nginx blocks, then start Ganymede and let the pool register anew."""
    env = plan["environment"]
    for database in databases(plan):
        if psql(database, "SELECT to_regclass('public.gateways') IS NOT NULL;").strip() == "t":
            psql(database, "DELETE FROM gateways;\n")
            log(f"removed the stale gateway registrations from {database}")
    tokens = Path("/etc/holistix", env, "gateways")
    for token in tokens.glob("*.token") if tokens.is_dir() else []:
        token.unlink()
    if shutil.which("docker"):
        listing = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=holistix.gateway-pool={env}"], capture_output=True, text=True
        )
        if listing.stdout.split():
            subprocess.run(["docker", "rm", "-f", *listing.stdout.split()], capture_output=True, check=False)
            log("removed the pool's containers")
    blocks = Path(plan["nginx_gateways_dir"])
    for block in blocks.glob("*.conf") if blocks.is_dir() else []:
        block.unlink()
    if shutil.which("nginx") and subprocess.run(["nginx", "-t"], capture_output=True).returncode == 0:
        systemctl("reload", "nginx.service", check=False)
    if f"ganymede@{env}.service" in stopped or Path("/etc/systemd/system/ganymede@.service").exists():
        systemctl("start", f"ganymede@{env}.service", check=False)
    pool = Path("/usr/local/sbin/holistix-gateway-pool")
    if pool.exists() and Path("/etc/holistix", env, "gateway-pool.json").exists():
        subprocess.run(["/usr/local/sbin/holistix-release", "wait", env], capture_output=True, check=False)
        converged = subprocess.run([str(pool), "converge", env], capture_output=True, text=True)
        if converged.returncode != 0:
            raise BackupError(f"the pool did not come back: {converged.stderr.strip()[-800:]}")
        systemctl("start", f"holistix-gateway-pool@{env}.service", check=False)
        log("the gateway pool is registered anew")


# -- command line -------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="holistix-backup", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action", choices=["run", "check", "restore-test", "restore", "snapshots", "ls", "forget", "init", "status"]
    )
    parser.add_argument("environment")
    parser.add_argument("snapshot", nargs="?", default=None)
    parser.add_argument("--yes", action="store_true", help="restore: confirm replacing the live data")
    parser.add_argument("--repository", help="forget: a local repository other than the plan's (drills)")
    parser.add_argument(
        "--from", dest="source", default="local", help="restore, restore-test, snapshots, ls: the repository to read"
    )
    arguments = parser.parse_args(argv)
    plan = load_plan(arguments.environment)
    if arguments.action == "status":
        # read from the repository's layout, not through restic: a converge asks this on every run,
        # and each restic command opens the key through scrypt (about half a second)
        local = Path(local_repository(plan)["url"])
        exists = (local / "config").is_file()
        count = sum(1 for _ in (local / "snapshots").iterdir()) if exists else 0
        print(json.dumps({"repository": exists, "snapshots": count}))
        return 0
    if arguments.action == "snapshots":
        print(json.dumps(snapshots(plan, repository_named(plan, arguments.source)), indent=1))
        return 0
    if arguments.action == "ls":
        listing = restic(
            plan, repository_named(plan, arguments.source), "ls", *selected(plan, arguments.snapshot or "latest")
        )
        print("\n".join(line for line in listing.stdout.splitlines() if line.startswith("/")))
        return 0
    with Lock(arguments.environment):
        if arguments.action == "init":
            init(plan)
            return 0
        if arguments.action == "run":
            return run(plan)
        if arguments.action == "check":
            return check(plan)
        if arguments.action == "restore-test":
            return restore_test(plan, arguments.source, arguments.snapshot or "latest")
        if arguments.action == "forget":
            repository = dict(local_repository(plan))
            if arguments.repository:
                repository.update(url=str(Path(arguments.repository).resolve()), name="drill")
            restic(plan, repository, *forget_arguments(plan))
            return 0
        if not arguments.snapshot or not arguments.yes:
            raise BackupError(
                "restore replaces the live database, org data, secrets and certificates: "
                "holistix-backup restore ENV SNAPSHOT --yes (SNAPSHOT: an id from `holistix-backup snapshots ENV`, or latest)"
            )
        return restore(plan, arguments.snapshot, arguments.source)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BackupError as error:
        print(f"holistix-backup: {error}", file=sys.stderr)
        sys.exit(1)
