"""backups: daily, consistent, encrypted restic snapshots of the environment, pruned 7/4/12,
checked, restore-tested every week, with metrics for monitoring.

Manages: restic (the distribution's package); the local repository /var/backups/holistix/<env>
(0700) and its password /etc/holistix-backup/<env>/restic-password (generated on the host
once, 0600; keep a copy off the host: the README's runbook says where); the optional off-site
repository (sftp with a key generated on the host and a pinned host key, or S3 with the
operator's keys); holistix-backup (stage, back up, copy off-site, prune after success only,
check, restore test, restore) and its plan; the sandboxed units holistix-backup@<env>,
holistix-backup-check@<env>, holistix-backup-restore-test@<env> and their timers; a first
snapshot when the repository has none.

Reads: environment, backup_*, the paths of the other modules. Needs: postgres (pg_dump).

    pyinfra inventories/prod.py deploys/backups.py
"""

import shlex
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from holistix_deploy import backups
from holistix_deploy.facts import BackupStatus
from holistix_deploy.operations import generated_secret, install_helpers, validated_file
from holistix_deploy.secrets import OPERATOR_SECRETS, read_operator_secrets
from holistix_deploy.settings import SettingsError, load_settings
from holistix_deploy.templating import render

settings = load_settings(host)
environment = settings.environment
offsite = settings.backup_offsite_repository
config_dir = backups.config_dir(settings)

if offsite and offsite.startswith("s3:"):
    given = read_operator_secrets()
    missing = [
        f"{secret.env_var}: required by backup_offsite_repository = {offsite!r} (an S3 repository); not set and not "
        "stored on the host by an earlier run"
        for secret in OPERATOR_SECRETS
        if secret.name in backups.S3_SECRETS.values()
        and secret.name not in given
        and not host.get_fact(File, path=f"{settings.secrets_dir}/{secret.name}")
    ]
    if missing:
        raise SettingsError(host.name, missing)

apt.packages(
    name="Ensure restic is installed",
    packages=["restic", "openssh-client"],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)

# -- where the repository and its secrets live ---------------------------------------------------------
for path in ("/etc/holistix-backup", config_dir, "/var/backups/holistix"):
    files.directory(name=f"Ensure {path} exists (0700)", path=path, user="root", group="root", mode="0700")
files.directory(
    name=f"Ensure {backups.METRICS_DIR} exists (node_exporter's textfile collector reads it)",
    path=backups.METRICS_DIR,
    mode="0755",
)
generated_secret(
    name="Ensure the backup repository's password exists (generated on the host)",
    path=backups.password_file(settings),
    command="openssl rand -base64 48 | tr -d '\\n'",
    directory=config_dir,
)
if offsite and offsite.startswith("sftp:"):
    key = backups.sftp_key(settings)
    server.shell(
        name="Ensure the off-site repository's SSH key exists (generated on the host)",
        commands=[f"umask 077 && ssh-keygen -q -t ed25519 -N '' -C holistix-backup-{environment} -f {key}"],
        _if=lambda: host.get_fact(File, path=key) is None,
    )
    files.put(
        name="Ensure the off-site server's host key is pinned",
        src=StringIO("".join(line + "\n" for line in settings.backup_offsite_known_hosts)),
        dest=backups.known_hosts_file(settings),
        mode="0644",
    )
else:
    for path in (backups.sftp_key(settings), f"{backups.sftp_key(settings)}.pub", backups.known_hosts_file(settings)):
        files.file(name=f"Ensure {path} is not kept", path=path, present=False)

install_helpers({backups.HELPER: "backups/holistix_backup.py"})
files.put(
    name=f"Ensure {backups.plan_file(settings)} plans the backups",
    src=StringIO(backups.plan(settings)),
    dest=backups.plan_file(settings),
    mode="0600",
)


def _status() -> dict:
    return host.get_fact(BackupStatus, helper=backups.HELPER, environment=environment) or {}


server.shell(
    name=f"Ensure the local repository {settings.backup_local_repository} exists",
    commands=[f"{backups.HELPER} init {environment}"],
    _if=lambda: not _status().get("repository"),
)

# -- the jobs and their timers ------------------------------------------------------------------------------
jobs = {  # unit: (what it is, holistix-backup's command, when)
    "holistix-backup": ("Holistix backup", "run", settings.backup_schedule),
    "holistix-backup-check": ("Holistix backup repository check", "check", settings.backup_check_schedule),
    "holistix-backup-restore-test": (
        "Holistix backup restore test",
        "restore-test",
        settings.backup_restore_test_schedule,
    ),
}
units = []
for unit, (description, action, schedule) in jobs.items():
    units.append(
        files.put(
            name=f"Ensure /etc/systemd/system/{unit}@.service is in place (sandboxed)",
            src=StringIO(
                render(
                    "backups/holistix-backup-job@.service.j2",
                    description=description,
                    helper=backups.HELPER,
                    action=action,
                    repository_parent="/var/backups/holistix",
                    metrics_dir=backups.METRICS_DIR,
                    offsite=bool(offsite),
                )
            ),
            dest=f"/etc/systemd/system/{unit}@.service",
            mode="0644",
        )
    )
    units.append(
        validated_file(
            name=f"Ensure /etc/systemd/system/{unit}@.timer runs it at {schedule!r} (checked by systemd-analyze)",
            dest=f"/etc/systemd/system/{unit}@.timer",
            content=render(
                "backups/holistix-backup-job@.timer.j2",
                description=description,
                schedule=schedule,
                delay=settings.backup_randomized_delay_seconds,
            ),
            validate=f"systemd-analyze calendar {shlex.quote(schedule)} >/dev/null && test -s {{path}}",
            candidate=f"/etc/systemd/system/.{unit}@.timer.candidate",
        )
    )
systemd.daemon_reload(name="Reload systemd's units", _if=any_changed(*units))
for unit in jobs:
    systemd.service(
        name=f"Ensure {unit}@{environment}.timer is scheduled and starts at boot",
        service=f"{unit}@{environment}.timer",
        running=True,
        enabled=True,
    )

# -- a first snapshot now, through the unit the timer runs (not at 02:00 after a day unprotected) ------------
server.shell(
    name="Ensure the repository holds a first snapshot (taken through the sandboxed unit)",
    commands=[f"systemctl start holistix-backup@{environment}.service"],
    _if=lambda: _status().get("snapshots", 0) == 0,
)
