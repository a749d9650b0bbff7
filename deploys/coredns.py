"""coredns: authoritative DNS for DOMAIN, and a resolver for this host and the Docker bridge
only (never an open resolver).

Manages: the CoreDNS release binary (pinned, sha256-checked) in /usr/local/bin; the coredns
system user; /etc/coredns/Corefile (started by a throwaway CoreDNS before it is swapped in);
the zone /etc/coredns/zones/db.DOMAIN (checked by named-checkzone; SOA serial raised exactly
when the content changes; served within 2 s without a restart); the sandboxed coredns.service;
the DNS-01 helper holistix-acme-dns for the letsencrypt module; systemd-resolved's stub
listener turned off where resolved runs; /etc/resolv.conf pointed at CoreDNS once it answers, and
resolved (where it runs) asking CoreDNS alone.

Reads: domain, admin_email, public_ipv4, public_ipv6, docker_bridge_cidr, coredns_*, dns_*.
Restarts coredns only when its binary or unit changed; reloads it when the Corefile changed.

    pyinfra inventories/prod.py deploys/coredns.py
"""

import datetime
import json
import re
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Arch
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import apt, files, server, systemd

from holistix_deploy import dns
from holistix_deploy.facts import ZoneSerial
from holistix_deploy.operations import (
    coredns_release,
    dns_server_answers,
    install_helpers,
    resolv_conf,
    validated_file,
)
from holistix_deploy.settings import COREDNS_LOOPBACK_PORTS, load_settings
from holistix_deploy.templating import render

settings = load_settings(host)
domain = settings.domain
arch = dns.architecture(host.get_fact(Arch))
checksum = settings.architecture_checksum(
    "coredns_sha256",
    arch,
    host.name,
    f"coredns_{settings.coredns_version}_linux_{arch}.tgz.sha256 on the CoreDNS release page",
)

apt.packages(
    name="Ensure the DNS tools are installed (named-checkzone, dig, ip)",
    packages=["bind9-utils", "bind9-dnsutils", "iproute2", "curl"],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)
server.group(name="Ensure the coredns group exists", group="coredns", system=True)
server.user(
    name="Ensure the coredns system user exists (no login, no home)",
    user="coredns",
    group="coredns",
    system=True,
    shell="/usr/sbin/nologin",
    home="/nonexistent",
    create_home=False,
    ensure_home=False,
)
for directory in (dns.CONFIG_DIR, dns.ZONES_DIR):
    files.directory(name=f"Ensure {directory} exists", path=directory, user="root", group="root", mode="0755")

install_helpers({dns.CHECK_HELPER: "coredns/check_corefile.sh", dns.ACME_HELPER: "coredns/acme_dns.py"})
release = coredns_release(
    name=f"Ensure CoreDNS {settings.coredns_version} ({arch}) is installed, checked against its sha256",
    version=settings.coredns_version,
    url=settings.coredns_download_url.format(version=settings.coredns_version, arch=arch),
    sha256=checksum,
    binary=dns.BINARY,
    # a new release must load the Corefile that is live now, or it is not installed
    check_command=f"if [ -f {dns.COREFILE} ]; then {dns.CHECK_HELPER} {dns.COREFILE}"
    f" {COREDNS_LOOPBACK_PORTS['ready']} {{binary}}; fi",
)
acme_config = {
    "domain": domain,
    "zones_dir": dns.ZONES_DIR,
    "nameserver": f"ns1.{domain}.",
    "mailbox": dns.soa_mailbox(settings.admin_email),
    # resolvers may cache a challenge only briefly: a retried validation sees the new value
    "ttl": 60,
    "timeout_seconds": 30,
}
files.put(
    name=f"Ensure {dns.ACME_HELPER_CONFIG} describes the zone",
    src=StringIO(json.dumps(acme_config, indent=2, sort_keys=True) + "\n"),
    dest=dns.ACME_HELPER_CONFIG,
    mode="0644",
)

# -- the zone: the serial moves exactly when the content does -----------------------------------
zone_path = dns.zone_file(domain)
live = host.get_fact(ZoneSerial, path=zone_path)
if live and live["digest"] == dns.content_digest(settings):
    serial = live["serial"]
