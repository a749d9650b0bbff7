"""backups: an encrypted repository that only root can read, the three jobs scheduled as the
settings say and sandboxed, a fresh snapshot holding every part of the platform, its metrics."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

HELPER = "/usr/local/sbin/holistix-backup"
JOBS = ("holistix-backup", "holistix-backup-check", "holistix-backup-restore-test")


@pytest.fixture(scope="module")
def snapshots(host, settings) -> list[dict]:
    with host.sudo():
        return json.loads(host.check_output(f"{HELPER} snapshots {settings.environment}"))


def test_the_repository_and_its_password_are_roots_alone(host, settings):
    assert host.package("restic").is_installed
    with host.sudo():
        parent, repository = host.file("/var/backups/holistix"), host.file(settings.backup_local_repository)
        password = host.file(f"/etc/holistix-backup/{settings.environment}/restic-password")
        assert (parent.user, parent.mode) == ("root", 0o700)
        assert repository.is_directory and repository.user == "root"
        assert (password.user, password.group, password.mode) == ("root", "root", 0o600)
        assert password.size >= 40
        # encrypted: the repository does not open without the password
        refused = host.run(f"RESTIC_PASSWORD=not-the-password restic -r {settings.backup_local_repository} cat config")
    assert refused.rc != 0 and "wrong password" in refused.stderr


@pytest.mark.parametrize(
    ("job", "schedule_key"),
    [
        ("holistix-backup", "backup_schedule"),
        ("holistix-backup-check", "backup_check_schedule"),
        ("holistix-backup-restore-test", "backup_restore_test_schedule"),
    ],
)
def test_each_job_is_scheduled_as_the_settings_say_and_catches_up_after_downtime(host, settings, job, schedule_key):
    timer = f"{job}@{settings.environment}.timer"
    assert host.service(timer).is_enabled and host.service(timer).is_running
    assert host.check_output(f"systemctl show {timer} -p Persistent --value") == "yes"
    unit_text = host.file(f"/etc/systemd/system/{job}@.timer").content_string
    assert f"OnCalendar={getattr(settings, schedule_key)}\n" in unit_text
    assert f"RandomizedDelaySec={settings.backup_randomized_delay_seconds}\n" in unit_text
    # systemd computed a next run from it
    assert host.check_output(f"systemctl show {timer} -p NextElapseUSecRealtime --value")


@pytest.mark.parametrize("job", JOBS)
def test_each_job_runs_sandboxed(host, settings, job):
    unit = f"{job}@{settings.environment}.service"
    with host.sudo():
        report = host.check_output(f"systemd-analyze security {unit} --no-pager | tail -1")
    exposure = float(report.split("exposure level for")[1].split(":")[1].split()[0])
    assert exposure <= 3.0, report


def test_a_fresh_snapshot_holds_every_part_of_the_platform(host, settings, snapshots):
    assert snapshots, "no snapshot in the local repository"
    newest = snapshots[-1]
    taken = datetime.fromisoformat(newest["time"][:19])
    assert time.time() - taken.timestamp() < 26 * 3600 + 86400  # timezone slack: the freshness alert is exact
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert newest["hostname"] == f"holistix-{settings.environment}-{machine_id[:12]}"
    staging = f"/var/lib/holistix/{settings.environment}/backup-staging"
    with host.sudo():
        listing = set(host.check_output(f"{HELPER} ls {settings.environment} latest").splitlines())
    for part in (
        "manifest.json",
        f"postgres/{settings.database_name}.dump",
        "postgres/roles.sql",
        f"files{settings.org_data_dir}",
        f"files{settings.secrets_dir}/ganymede.env",
        "files/etc/nginx/nginx.conf",
        "files/etc/letsencrypt",
        "files/etc/coredns/Corefile",
    ):
        assert f"{staging}/{part}" in listing, part


def test_the_last_backup_succeeded_and_monitoring_can_see_it(host, settings):
    unit = f"holistix-backup@{settings.environment}.service"
    assert host.check_output(f"systemctl show {unit} -p Result --value") == "success"
    metrics = host.file(f"/var/lib/prometheus/node-exporter/holistix_backup_{settings.environment}.prom")
    assert metrics.mode == 0o644
    samples = {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.content_string.splitlines()
        if 'repository="local"' in line
    }
    assert samples["holistix_backup_last_run_success"] == 1
    assert time.time() - samples["holistix_backup_last_success_timestamp_seconds"] < 26 * 3600
    assert samples["holistix_backup_size_bytes"] > 0 and samples["holistix_backup_snapshots"] >= 1
