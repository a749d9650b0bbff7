"""ganymede without a host: its settings' rules, the environment it gets (platform contract
1.7), its unit, and the two host helpers that install releases and compose the environment."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from holistix_deploy import ganymede
from holistix_deploy.settings import validate_data

from .helpers import ROOT, host_script, problems_for

SHA = "a" * 64


def _helper(name: str):
    return host_script(f"ganymede/{name}.py")


@pytest.fixture
def with_release(valid_data) -> dict:
    release = {"version": "1.4.2", "source": "https://example.com/holistix-1.4.2.tar.gz", "sha256": SHA}
    return {**valid_data, "ganymede_release": release}


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "rule"),
    [
        ({"version": "../1", "source": "https://example.com/r.tgz", "sha256": SHA}, "must be a release version"),
        ({"version": "current", "source": "https://example.com/r.tgz", "sha256": SHA}, "not 'current'"),
        ({"version": "1.0", "source": "https://example.com/r.tgz", "sha256": "ABC"}, "64 lower case hex digits"),
        ({"version": "1.0", "source": "/nowhere/r.tgz", "sha256": SHA}, "neither an http(s) URL nor a file"),
        ({"version": "1.0", "source": "https://example.com/r.tgz"}, "[sha256]: Field required"),
        ({"version": "1.0", "source": "https://example.com/r.tgz?X-Amz-Signature=abc", "sha256": SHA}, "a query"),
        ({"version": "1.0", "source": "https://user:pw@example.com/r.tgz", "sha256": SHA}, "credentials"),
    ],
)
def test_a_bad_release_is_refused_naming_the_field(valid_data, release, rule):
    (problem,) = problems_for({**valid_data, "ganymede_release": release})
    assert problem.startswith("ganymede_release") and rule in problem, problem


def test_a_local_release_with_another_checksum_is_refused_before_the_run(valid_data, tmp_path):
    tarball = tmp_path / "holistix-1.0.tar.gz"
    tarball.write_bytes(b"not the build you think")
    release = {"version": "1.0", "source": str(tarball), "sha256": SHA}
    (problem,) = problems_for({**valid_data, "ganymede_release": release})
    assert f"has sha256 {hashlib.sha256(tarball.read_bytes()).hexdigest()}, not {SHA}" in problem


def test_a_local_release_is_named_by_its_absolute_path(valid_data, tmp_path, monkeypatch):
    (tmp_path / "r.tgz").write_bytes(b"build")
    monkeypatch.chdir(tmp_path)
    release = {"version": "1.0", "source": "r.tgz", "sha256": hashlib.sha256(b"build").hexdigest()}
    settings = validate_data({**valid_data, "ganymede_release": release}, {})
    assert settings.ganymede_release.source == str(tmp_path / "r.tgz")


def test_versions_from_the_command_line_keep_their_text(valid_data):
    # pyinfra --data parses ganymede_rollback_to=2 as an int and 1.10 as the float 1.1
    assert validate_data({**valid_data, "ganymede_rollback_to": 2}, {}).ganymede_rollback_to == "2"
    (problem,) = problems_for({**valid_data, "ganymede_rollback_to": 1.1})
    assert problem.startswith("ganymede_rollback_to = 1.1") and "quote it" in problem


def test_the_module_cannot_run_without_a_release(valid_data):
    settings = validate_data(valid_data, {})
    (problem,) = settings.missing_for("ganymede")
    assert problem.startswith("ganymede_release: required by the ganymede module")
    assert settings.missing_for("nginx") == []


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("ganymede_rollback_to", "1.0 beta", "must be a release version"),
        ("ganymede_health_path", "health", "starting with /"),
        ("ganymede_memory_max", "2GB", "K, M or G"),
        ("ganymede_environment", {"NODE_TLS_REJECT_UNAUTHORIZED": "0"}, "never set"),
        ("ganymede_environment", {"PG_HOST": "db"}, "set by the ganymede module"),
        ("ganymede_environment", {"GITHUB_APP_PRIVATE_KEY": "x"}, "looks like a secret"),
        ("ganymede_environment", {"rate": "1"}, "not an environment variable name"),
        ("ganymede_environment", {"DEBUG_API": "1\n2"}, "one line"),
        ("ganymede_oauth_client_ids", {"github": "xxxxxxxxxx"}, "placeholder"),
        ("ganymede_egress_networks", ["github.com"], "IPv4"),
        ("nodejs_source", "snap", "'nodesource' or 'distro'"),
    ],
)
def test_bad_ganymede_settings_are_refused_naming_key_and_rule(valid_data, key, value, rule):
    problems = problems_for({**valid_data, key: value})
    assert any(problem.startswith(key) and rule in problem for problem in problems), problems


def test_a_login_provider_needs_its_network_in_the_allow_list(valid_data):
    (problem,) = problems_for({**valid_data, "ganymede_oauth_client_ids": {"github": "Iv1.8a61f9b3a7aba766"}})
    assert problem.startswith("ganymede_egress_networks = []: Ganymede needs to reach the github login")
    allowed = {**valid_data, "ganymede_oauth_client_ids": {"github": "Iv1.8a61f9b3a7aba766"}}
    assert validate_data({**allowed, "ganymede_egress_networks": ["0.0.0.0/0", "::/0"]}, {})


# -- the environment (platform contract 1.7) --------------------------------------------------------


def test_every_required_variable_is_planned_and_no_secret_is_a_plain_value(with_release):
    settings = validate_data(with_release, {})
    values, secret_files = ganymede.environment(settings), ganymede.secret_files(settings)
    assert [name for name in ganymede.REQUIRED_VARIABLES if name not in values and name not in secret_files] == []
    assert set(values).isdisjoint(secret_files)
    assert {"CREDENTIALS_ENCRYPTION_KEY", "PG_PASSWORD", "JWT_PRIVATE_KEY"} <= set(secret_files)
    assert values["NODE_ENV"] == "production" and "NODE_TLS_REJECT_UNAUTHORIZED" not in values
    assert json.loads(values["ALLOWED_ORIGINS"]) == ["https://app.example.com"]
    assert json.loads(values["GANYMEDE_SERVER_BIND"]) == [{"host": "127.0.0.1", "port": settings.ganymede_port}]
    assert values["GANYMEDE_FQDN"] == "ganymede.app.example.com" and values["ENV_NAME"] == "prod"
    assert values["NGINX_GATEWAYS_DIR"] == settings.nginx_gateways_dir
    assert values["NGINX_SSL_CERT"] == f"{settings.tls_dir}/fullchain.pem"
    # what Ganymede insists on but nobody configured: a placeholder the README names
    assert values["GITHUB_CLIENT_ID"] == ganymede.PLACEHOLDER == secret_files["GITHUB_CLIENT_SECRET"][1]
    assert secret_files["PG_PASSWORD"][1] is None  # must exist: the postgres module makes it


def test_the_module_owns_every_variable_it_plans(with_release):
    settings = validate_data(with_release, {})
    planned = set(ganymede.environment(settings)) | set(ganymede.secret_files(settings)) | {"NODE_OPTIONS"}
    assert planned == set(ganymede.MANAGED_VARIABLES)


def test_extra_plain_variables_reach_the_plan(with_release):
    settings = validate_data({**with_release, "ganymede_environment": {"RATE_LIMIT_API_MAX": "300"}}, {})
    assert ganymede.environment(settings)["RATE_LIMIT_API_MAX"] == "300"


# -- the unit -------------------------------------------------------------------------------------------


def test_the_unit_is_sandboxed_restarts_and_keeps_node_able_to_jit(with_release):
    settings = validate_data(with_release, {})
    unit = ganymede.render_unit(settings, "postgresql@16-main.service")
    directives = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert directives["Requires"] == "postgresql@16-main.service"
    assert "postgresql@16-main.service" in directives["After"]
    assert (directives["Restart"], directives["RestartSec"]) == ("on-failure", "5s")
    assert (directives["MemoryMax"], directives["CPUQuota"], directives["TasksMax"]) == ("2G", "200%", "512")
    assert "MemoryDenyWriteExecute" not in directives
    assert directives["IPAddressDeny"] == "any"
    assert directives["IPAddressAllow"] == "localhost 203.0.113.10 172.17.0.0/16"
    assert directives["BindPaths"] == "/var/lib/holistix/%i/org-data:/root/.local-dev/%i/org-data"
    assert directives["ReadWritePaths"] == settings.nginx_gateways_dir
    assert directives["User"] == ganymede.SERVICE_USER


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not on this machine")
def test_the_unit_scores_below_2_offline(with_release, tmp_path):
    settings = validate_data(with_release, {})
    unit = tmp_path / "ganymede@prod.service"
    unit.write_text(ganymede.render_unit(settings, "postgresql@16-main.service").replace("%i", "prod"))
    scored = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr


# -- holistix-ganymede-env ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "'plain'"),
        ("-----BEGIN KEY-----\nAAA\n-----END KEY-----", "'-----BEGIN KEY-----\nAAA\n-----END KEY-----'"),
        ('it\'s "$HOME" `x` \\n', '"it\'s \\"\\$HOME\\" \\`x\\` \\\\n"'),
    ],
)
def test_values_are_written_in_systemds_environment_file_quoting(value, written):
    assert _helper("ganymede_env").quoted(value) == written


def test_the_environment_is_composed_from_secret_files_or_placeholders(tmp_path):
    env_helper = _helper("ganymede_env")
    (tmp_path / "database_password").write_text("s3cret-pass\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
    plan = {
        "values": {"PG_USER": "app"},
        "secret_files": {"PG_PASSWORD": ["database_password", None], "MAILING_PASSWORD": ["smtp_password", "unset"]},
        "ca_files": [str(tmp_path / "ca.pem"), str(tmp_path / "ca.pem")],
        "ca_bundle": str(tmp_path / "bundle.pem"),
        "env_file": str(tmp_path / "ganymede.env"),
    }
    files = env_helper.compose(tmp_path, plan)
    text = files[plan["env_file"]][0].decode()
    assert "PG_PASSWORD='s3cret-pass'\n" in text and "MAILING_PASSWORD='unset'\n" in text
    assert files[plan["env_file"]][1] == 0o600
    assert files[plan["ca_bundle"]][0].count(b"BEGIN CERTIFICATE") == 2
    (tmp_path / "database_password").unlink()
    with pytest.raises(SystemExit, match="database_password is missing"):
        env_helper.compose(tmp_path, plan)


# -- holistix-release ------------------------------------------------------------------------------


def _tarball(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):  # (tarfile.SYMTYPE or LNKTYPE, target)
                info.type, info.linkname = content
                archive.addfile(info)
                continue
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return hashlib.sha256(path.read_bytes()).hexdigest()


BUILD = {
    "dist/packages/app-ganymede/main.js": b"console.log(1)",
    "dist/packages/app-ganymede-cmds/main.js": b"console.log(2)",
    "packages/app-frontend/dist/index.html": b"<html>",
    "database/schema/01.sql": b"SELECT 1;",
    "builds/gateway.tar.gz": b"packed",
}


@pytest.fixture
def release_helper(tmp_path, monkeypatch):
    helper = _helper("holistix_release")
    monkeypatch.setattr(helper, "base", lambda env: tmp_path / "opt" / env)
    monkeypatch.setattr(helper.os, "chown", lambda *args: None)  # tests do not run as root
    return helper


def test_a_release_is_unpacked_read_only_and_recorded(release_helper, tmp_path):
    sha = _tarball(tmp_path / "r.tar.gz", BUILD)
    release_helper.install("prod", "1.0", sha, str(tmp_path / "r.tar.gz"))
    unpacked = tmp_path / "opt" / "prod" / "releases" / "1.0"
    assert (unpacked / "dist/packages/app-ganymede/main.js").read_bytes() == b"console.log(1)"
    assert oct((unpacked / "database/schema/01.sql").stat().st_mode & 0o777) == "0o644"
    assert release_helper.installed("prod")["1.0"]["sha256"] == sha
    assert [p.name for p in (tmp_path / "opt" / "prod" / "releases").iterdir()] == ["1.0"]


def test_a_wrong_checksum_unpacks_nothing(release_helper, tmp_path):
    _tarball(tmp_path / "r.tar.gz", BUILD)
    with pytest.raises(SystemExit) as refused:
        release_helper.install("prod", "1.0", SHA, str(tmp_path / "r.tar.gz"))
    assert refused.value.code == 3
    assert list((tmp_path / "opt" / "prod" / "releases").iterdir()) == []


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({k: v for k, v in BUILD.items() if "cmds" not in k}, "lacks dist/packages/app-ganymede-cmds/main.js"),
        ({**BUILD, "../escape.js": b"x"}, "unsafe path '../escape.js'"),
        ({**BUILD, "/etc/passwd": b"x"}, "unsafe path '/etc/passwd'"),
        ({**BUILD, "passwd": (tarfile.SYMTYPE, "/etc/passwd")}, "link 'passwd' points outside"),
        ({**BUILD, "up": (tarfile.SYMTYPE, "../../etc")}, "link 'up' points outside"),
        ({**BUILD, "hard": (tarfile.LNKTYPE, "/etc/shadow")}, "neither a file, a directory nor a link"),
        ({**BUILD, "fifo": (tarfile.FIFOTYPE, "")}, "neither a file, a directory nor a link"),
    ],
    ids=["missing_cmds", "dot_dot", "absolute", "symlink_absolute", "symlink_up", "hardlink", "fifo"],
)
@pytest.mark.parametrize("data_filter", [True, False], ids=["data_filter", "python_without_it"])
def test_a_tarball_that_is_not_a_clean_platform_build_is_refused(
    release_helper, tmp_path, members, message, data_filter, monkeypatch, capsys
):
    if not data_filter:  # Debian 12's Python may lack it: our own checks must hold alone
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    sha = _tarball(tmp_path / "r.tar.gz", members)
    with pytest.raises(SystemExit):
        release_helper.install("prod", "1.0", sha, str(tmp_path / "r.tar.gz"))
    assert list((tmp_path / "opt" / "prod" / "releases").iterdir()) == []
    assert message in capsys.readouterr().err


def test_a_version_is_never_replaced_by_another_build(release_helper, tmp_path):
    sha = _tarball(tmp_path / "r.tar.gz", BUILD)
    release_helper.install("prod", "1.0", sha, str(tmp_path / "r.tar.gz"))
    other = _tarball(tmp_path / "s.tar.gz", {**BUILD, "extra": b"x"})
    with pytest.raises(SystemExit):
        release_helper.install("prod", "1.0", other, str(tmp_path / "s.tar.gz"))


def test_pruning_keeps_current_and_previous_then_the_newest_healthy(release_helper, tmp_path):
    sha = _tarball(tmp_path / "r.tar.gz", BUILD)
    for version in ("1", "2", "3", "4", "5"):
        release_helper.install("prod", version, sha, str(tmp_path / "r.tar.gz"))
    release_helper._mark("prod", "5", failed=True)  # it failed its health gate
    release_helper.point_current_at("prod", "2")
    release_helper._remember_previous("prod", "1")  # what a rollback would go back to
    release_helper.prune("prod", 3)
    assert sorted(release_helper.installed("prod")) == ["1", "2", "4"]
    assert release_helper.current("prod") == "2"


def test_a_failed_switch_goes_back_to_the_previous_release(release_helper, tmp_path, monkeypatch):
    sha = _tarball(tmp_path / "r.tar.gz", BUILD)
    for version in ("1", "2"):
        release_helper.install("prod", version, sha, str(tmp_path / "r.tar.gz"))
    release_helper.point_current_at("prod", "1")
    gate = {"unit": "ganymede@prod.service", "port": 6010, "path": "/", "timeout": 1, "config_files": []}
    monkeypatch.setattr(release_helper, "gate", lambda env: gate)
    monkeypatch.setattr(release_helper, "_record_config", lambda env, settings: None)
    # release 2 never answers; release 1 does again
    monkeypatch.setattr(
        release_helper, "restart_and_wait", lambda unit, settings: release_helper.current("prod") == "1"
    )
    with pytest.raises(SystemExit):
        release_helper.switch("prod", "2")
    assert release_helper.current("prod") == "1"
    assert release_helper.installed("prod")["2"]["failed"] is True


def test_switching_to_the_current_release_only_restarts_and_never_unlinks(release_helper, tmp_path, monkeypatch):
    sha = _tarball(tmp_path / "r.tar.gz", BUILD)
    release_helper.install("prod", "1", sha, str(tmp_path / "r.tar.gz"))
    release_helper.point_current_at("prod", "1")
    gate = {"unit": "ganymede@prod.service", "port": 6010, "path": "/", "timeout": 1, "config_files": []}
    monkeypatch.setattr(release_helper, "gate", lambda env: gate)
    monkeypatch.setattr(release_helper, "restart_and_wait", lambda unit, settings: False)
    with pytest.raises(SystemExit):
        release_helper.switch("prod", "1")
    assert release_helper.current("prod") == "1"


# -- NodeSource -------------------------------------------------------------------------------------


def _v4_fingerprint(keyring: bytes) -> str:
    """OpenPGP v4 fingerprint of the first (primary) key packet: SHA-1 over 0x99, the body's
    two-byte length and the body (RFC 4880, 12.2)."""
    tag = keyring[0]
    assert tag & 0x80, "not an OpenPGP packet"
    if tag & 0x40:  # new format: one- or two-octet length
        first = keyring[1]
        length, start = (first, 2) if first < 192 else (((first - 192) << 8) + keyring[2] + 192, 3)
        packet_type = tag & 0x3F
    else:  # old format: length type in the low two bits
        size = {0: 1, 1: 2, 2: 4}[tag & 0x03]
        length, start = int.from_bytes(keyring[1 : 1 + size], "big"), 1 + size
        packet_type = (tag >> 2) & 0x0F
    assert packet_type == 6, "the keyring does not start with a public key"
    body = keyring[start : start + length]
    assert body[0] == 4, "not a version 4 key"
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()


def test_the_shipped_nodesource_key_is_the_pinned_one():
    keyring = (ROOT / "files" / "ganymede" / "nodesource.gpg").read_bytes()
    assert _v4_fingerprint(keyring) == ganymede.NODESOURCE_FINGERPRINT


def test_nodesource_is_the_only_source_of_nodejs_when_chosen():
    from holistix_deploy.templating import render

    sources = render("ganymede/nodesource.sources.j2", major=24, keyring=ganymede.NODESOURCE_KEYRING, fingerprint="F")
    assert "URIs: https://deb.nodesource.com/node_24.x" in sources
    assert f"Signed-By: {ganymede.NODESOURCE_KEYRING}" in sources
    pin = render("ganymede/nodesource.pref.j2")
    assert "Package: nodejs\nPin: origin deb.nodesource.com\nPin-Priority: 1001" in pin


# -- holistix-nginx-control: what the root side lets Ganymede's blocks contain ----------------------

ORGANISATION = "0492b0f9-f9a1-4770-a0a9-3d663fb7ff05"
POLICY = {
    "gateways_dir": "/etc/nginx/holistix/prod/gateways.d",
    "domain": "app.example.com",
    "listen_port": 443,
    "certificate": "/etc/ssl/holistix/app.example.com/fullchain.pem",
    "certificate_key": "/etc/ssl/holistix/app.example.com/privkey.pem",
    "logs_dir": "/var/log/nginx",
    "upstream_networks": ["127.0.0.0/8", "172.17.0.0/16"],
}
# what Ganymede's nginx-manager.ts writes (platform contract 1.5)
CONTRACT_BLOCK = f"""upstream org-{ORGANISATION}-gw {{ server 172.17.0.1:7100; }}
server {{
    listen 443 ssl;
    server_name ~^(.+\\.)?org-{ORGANISATION}\\.app\\.example\\.com$;
    ssl_certificate /etc/ssl/holistix/app.example.com/fullchain.pem;
    ssl_certificate_key /etc/ssl/holistix/app.example.com/privkey.pem;
    location / {{
        proxy_pass http://org-{ORGANISATION}-gw;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_read_timeout 86400s;
        proxy_send_timeout 86400s;
    }}
    access_log /var/log/nginx/gateway-{ORGANISATION}-access.log;
    error_log /var/log/nginx/gateway-{ORGANISATION}-error.log;
}}
"""


def test_the_contracts_organisation_block_is_accepted():
    assert _helper("nginx_control").block_problems(f"org-{ORGANISATION}.conf", CONTRACT_BLOCK, POLICY) == []


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        (lambda b: "include /etc/holistix/prod/dns_api_token;\n" + b, ":1: include is not allowed"),
        (lambda b: b.replace("access_log /var/log/nginx/", "access_log /etc/cron.d/"), "access_log is not allowed"),
        (lambda b: "log_format p '$http_x';\n" + b, "log_format is not allowed"),
        (lambda b: b.replace("172.17.0.1:7100", "203.0.113.9:80"), "server is not allowed here (upstream"),
        (lambda b: b.replace("    location / {", "    root /;\n    location / {"), "root is not allowed"),
        (lambda b: b.replace("proxy_http_version 1.1;", "location /x { alias /etc/; }"), "location is not allowed"),
        (
            lambda b: b.replace(
                "ssl_certificate_key /etc/ssl/holistix/app.example.com/privkey.pem", "ssl_certificate_key /etc/shadow"
            ),
            "ssl_certificate_key is not allowed",
        ),
        (
            lambda b: b.replace("proxy_set_header Host $host;", "proxy_set_header Host $request_body;"),
            "proxy_set_header",
        ),
    ],
    ids=[
        "include",
        "log_elsewhere",
        "log_format",
        "upstream_outside",
        "root",
        "nested_location",
        "other_key",
        "header_value",
    ],
)
def test_anything_beyond_the_contracts_block_is_refused_without_its_value(change, refused):
    problems = _helper("nginx_control").block_problems(f"org-{ORGANISATION}.conf", change(CONTRACT_BLOCK), POLICY)
    assert any(refused in problem for problem in problems), problems
    assert not any("/etc/shadow" in problem or "dns_api_token" in problem for problem in problems)


def test_a_block_must_be_named_after_its_organisation():
    (problem,) = _helper("nginx_control").block_problems("evil.conf", CONTRACT_BLOCK, POLICY)
    assert "not an organisation block" in problem


def test_a_configuration_change_stays_pending_until_a_healthy_start_records_it(release_helper, tmp_path, monkeypatch):
    env_file = tmp_path / "ganymede.env"
    env_file.write_text("A='1'\n")
    settings = {"config_files": [str(env_file), str(tmp_path / "absent.cjs")]}
    monkeypatch.setattr(release_helper, "_digest_file", lambda env: tmp_path / "applied")
    assert not release_helper.config_applied("prod", settings)  # never started by us
    release_helper._record_config("prod", settings)
    assert release_helper.config_applied("prod", settings)
    env_file.write_text("A='2'\n")  # a run changed it, then failed before its restart
    assert not release_helper.config_applied("prod", settings)
    assert oct((tmp_path / "applied").stat().st_mode & 0o777) == "0o600"
