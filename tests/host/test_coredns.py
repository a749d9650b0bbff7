"""coredns: the domain's authoritative server, a resolver for this host (and the Docker bridge)
only, sandboxed, with the host resolving through it."""

from __future__ import annotations

import re
import uuid

import pytest

from holistix_deploy import dns
from holistix_deploy.settings import COREDNS_LOOPBACK_PORTS


def _dig(host, *question: str) -> str:
    return host.check_output("dig +time=2 +tries=2 @127.0.0.1 " + " ".join(question))


def test_coredns_runs_the_pinned_release_and_starts_at_boot(host, settings):
    unit = host.service("coredns")
    assert unit.is_running and unit.is_enabled
    assert host.check_output(f"{dns.BINARY} -version").splitlines()[0] == f"CoreDNS-{settings.coredns_version}"
    binary = host.file(dns.BINARY)
    assert (binary.user, binary.group, binary.mode) == ("root", "root", 0o755)


def test_coredns_runs_as_its_own_user_with_only_the_port_53_capability(host):
    with host.sudo():
        pid = host.check_output("systemctl show -p MainPID --value coredns")
        status = host.check_output(f"cat /proc/{pid}/status")
    assert host.check_output(f"ps -o user= -p {pid}") == "coredns"
    effective = int(re.search(r"^CapEff:\s+([0-9a-f]+)$", status, re.M)[1], 16)
    assert effective == 1 << 10, f"CapEff {effective:#x}: only CAP_NET_BIND_SERVICE (bit 10) is wanted"


def test_coredns_unit_is_sandboxed(host):
    with host.sudo():
        report = host.check_output("systemd-analyze security --no-pager coredns.service")
    exposure = float(re.search(r"Overall exposure level for coredns\.service: ([0-9.]+)", report)[1])
    assert exposure <= 2.0, report


def test_dns_listens_everywhere_and_the_admin_endpoints_on_loopback_only(host):
    with host.sudo():
        listeners = host.check_output("ss -Hlntup").splitlines()
    coredns = [line.split() for line in listeners if '"coredns"' in line]
    local = {(fields[0], fields[4]) for fields in coredns}
    assert ("udp", "*:53") in local and ("tcp", "*:53") in local
    for port in COREDNS_LOOPBACK_PORTS.values():
        assert ("tcp", f"127.0.0.1:{port}") in local
    assert {address for _, address in local} <= {"*:53"} | {f"127.0.0.1:{p}" for p in COREDNS_LOOPBACK_PORTS.values()}


def test_health_readiness_and_metrics_answer_on_loopback(host, settings):
    ports = COREDNS_LOOPBACK_PORTS
    assert host.check_output(f"curl -fsS http://127.0.0.1:{ports['health']}/health") == "OK"
    assert host.run(f"curl -fsS -o /dev/null http://127.0.0.1:{ports['ready']}/ready").rc == 0
    metrics = host.check_output(f"curl -fsS http://127.0.0.1:{ports['metrics']}/metrics")
    assert f'version="{settings.coredns_version}"' in metrics


def test_the_live_zone_passes_named_checkzone(host, settings):
    zone = dns.zone_file(settings.domain)
    check = host.run(f"named-checkzone -k fail -n fail -m fail -M fail -S fail -i full {settings.domain} {zone}")
    assert check.rc == 0, check.stdout + check.stderr
    assert host.file(zone).user == "root" and host.file(zone).mode == 0o644


@pytest.mark.parametrize("rrtype", ["SOA", "NS", "A", "CAA"])
def test_the_apex_is_answered_authoritatively(host, settings, rrtype):
    answer = _dig(host, "+norec", settings.domain, rrtype)
    assert "status: NOERROR" in answer and re.search(r"flags: qr aa\b", answer)
    assert re.search(rf"^{re.escape(settings.domain)}\.\s+\d+\s+IN\s+{rrtype}\s", answer, re.M), answer


def _same_rdata(text: str) -> str:
    return text.strip().replace(". ", " ").rstrip(".").lower()


def test_every_record_of_the_settings_is_served(host, settings):
    for name, _ttl, rrtype, data in dns.records(settings):
        # the wildcard is asked for with a name no one wrote into the zone
        owner = settings.domain if name == "@" else f"{name.replace('*', 'org-any')}.{settings.domain}"
        served = {_same_rdata(line) for line in _dig(host, "+norec", "+short", owner, rrtype).splitlines()}
        assert _same_rdata(data) in served, f"{owner} {rrtype} {data!r} not served (got {served})"


def test_other_names_are_forwarded_for_the_host_itself(host):
    answer = _dig(host, "example.org", "A")
    assert "status: NOERROR" in answer and "ANSWER: 0" not in answer, answer


def test_the_host_resolves_through_coredns(host):
    resolv = host.file("/etc/resolv.conf")
    assert not resolv.is_symlink and resolv.mode == 0o644
    nameservers = re.findall(r"^nameserver\s+(\S+)", resolv.content_string, re.M)
    assert nameservers[0] == "127.0.0.1"


def test_systemd_resolved_no_longer_holds_port_53(host):
    with host.sudo():
        listeners = host.check_output("ss -Hlnup")
    assert not re.search(r"127\.0\.0\.5[34](%lo)?:53\s", listeners), (
        f"a resolved stub listener is still there:\n{listeners}"
    )
    assert not re.search(r":5355\s", listeners), "LLMNR (5355) must be off on a server"


def test_programs_on_the_host_resolve_the_platforms_names_through_coredns(host, settings):
    """getaddrinfo, as Ganymede's organisation checks use it: through resolved where it runs
    (nss-resolve on Ubuntu), else /etc/resolv.conf; never a fallback's answer."""
    name = f"org-{uuid.uuid4()}.{settings.domain}"
    for _ in range(3):  # a fallback resolver once chosen would answer every time
        assert host.check_output(f"getent ahostsv4 {name} | head -1").split()[0] == str(settings.public_ipv4)


def test_acme_challenge_helper_is_installed_for_the_letsencrypt_module(host, settings):
    helper = host.file(dns.ACME_HELPER)
    assert helper.mode == 0o755 and helper.user == "root"
    config = host.file(dns.ACME_HELPER_CONFIG)
    assert f'"domain": "{settings.domain}"' in config.content_string
