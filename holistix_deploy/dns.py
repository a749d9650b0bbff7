"""What the coredns module serves, derived from the settings: the zone's records, its serial,
the Corefile and the host's resolv.conf. Pure functions, so unit tests can check them and
``named-checkzone`` can lint a rendered zone without a host."""

from __future__ import annotations

import datetime
import hashlib

from holistix_deploy.settings import COREDNS_LOOPBACK_PORTS, Settings
from holistix_deploy.templating import render

CONFIG_DIR = "/etc/coredns"
ZONES_DIR = "/etc/coredns/zones"
COREFILE = "/etc/coredns/Corefile"
BINARY = "/usr/local/bin/coredns"
# CoreDNS's auto plugin rescans the zone directory this often: a zone file that appears,
# disappears or gets a higher SOA serial is served within this time (plus a parse).
ZONE_RELOAD_SECONDS = 2
# zone files are "db.<origin>"; candidates and backups start with a dot, so auto never loads them
ZONE_FILE_PATTERN = r"^db\.([a-z0-9_.-]+)$"
# the letsencrypt module's DNS-01 helper (installed by this module, see files/coredns/)
ACME_HELPER = "/usr/local/sbin/holistix-acme-dns"
CHECK_HELPER = "/usr/local/lib/holistix/coredns-check-corefile"
ACME_HELPER_CONFIG = "/etc/coredns/holistix-acme-dns.json"
# SOA timers: refresh, retry, expire (seconds); minimum (negative TTL) comes from dns_ttl
SOA_TIMERS = (3600, 900, 1209600)
LOOPBACK = "127.0.0.1"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"}


def zone_file(domain: str) -> str:
    return f"{ZONES_DIR}/db.{domain}"


def soa_mailbox(email: str) -> str:
    """admin_email as an SOA RNAME: the @ becomes a dot, dots before it are escaped (RFC 1035)."""
    local, _, domain = email.rpartition("@")
    return local.replace(".", "\\.") + "." + domain + "."


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _txt_strings(text: str) -> str:
    """A TXT value as quoted character-strings of at most 255 bytes each (RFC 1035 3.3.14)."""
    escaped = [text[i : i + 255].replace("\\", "\\\\").replace('"', '\\"') for i in range(0, len(text), 255)]
    return " ".join(f'"{chunk}"' for chunk in escaped)


def records(settings: Settings) -> list[tuple[str, int, str, str]]:
    """(name, ttl, type, rdata) of every record but the SOA, in a stable order."""
    domain, ttl = settings.domain, settings.dns_ttl
    addresses = [("A", str(settings.public_ipv4))]
    if settings.public_ipv6:
        addresses.append(("AAAA", str(settings.public_ipv6)))
    rows = [("@", ttl, "NS", f"ns1.{domain}.")]
    rows += [("@", ttl, "NS", _fqdn(name)) for name in settings.dns_nameservers if name != f"ns1.{domain}"]
    # the wildcard answers org-<uuid>.DOMAIN and, having no closer encloser, uc-<id>.org-<uuid>.DOMAIN too.
    # It gets no AAAA: Ganymede writes the organisations' server blocks with "listen 443" only, so
    # an IPv6 client of org-<uuid>.DOMAIN would reach no block of its own (platform contract 4.19)
    for name in ("@", "ns1", "ganymede", "*"):
        rows += [(name, ttl, kind, address) for kind, address in addresses if not (name == "*" and kind == "AAAA")]
    for issuer in settings.dns_caa_issuers:
        rows.append(("@", ttl, "CAA", f'0 issue "{issuer}"'))
        rows.append(("@", ttl, "CAA", f'0 issuewild "{issuer}"'))
    rows.append(("@", ttl, "CAA", f'0 iodef "mailto:{settings.admin_email}"'))
    for record in settings.dns_records:
        value = record.value
        if record.type == "CNAME":
            value = _fqdn(value)
        elif record.type == "MX":
            preference, host = value.split()
            value = f"{preference} {_fqdn(host)}"
        elif record.type == "TXT":
            value = _txt_strings(value)
        rows.append((record.name, record.ttl or ttl, record.type, value))
    return rows


def zone_body(settings: Settings) -> str:
    """The zone's records without the SOA: what the serial tracks."""
    return "".join(f"{name:<24} {ttl:>6} IN {kind:<5} {data}\n" for name, ttl, kind, data in records(settings))


def content_digest(settings: Settings) -> str:
    """sha256 of everything the zone says except its serial (SOA fields included)."""
    soa = (settings.domain, soa_mailbox(settings.admin_email), SOA_TIMERS, settings.dns_ttl)
    return hashlib.sha256(f"{soa!r}\n{zone_body(settings)}".encode()).hexdigest()


def next_serial(current: int | None, today: datetime.date) -> int:
    """A serial above ``current`` in the YYYYMMDDnn convention (just current + 1 once a day
    has more than 99 changes, or when an older scheme left a larger number)."""
    dated = int(today.strftime("%Y%m%d")) * 100
    serial = max((current or 0) + 1, dated)
    if serial >= 2**32:
        raise ValueError(f"SOA serial {current} cannot grow past 2^32-1; reset it by hand (RFC 1982)")
    return serial


def render_zone(settings: Settings, serial: int) -> str:
    return render(
        "coredns/zone.j2",
        domain=settings.domain,
        digest=content_digest(settings),
        serial=serial,
        mailbox=soa_mailbox(settings.admin_email),
        timers=SOA_TIMERS,
        ttl=settings.dns_ttl,
        body=zone_body(settings),
    )


def recursion_clients(settings: Settings) -> list[str]:
    """Sources CoreDNS forwards other names for: this host and the Docker bridge's subnet.

    By source address, so the bridge need not exist when CoreDNS starts. A packet from the
    internet with a spoofed bridge source gains nothing: the answer goes to a private address."""
    return ["127.0.0.0/8", "::1/128", str(settings.docker_bridge_cidr.network)]


def render_corefile(settings: Settings) -> str:
    return render(
        "coredns/Corefile.j2",
        domain=settings.domain,
        zones_dir=ZONES_DIR,
        zone_file_pattern=ZONE_FILE_PATTERN,
        reload_seconds=ZONE_RELOAD_SECONDS,
        recursion_clients=recursion_clients(settings),
        upstreams=[str(address) for address in settings.dns_upstreams],
        loopback=LOOPBACK,
        ports=COREDNS_LOOPBACK_PORTS,
    )


def render_resolv_conf(settings: Settings, fallbacks: bool = True) -> str:
    """CoreDNS first; then (glibc reads three) upstreams, so the host still resolves outside
    names while CoreDNS restarts. No fallbacks where systemd-resolved runs: it imports this
    file's servers and, once on a fallback, stays there (resolving the platform's names outside)."""
    upstreams = [str(address) for address in settings.dns_upstreams[:2]] if fallbacks else []
    return render("coredns/resolv.conf.j2", fallbacks=upstreams)


def architecture(uname_machine: str) -> str:
    try:
        return ARCHITECTURES[uname_machine]
    except KeyError:
        raise ValueError(f"CoreDNS has no release for this host's architecture {uname_machine!r}") from None