else:
    serial = dns.next_serial(live["serial"] if live else None, datetime.date.today())
validated_file(
    name=f"Ensure the zone {domain} is served (checked by named-checkzone first)",
    dest=zone_path,
    content=dns.render_zone(settings, serial),
    # its findings go to stderr, which pyinfra shows when the run fails
    validate=f"named-checkzone -k fail -n fail -m fail -M fail -S fail -i full {domain} {{path}} >&2",
    candidate=f"{dns.ZONES_DIR}/.candidate.db.{domain}",
    mode="0644",
)

# -- port 53: systemd-resolved's stub steps aside, without the host losing DNS -------------------
resolved_runs = "systemd-resolved.service" in host.get_fact(SystemdStatus)
if resolved_runs:
    resolv_conf_text = "\n".join(host.get_fact(FileContents, path="/etc/resolv.conf") or [])
    if re.search(r"^nameserver\s+127\.0\.0\.53\b", resolv_conf_text, re.M):
        server.shell(
            name="Ensure the host asks resolved's upstream servers directly while the stub goes away",
            commands=["ln -sfn /run/systemd/resolve/resolv.conf /etc/resolv.conf"],
        )
    no_stub = files.put(
        name="Ensure systemd-resolved leaves port 53 to CoreDNS",
        src=StringIO(render("coredns/resolved-no-stub.conf.j2")),
        dest="/etc/systemd/resolved.conf.d/holistix-no-stub.conf",
        mode="0644",
    )
    systemd.service(
        name="Ensure systemd-resolved has closed its stub listener",
        service="systemd-resolved",
        restarted=True,
        _if=no_stub.did_change,
    )

# -- CoreDNS itself ---------------------------------------------------------------------------------
corefile = validated_file(
    name="Ensure the Corefile is in place (a throwaway CoreDNS must start with it first)",
    dest=dns.COREFILE,
    content=dns.render_corefile(settings),
    validate=f"{dns.CHECK_HELPER} {{path}} {COREDNS_LOOPBACK_PORTS['ready']} {dns.BINARY}",
    candidate=f"{dns.CONFIG_DIR}/.Corefile.candidate",
    mode="0644",
)
unit = files.put(
    name="Ensure the sandboxed coredns.service unit is in place",
    src=StringIO(
        render(
            "coredns/coredns.service.j2",
            domain=domain,
            binary=dns.BINARY,
            corefile=dns.COREFILE,
            config_dir=dns.CONFIG_DIR,
        )
    ),
    dest="/etc/systemd/system/coredns.service",
    mode="0644",
)


def restart_needed() -> bool:
    return release.did_change() or unit.did_change()


systemd.service(
    name="Ensure CoreDNS runs the new binary or unit",
    service="coredns",
    restarted=True,
    daemon_reload=True,
    _if=restart_needed,
)
systemd.service(
    name="Ensure CoreDNS runs and starts at boot",
    service="coredns",
    running=True,
    enabled=True,
)
systemd.service(
    name="Ensure CoreDNS serves the new Corefile",
    service="coredns",
    reloaded=True,
    _if=lambda: corefile.did_change() and not restart_needed(),
)
dns_server_answers(
    name=f"Ensure CoreDNS answers for {domain} on {dns.LOOPBACK}",
    server=dns.LOOPBACK,
    domain=domain,
    unit="coredns",
)
resolv_conf(
    name="Ensure the host resolves through CoreDNS (switched only once CoreDNS answers)",
    content=dns.render_resolv_conf(settings, fallbacks=not resolved_runs),
    domain=domain,
    nameserver=dns.LOOPBACK,
)
if resolved_runs:
    # only now that CoreDNS answers: a CoreDNS that never started must not take resolved's DNS away
    resolved_upstream = files.put(
        name="Ensure systemd-resolved asks CoreDNS alone",
        src=StringIO(render("coredns/resolved-coredns.conf.j2", nameserver=dns.LOOPBACK)),
        dest="/etc/systemd/resolved.conf.d/holistix-coredns.conf",
        mode="0644",
    )
    systemd.service(
        name="Ensure systemd-resolved uses CoreDNS now",
        service="systemd-resolved",
        restarted=True,
        _if=resolved_upstream.did_change,
    )
