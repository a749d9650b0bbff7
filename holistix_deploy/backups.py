"""Backup policy shared by the backups module and its tests: where things are, what a snapshot
holds, the plan the host helper reads."""

from __future__ import annotations

import json
import shlex

from holistix_deploy.monitoring import METRICS_DIR
from holistix_deploy.settings import Settings

HELPER = "/usr/local/sbin/holistix-backup"
CACHE_DIR = "/var/cache/holistix-backup"
# restic's S3 variables: the operator secrets (holistix_deploy.secrets) that hold them
S3_SECRETS = {"AWS_ACCESS_KEY_ID": "backup_s3_access_key_id", "AWS_SECRET_ACCESS_KEY": "backup_s3_secret_access_key"}


def config_dir(settings: Settings) -> str:
    """Outside the backed-up secrets directory: the password does not travel in the snapshots it opens."""
    return f"/etc/holistix-backup/{settings.environment}"


def password_file(settings: Settings) -> str:
    return f"{config_dir(settings)}/restic-password"


def plan_file(settings: Settings) -> str:
    return f"{config_dir(settings)}/backup.json"


def sftp_key(settings: Settings) -> str:
    return f"{config_dir(settings)}/offsite_ed25519"


def known_hosts_file(settings: Settings) -> str:
    return f"{config_dir(settings)}/offsite_known_hosts"


def backed_up_paths(settings: Settings) -> list[str]:
    """What each snapshot holds besides the databases (platform contract 1.11)."""
    return [
        settings.org_data_dir,
        settings.secrets_dir,  # the environment's secrets and env files, gateway tokens included
        "/etc/nginx",  # Ganymede's per-organisation blocks are under /etc/nginx/holistix/<env>
        "/etc/letsencrypt",
        "/etc/coredns",
    ]


def restored_paths(settings: Settings) -> list[str]:
    """What `holistix-backup restore` puts back; nginx and CoreDNS configuration comes back from
    the inventory with the next converge (their copies in the snapshot are for reference)."""
    return [settings.org_data_dir, settings.secrets_dir, "/etc/letsencrypt"]


def sftp_command(settings: Settings) -> str:
    """The ssh command restic's sftp backend runs: the host's own key, the pinned host key only."""
    target = settings.backup_offsite_repository.removeprefix("sftp:").rsplit(":", 1)[0]
    return " ".join(
        [
            "ssh",
            "-F /dev/null",
            f"-i {shlex.quote(sftp_key(settings))}",
            "-o IdentitiesOnly=yes",
            f"-o UserKnownHostsFile={shlex.quote(known_hosts_file(settings))}",
            "-o StrictHostKeyChecking=yes",
            "-o BatchMode=yes",
            "-o ConnectTimeout=20",
            "-o ServerAliveInterval=30",
            f"-p {settings.backup_offsite_sftp_port}",
            target,
            "-s sftp",
        ]
    )


def repositories(settings: Settings) -> list[dict]:
    """The local repository first (what is backed up, pruned, checked and restored from), then the off-site one."""
    found = [{"name": "local", "url": settings.backup_local_repository}]
    offsite = settings.backup_offsite_repository
    if offsite and offsite.startswith("sftp:"):
        found.append({"name": "offsite", "url": offsite, "sftp_command": sftp_command(settings)})
    elif offsite:
        found.append(
            {
                "name": "offsite",
                "url": offsite,
                "environment_files": {
                    variable: f"{settings.secrets_dir}/{secret}" for variable, secret in S3_SECRETS.items()
                },
            }
        )
    return found


def plan(settings: Settings) -> str:
    """/etc/holistix-backup/<env>/backup.json: everything holistix-backup needs except the password."""
    return (
        json.dumps(
            {
                "environment": settings.environment,
                "tag": f"holistix-{settings.environment}",
                # with the machine id appended on the host: one retention group per installation
                "snapshot_host": f"holistix-{settings.environment}",
                "database_prefix": "ganymede_",
                "password_file": password_file(settings),
                "cache_dir": CACHE_DIR,
                "metrics_dir": METRICS_DIR,
                "repositories": repositories(settings),
                "retention": {
                    "daily": settings.backup_keep_daily,
                    "weekly": settings.backup_keep_weekly,
                    "monthly": settings.backup_keep_monthly,
                },
                "check_subset": settings.backup_check_read_data_subset,
                "paths": backed_up_paths(settings),
                "restore_paths": restored_paths(settings),
                "nginx_gateways_dir": settings.nginx_gateways_dir,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
