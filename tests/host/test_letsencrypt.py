"""letsencrypt: one certificate with every name, renewed by the distribution's timer through
the hooks this project installed, its key readable by root only."""

from __future__ import annotations

import json
import re

import pytest


@pytest.fixture(scope="module")
def renewal(host, settings) -> dict[str, str]:
    """certbot's renewal configuration for the certificate: what the timer will do."""
    with host.sudo():
        text = host.file(f"/etc/letsencrypt/renewal/{settings.domain}.conf").content_string
    return dict(re.findall(r"^(\w+) = (.+)$", text, re.M))


def test_the_certificate_holds_every_name_and_is_valid_a_month(host, settings):
    with host.sudo():
        status = json.loads(host.check_output("holistix-certificate status"))
    assert sorted(status["served"]) == sorted(status["wanted"]) and status["fresh"]
    assert {settings.domain, f"*.{settings.domain}"} <= set(status["served"])
    for organisation in settings.acme_organisations:
        assert f"*.org-{organisation}.{settings.domain}" in status["served"]


def test_nginx_reads_the_certificate_certbot_keeps(host, settings):
    for name in ("fullchain.pem", "privkey.pem"):
        with host.sudo():
            target = host.check_output(f"readlink {settings.tls_dir}/{name}")
        assert target == f"/etc/letsencrypt/live/{settings.domain}/{name}"


def test_private_keys_are_readable_by_root_only(host, settings):
    with host.sudo():
        keys = host.check_output(f"stat -c '%a %U %G' /etc/letsencrypt/archive/{settings.domain}/privkey*.pem")
    assert set(keys.splitlines()) == {"600 root root"}


def test_renewals_use_the_configured_ca_and_this_projects_hooks(renewal, settings):
    assert renewal["server"] == settings.acme_directory_url
    assert renewal["renew_hook"] == f"/usr/local/lib/holistix/certbot-deploy {settings.tls_dir}"
    if settings.acme_dns_provider == "coredns":
        assert renewal["authenticator"] == "manual"
        assert renewal["manual_auth_hook"] == "/usr/local/lib/holistix/certbot-dns-coredns auth"
        assert renewal["manual_cleanup_hook"] == "/usr/local/lib/holistix/certbot-dns-coredns cleanup"
    else:
        assert renewal["authenticator"] == "dns-cloudflare"


def test_the_renewal_timer_runs(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running


def test_renewals_get_the_environment_issuance_had(host, settings):
    environment = host.check_output("systemctl show certbot.service -p Environment --value")
    if settings.acme_directory_ca_file:
        assert "REQUESTS_CA_BUNDLE=/etc/holistix/acme/directory-ca.pem" in environment
    else:
        assert "REQUESTS_CA_BUNDLE" not in environment


def test_a_cloudflare_token_is_on_the_host_only_when_cloudflare_is_used(host, settings):
    credentials = host.file(f"{settings.secrets_dir}/cloudflare.ini")
    with host.sudo():
        if settings.acme_dns_provider == "cloudflare":
            assert credentials.mode == 0o600 and credentials.user == "root"
        else:
            assert not credentials.exists
