"""nginx: the TLS edge, configured only by this project, checked by nginx itself, with logs
that keep bearer tokens out and rotate."""

from __future__ import annotations

import re

import pytest

from holistix_deploy import nginx, tls


@pytest.fixture(scope="module")
def effective(host) -> str:
    """The complete configuration nginx runs with (`nginx -T`)."""
    with host.sudo():
        return host.check_output("nginx -T 2>/dev/null")


def test_nginx_runs_and_starts_at_boot(host):
    unit = host.service("nginx")
    assert unit.is_running and unit.is_enabled


def test_the_configuration_passes_nginx_t(host):
    with host.sudo():
        check = host.run("nginx -t")
    assert check.rc == 0 and "syntax is ok" in check.stderr, check.stderr


def test_workers_run_unprivileged(host):
    workers = host.check_output("ps -o user= -C nginx | sort | uniq -c")
    assert re.search(r"\bwww-data$", workers, re.M) and "root" in workers  # master root, workers www-data


def test_only_this_projects_configuration_is_loaded(host, effective, settings):
    loaded = re.findall(r"^# configuration file (\S+):", effective, re.M)
    ours = {
        nginx.MAIN_CONFIG,
        nginx.site_file(settings),
        nginx.headers_file(settings, "frontend"),
        nginx.headers_file(settings, "ganymede"),
    }
    distribution = {f"{nginx.CONFIG_DIR}/mime.types"}
    modules = {path for path in loaded if path.startswith(f"{nginx.CONFIG_DIR}/modules-enabled/")}
    organisations = {path for path in loaded if path.startswith(settings.nginx_gateways_dir + "/")}
    # the other modules' server blocks: the monitoring module's dashboards
    servers = {path for path in loaded if path.startswith(nginx.servers_dir(settings) + "/")}
    assert servers <= {f"{nginx.servers_dir(settings)}/dashboards.conf"}, servers
    assert set(loaded) - modules - organisations - servers == ours | distribution
    assert not host.file(nginx.DISTRIBUTION_SITE).exists


def test_config_files_belong_to_root_and_nobody_else_writes_them(host, settings):
    for path in (nginx.MAIN_CONFIG, nginx.site_file(settings), nginx.headers_file(settings, "frontend")):
        config = host.file(path)
        assert (config.user, config.group) == ("root", "root") and config.mode == 0o644, path


@pytest.mark.parametrize(
    "directive",
    [
        "server_tokens off;",
        "server_names_hash_bucket_size 128;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        f"ssl_ciphers {tls.MOZILLA_INTERMEDIATE_CIPHERS};",
        "ssl_session_tickets off;",
        "limit_req_status 429;",
        "ssl_reject_handshake on;",
        "proxy_set_header X-Forwarded-Proto https;",
    ],
)
def test_the_running_configuration_has(effective, directive):
    assert directive in effective


@pytest.mark.parametrize("forbidden", ["ssl_stapling", "X-XSS-Protection", "Access-Control-Allow", "autoindex on"])
def test_the_running_configuration_never_has(effective, forbidden):
    assert forbidden not in effective


def test_listens_on_80_and_443_for_ipv4_and_ipv6(host):
    with host.sudo():
        listeners = host.check_output("ss -Hltn").split("\n")
    local = {line.split()[3] for line in listeners if line.strip()}
    assert {"0.0.0.0:80", "0.0.0.0:443", "[::]:80", "[::]:443"} <= local


def test_the_certificate_key_is_readable_by_root_only(host, settings):
    with host.sudo():
        key = host.file(f"{settings.tls_dir}/privkey.pem")
        assert key.exists
        real = host.file(host.check_output(f"readlink -f {settings.tls_dir}/privkey.pem"))
        assert real.user == "root" and real.mode & 0o077 == 0
        names = host.check_output(f"openssl x509 -noout -ext subjectAltName -in {settings.tls_dir}/fullchain.pem")
    assert f"DNS:{settings.domain}" in names and f"DNS:*.{settings.domain}" in names


def test_the_organisation_block_directory_exists_for_ganymede(host, settings):
    assert host.file(settings.nginx_gateways_dir).is_directory
    assert host.file(f"{settings.nginx_gateways_dir}/locations").is_directory


def test_access_logs_are_rotated(host, settings):
    with host.sudo():
        plan = host.run("logrotate -d /etc/logrotate.d/nginx 2>&1").stdout
    assert f"{nginx.LOG_DIR}/{settings.environment}-ganymede.access.log" in plan
