"""make bench: what backing up and restoring a database of about 1 GB costs on a staging host,
holistix-backup (pg_dump -Fc in an exported snapshot, row counts and checksums, restic) against
plain `pg_dump -Fc` / `pg_restore` of the same database.

Reports, for a fresh converged staging host (or --reuse NAME, a converged one):
  - the database's size (pg_database_size) and how long making it took;
  - plain pg_dump -Fc: time and dump size; plain pg_restore into a fresh database: time;
  - holistix-backup run, first: time and repository growth; second, nothing changed: time and growth;
  - holistix-backup restore-test (restic restore, sha256 of every part, pg_restore into a
    scratch database, counts and checksums compared): time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from staging import HARNESS, fresh_converged_host, report, run

BACKUP = "/usr/local/sbin/holistix-backup"
ENV = "staging"
DATABASE = "ganymede_bench"  # a ganymede_* database: holistix-backup dumps it with the platform's


def on_host(name: str, script: str) -> tuple[float, str]:
    """Run ``script`` with bash as root inside the staging host: (seconds, stdout)."""
    start = time.monotonic()
    done = run([HARNESS, "exec", name, "bash", "-c", f"set -euo pipefail; cd /; {script}"])
    return time.monotonic() - start, done.stdout.strip()


def repository_bytes(name: str) -> int:
    return int(on_host(name, f"du -sb /var/backups/holistix/{ENV} | cut -f1")[1])


def psql(database: str, sql: str) -> str:
    return f'runuser -u postgres -- psql -X -At -q -v ON_ERROR_STOP=1 -d {database} -c "{sql}"'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite", default="trixie", choices=["trixie", "bookworm"])
    parser.add_argument("--name", default="bench-bk")
    parser.add_argument("--reuse", action="store_true", help="use the converged staging host --name as it is")
    parser.add_argument(
        "--rows", type=int, default=4_200_000, help="rows of about 240 bytes on disk (4.2 M: about 1 GB)"
    )
    args = parser.parse_args()
    name = args.name
    if not args.reuse:
        fresh_converged_host(name, args.suite)
    try:
        figures: dict = {"suite": args.suite, "rows": args.rows}
        # rows that compress like real data does (hex digests and text), not like repeated bytes
        seconds, _ = on_host(
            name,
            psql("postgres", f"DROP DATABASE IF EXISTS {DATABASE}")
            + f" && {psql('postgres', f'CREATE DATABASE {DATABASE}')}"
            + " && "
            + psql(
                DATABASE,
                "CREATE TABLE events AS SELECT i AS id, now() - i * interval '1 second' AS at,"
                " md5(i::text) || md5((i * 7)::text) AS digest, md5(random()::text) || md5(random()::text) || md5(random()::text) AS payload"
                f" FROM generate_series(1, {args.rows}) i; ALTER TABLE events ADD PRIMARY KEY (id)",
            ),
        )
        figures["make_database_s"] = round(seconds, 1)
        figures["database_bytes"] = int(on_host(name, psql(DATABASE, f"SELECT pg_database_size('{DATABASE}')"))[1])

        seconds, _ = on_host(name, f"runuser -u postgres -- pg_dump -Fc -f /var/tmp/plain.dump {DATABASE}")
        figures["plain_pg_dump_s"] = round(seconds, 1)
        figures["plain_dump_bytes"] = int(on_host(name, "stat -c %s /var/tmp/plain.dump")[1])
        seconds, _ = on_host(
            name,
            psql("postgres", "CREATE DATABASE bench_plain_restore")
            + " && runuser -u postgres -- pg_restore --exit-on-error -d bench_plain_restore /var/tmp/plain.dump"
            + f" && {psql('postgres', 'DROP DATABASE bench_plain_restore')} && rm -f /var/tmp/plain.dump",
        )
        figures["plain_pg_restore_s"] = round(seconds, 1)

        for label in ("first", "unchanged"):
            before = repository_bytes(name)
            seconds, _ = on_host(name, f"systemctl start holistix-backup@{ENV}.service")
            figures[f"holistix_backup_{label}_s"] = round(seconds, 1)
            figures[f"repository_growth_{label}_bytes"] = repository_bytes(name) - before
        seconds, _ = on_host(name, f"systemctl start holistix-backup-restore-test@{ENV}.service")
        figures["holistix_restore_test_s"] = round(seconds, 1)
        on_host(name, psql("postgres", f"DROP DATABASE {DATABASE}"))
    finally:
        if not args.reuse and os.environ.get("BENCH_KEEP") != "1":
            subprocess.run([HARNESS, "destroy", name], capture_output=True)

    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
