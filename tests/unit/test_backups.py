"""backups without a host: the settings' rules, the plan holistix-backup reads, what a snapshot
holds and how a restore checks it, and the metrics monitoring reads."""

from __future__ import annotations

import json
import os
import re

import pytest

from holistix_deploy import backups
from holistix_deploy.secrets import OPERATOR_SECRETS
from holistix_deploy.settings import validate_data

from .helpers import host_script, problems_for

KNOWN_HOST = "backup.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def helper():
    return host_script("backups/holistix_backup.py")


def _settings(valid_data, **overrides):
    return validate_data({**valid_data, **overrides}, environ={}, host_name="vps1")


# -- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("backup_keep_daily", 0, "greater than or equal to 1"),
        ("backup_schedule", "daily; rm -rf /", "systemd OnCalendar expression"),
        ("backup_check_read_data_subset", "150%", "'x%' (0 < x <= 100)"),
        ("backup_check_read_data_subset", "3/2", "'n/t' (n <= t)"),
        ("backup_offsite_repository", "sftp:backup@host:relative", "'sftp:user@host:/absolute/path'"),
        ("backup_offsite_repository", "s3:https://AKIA:secret@s3.example.com/b", "no credentials in it"),
        ("backup_offsite_repository", "rclone:remote:path", "'s3:https://host/bucket[/path]'"),
        ("backup_offsite_known_hosts", ["backup.example.net AAAA"], "not a known_hosts line"),
    ],
)
def test_bad_backup_settings_are_refused_naming_the_key(valid_data, key, value, rule):
    (problem,) = problems_for({**valid_data, key: value})
    assert problem.startswith(key) and rule in problem, problem


def test_an_sftp_repository_needs_the_servers_host_key(valid_data):
    (problem,) = problems_for({**valid_data, "backup_offsite_repository": "sftp:backup@backup.example.net:/srv/r"})
    assert problem.startswith("backup_offsite_known_hosts = []") and "ssh-keyscan" in problem


def test_defaults_are_the_production_guides_schedule_and_retention(valid_data):
    settings = _settings(valid_data)
    assert (settings.backup_keep_daily, settings.backup_keep_weekly, settings.backup_keep_monthly) == (7, 4, 12)
    assert settings.backup_schedule == "*-*-* 02:00:00"
    assert settings.backup_local_repository == f"/var/backups/holistix/{settings.environment}"


# -- the plan ---------------------------------------------------------------------------------------------


def test_the_plan_names_every_part_of_the_platform_and_no_secret(valid_data):
    settings = _settings(valid_data)
    plan = json.loads(backups.plan(settings))
    env = settings.environment
    assert plan["paths"] == [
        f"/var/lib/holistix/{env}/org-data",
        f"/etc/holistix/{env}",
        "/etc/nginx",
        "/etc/letsencrypt",
        "/etc/coredns",
    ]
    assert plan["database_prefix"] == "ganymede_"
    assert plan["repositories"] == [{"name": "local", "url": f"/var/backups/holistix/{env}"}]
    assert plan["retention"] == {"daily": 7, "weekly": 4, "monthly": 12}
    # the password is a path outside what is backed up, never a value
    assert plan["password_file"] == f"/etc/holistix-backup/{env}/restic-password"
    assert not any(plan["password_file"].startswith(path) for path in plan["paths"])


def test_an_sftp_offsite_uses_the_hosts_key_and_the_pinned_host_key_only(valid_data):
    settings = _settings(
        valid_data,
        backup_offsite_repository="sftp:backup@backup.example.net:/srv/restic/prod",
        backup_offsite_known_hosts=[KNOWN_HOST],
        backup_offsite_sftp_port=2222,
    )
    offsite = json.loads(backups.plan(settings))["repositories"][1]
    command = offsite["sftp_command"]
    assert offsite["url"] == "sftp:backup@backup.example.net:/srv/restic/prod"
    assert "-o StrictHostKeyChecking=yes" in command and "-o BatchMode=yes" in command
    assert f"-i {backups.sftp_key(settings)}" in command and "-p 2222" in command
    assert command.endswith("backup@backup.example.net -s sftp")


