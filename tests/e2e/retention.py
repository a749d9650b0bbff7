"""The calendar of the retention drill, and its repository, made once on this machine.

430 nights ending 2026-11-20 02:00, with the host down all of August 2026, backups that failed
on 2026-11-12 and 13 and on every 19th night from the 10th, and a manual re-run on 2026-11-18
at 14:30: 377 snapshots. Each `restic backup` opens the repository through scrypt (about half a
second of CPU), so the repository is made once per e2e session, here, in the background, with
restic's own `--time`; each staging host gets a copy and prunes it with its own restic and the
deployed policy. The password is a fixed test value: the host adds its own as a second key.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

DRILL_PASSWORD = "retention-drill-only"
DRILL_HOST = "holistix-drill"


def nights() -> list[datetime.datetime]:
    last_night = datetime.datetime(2026, 11, 20, 2, 0)
    failed = {datetime.date(2026, 11, 12), datetime.date(2026, 11, 13)}
    times = [
        night
        for index, night in enumerate(last_night - datetime.timedelta(days=days) for days in range(430))
        if not (night.year == 2026 and night.month == 8) and night.date() not in failed and index % 19 != 10
    ]
    return sorted([*times, datetime.datetime(2026, 11, 18, 14, 30)])


def build(tarball: Path, tag: str) -> Path:
    """The drill repository, its snapshots tagged ``tag`` (the environment's, so the deployed
    policy applies to them), as a tarball cached beside the other test artifacts."""
    if tarball.exists():
        return tarball
    environment = {**os.environ, "RESTIC_PASSWORD": DRILL_PASSWORD, "TZ": "UTC"}
    with tempfile.TemporaryDirectory() as scratch:
        repository, data = Path(scratch, "repository"), Path(scratch, "data")
        data.mkdir()
        (data / "night").write_text("one night's backup\n")
        subprocess.run(["restic", "init", "-q", "-r", repository], env=environment, check=True, capture_output=True)
        stamps = "".join(f"{night:%Y-%m-%d %H:%M:%S}\n" for night in nights())
        # low priority: the e2e runs beside it
        subprocess.run(
            ["nice", "-n", "19", "xargs", "-P", "2", "-I{}", "restic", "backup", "-q", "-r", repository,
             "--host", DRILL_HOST, "--tag", tag, "--time", "{}", data],
            input=stamps, text=True, env=environment, check=True, capture_output=True,
        )  # fmt: skip
        partial = tarball.with_suffix(".partial")
        with tarfile.open(partial, "w") as archive:
            archive.add(repository, arcname="retention-drill")
        partial.rename(tarball)
    return tarball
