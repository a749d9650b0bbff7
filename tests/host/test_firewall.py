"""firewall: ufw denies by default, opens only the platform's ports, and Docker cannot bypass it.

What is really reachable is proven from outside by the e2e scan (tests/e2e); this suite checks
the host's own view, which an operator reads with `ufw status verbose`."""

import pytest


@pytest.fixture(scope="module")
def ufw_status(host) -> str:
    with host.sudo():
        return host.check_output("ufw status verbose")


def test_ufw_is_active_with_deny_by_default(ufw_status):
    assert "Status: active" in ufw_status
    assert "deny (incoming)" in ufw_status and "allow (outgoing)" in ufw_status


def test_ufw_filters_ipv6_too(host, ufw_status):
    assert "IPV6=yes" in host.file("/etc/default/ufw").content_string
    assert "22/tcp (v6)" in ufw_status


def test_forwarded_traffic_is_denied_by_default(host):
    assert 'DEFAULT_FORWARD_POLICY="DROP"' in host.file("/etc/default/ufw").content_string


def test_ssh_is_rate_limited(ufw_status):
    assert any(line.split()[:2] == ["22/tcp", "LIMIT"] for line in ufw_status.splitlines())


@pytest.mark.parametrize("port", ["80/tcp", "443/tcp"])
def test_web_ports_are_open(ufw_status, port):
    assert any(line.split()[:3] == [port, "ALLOW", "IN"] for line in ufw_status.splitlines())


def test_dns_is_open_only_when_served_publicly(ufw_status, settings):
    public_dns = [line for line in ufw_status.splitlines() if line.startswith(("53/tcp ", "53/udp "))]
    assert bool(public_dns) == settings.dns_served_publicly


def test_docker_bridge_reaches_the_host_services_gateways_need(ufw_status, settings):
    bridge = settings.docker_bridge_cidr
    for port in ("53/udp", "53/tcp", f"{settings.gateway_build_server_port}/tcp", "443/tcp"):
        assert any(
            line.startswith(f"{bridge.ip} {port} on docker0") and f"ALLOW IN    {bridge.network}" in line
            for line in ufw_status.splitlines()
        ), port


def test_docker_published_ports_pass_through_the_docker_user_chain(host):
    with host.sudo():
        rules = host.check_output("iptables -S DOCKER-USER")
        deny_chain = host.check_output("iptables -S holistix-docker-deny")
    chain = rules.strip().splitlines()
    assert "-A DOCKER-USER -j ufw-user-forward" in chain
    # the deny comes right after ufw's route rules; Docker itself may append a final RETURN
    position = chain.index("-A DOCKER-USER -j holistix-docker-deny")
    assert chain.index("-A DOCKER-USER -j ufw-user-forward") == position - 1
    assert chain[position + 1 :] in ([], ["-A DOCKER-USER -j RETURN"])
    assert deny_chain.strip().endswith("-A holistix-docker-deny -j DROP")


def test_ufw_starts_at_boot(host):
    assert host.service("ufw").is_enabled


def test_ufw_leaves_kernel_parameters_to_base(host):
    # ufw's own sysctl.conf would turn log_martians off again at every start
    assert "\nIPT_SYSCTL=\n" in host.file("/etc/default/ufw").content_string