def test_an_s3_offsite_takes_its_keys_from_files_never_from_the_plan(valid_data):
    settings = _settings(valid_data, backup_offsite_repository="s3:https://s3.example.com/holistix-backups/prod")
    offsite = json.loads(backups.plan(settings))["repositories"][1]
    assert set(offsite["environment_files"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all(path.startswith("/etc/holistix/") for path in offsite["environment_files"].values())
    # each file is where the base module stores an operator secret given by its variable
    stored = {secret.name for secret in OPERATOR_SECRETS if secret.env_var.startswith("HOLISTIX_BACKUP_S3_")}
    assert {path.rsplit("/", 1)[1] for path in offsite["environment_files"].values()} == stored


def test_retention_is_restics_forget_with_the_settings_and_prunes(helper, valid_data):
    plan = json.loads(backups.plan(_settings(valid_data, backup_keep_monthly=6)))
    arguments = helper.forget_arguments(plan)
    assert arguments[:1] == ["forget"] and arguments[-1] == "--prune"
    assert " ".join(arguments).count("--keep-") == 3
    assert "--keep-daily 7 --keep-weekly 4 --keep-monthly 6" in " ".join(arguments)
    assert f"--tag {plan['tag']}" in " ".join(arguments)


# -- what a snapshot holds, and how a restore checks it ------------------------------------------------------


def _tree(tmp_path):
    source = tmp_path / "live" / "org-data"
    (source / "nested").mkdir(parents=True)
    (source / "org-1.json").write_text('{"organization_id": "1"}')
    (source / "nested" / "org-2.json").write_text('{"organization_id": "2"}')
    os.chmod(source / "org-1.json", 0o640)
    os.symlink("org-1.json", source / "current")
    return source


def test_a_copy_records_every_file_and_link_and_keeps_modes(helper, tmp_path):
    source = _tree(tmp_path)
    staging = tmp_path / "staging"
    manifest: dict = {}
    helper.copy_tree(source, staging / "files" / "org-data", manifest, staging)
    assert sorted(manifest) == [
        "files/org-data/current",
        "files/org-data/nested/org-2.json",
        "files/org-data/org-1.json",
    ]
    assert manifest["files/org-data/current"] == {"link": "org-1.json"}
    assert manifest["files/org-data/org-1.json"]["mode"] == "0o640"
    assert (staging / "files/org-data/org-1.json").stat().st_mode & 0o777 == 0o640
    assert manifest["files/org-data/nested/org-2.json"]["sha256"] == helper.sha256_file(
        source / "nested" / "org-2.json"
    )


def test_a_restored_tree_that_differs_from_its_manifest_is_refused(helper, tmp_path):
    source = _tree(tmp_path)
    staging = tmp_path / "staging"
    manifest = {"files": {}, "databases": {}}
    helper.copy_tree(source, staging / "files" / "org-data", manifest["files"], staging)
    (staging / "manifest.json").write_text(json.dumps(manifest))
    assert helper.verify_files(staging) == manifest
    (staging / "files/org-data/nested/org-2.json").write_text('{"organization_id": "tampered"}')
    with pytest.raises(helper.BackupError, match=r"files/org-data/nested/org-2.json: the restored file's sha256"):
        helper.verify_files(staging)


def test_table_samples_are_parsed_from_psqls_tab_separated_rows(helper):
    output = "public.users\t3\t2712\npublic.gateways\t0\t0\nnoise without tabs\n"
    assert helper.parse_samples(output) == {
        "public.users": {"rows": 3, "checksum": "2712"},
        "public.gateways": {"rows": 0, "checksum": "0"},
    }


def test_only_the_platforms_roles_are_kept_from_pg_dumpall(helper, tmp_path, monkeypatch):
    dumped = (
        "CREATE ROLE postgres;\nALTER ROLE postgres WITH SUPERUSER PASSWORD 'SCRAM-SHA-256$x';\n"
        "CREATE ROLE ganymede_app_prod;\nALTER ROLE ganymede_app_prod WITH LOGIN PASSWORD 'SCRAM-SHA-256$y';\n"
        "CREATE ROLE ganymede_app_prodx_other;\n"
    )

    class Done:
        returncode, stdout, stderr = 0, dumped, ""

    monkeypatch.setattr(helper, "as_postgres", lambda command, **kwargs: Done())
    roles = helper.dump_roles({"database_prefix": "ganymede_"}, tmp_path / "roles.sql")
    assert roles == ["ganymede_app_prod", "ganymede_app_prodx_other"]
    kept = (tmp_path / "roles.sql").read_text()
    assert "postgres" not in kept.replace("ganymede_", "")
    assert (tmp_path / "roles.sql").stat().st_mode & 0o777 == 0o600


# -- metrics ---------------------------------------------------------------------------------------------------


def test_a_failed_run_keeps_the_last_success_and_says_it_failed(helper, tmp_path, monkeypatch):
    monkeypatch.setattr(helper, "STATE_ROOT", tmp_path / "state")
    plan = {"environment": "prod", "metrics_dir": str(tmp_path / "textfile")}
    helper.record(plan, {"backup:local": {"last_run": 100, "success": 1, "last_success": 100, "duration": 2.5}})
    helper.record(plan, {"backup:local": {"last_run": 200, "success": 0, "duration": 0.4}})
    metrics = (tmp_path / "textfile" / "holistix_backup_prod.prom").read_text()
    assert 'holistix_backup_last_success_timestamp_seconds{environment="prod",repository="local"} 100' in metrics
    assert 'holistix_backup_last_run_success{environment="prod",repository="local"} 0' in metrics
    assert 'holistix_backup_last_run_timestamp_seconds{environment="prod",repository="local"} 200' in metrics
    # the exposition format node_exporter's textfile collector reads: HELP and TYPE before samples
    for line in metrics.splitlines():
        assert re.fullmatch(r"# (HELP|TYPE) holistix_\w+ .+|holistix_\w+\{[^}]*\} [0-9.]+", line), line


def test_a_repository_taken_out_of_the_plan_is_no_longer_reported(helper, tmp_path, monkeypatch):
    monkeypatch.setattr(helper, "STATE_ROOT", tmp_path / "state")
    plan = {
        "environment": "prod",
        "metrics_dir": str(tmp_path / "textfile"),
        "repositories": [{"name": "local"}, {"name": "offsite"}],
    }
    helper.record(plan, {"backup:offsite": {"last_run": 100, "success": 0}})
    assert 'repository="offsite"' in (tmp_path / "textfile" / "holistix_backup_prod.prom").read_text()
    plan["repositories"] = [{"name": "local"}]
    helper.record(plan, {"backup:local": {"last_run": 200, "success": 1}})
    assert 'repository="offsite"' not in (tmp_path / "textfile" / "holistix_backup_prod.prom").read_text()


def test_status_reads_the_repositorys_layout_without_opening_it(helper, tmp_path, monkeypatch, capsys):
    repository = tmp_path / "repository"
    monkeypatch.setattr(helper, "PLAN_DIR", tmp_path / "plans")
    (tmp_path / "plans" / "prod").mkdir(parents=True)
    (tmp_path / "plans" / "prod" / "backup.json").write_text(
        json.dumps({"environment": "prod", "repositories": [{"name": "local", "url": str(repository)}]})
    )
    assert helper.main(["status", "prod"]) == 0
    assert json.loads(capsys.readouterr().out) == {"repository": False, "snapshots": 0}
    (repository / "snapshots").mkdir(parents=True)
    (repository / "config").write_bytes(b"encrypted")
    for snapshot_id in ("a1", "b2"):
        (repository / "snapshots" / snapshot_id).write_bytes(b"encrypted")
    assert helper.main(["status", "prod"]) == 0
    assert json.loads(capsys.readouterr().out) == {"repository": True, "snapshots": 2}
