"""coredns: the settings that describe the zone refuse what would break DNS, and what the module
renders is a zone named-checkzone accepts, with a serial that moves exactly when the content does."""

import datetime
import shutil
import subprocess

import pytest

from holistix_deploy import dns
from holistix_deploy.settings import validate_data

from .helpers import problems_for

NO_SECRETS: dict[str, str] = {}
SPF = {"name": "@", "type": "TXT", "value": "v=spf1 mx -all"}


def settings_with(valid_data, **changes):
    return validate_data({**valid_data, **changes}, NO_SECRETS, host_name="vps1")


# (key, bad value, words of the rule the message must contain)
BAD_DNS_SETTINGS = [
    ("coredns_version", "v1.14.7", "like 1.2.3 (no leading v)"),
    ("coredns_version", "latest", "like 1.2.3 (no leading v)"),
    ("coredns_download_url", "ftp://mirror/coredns.tgz", "http(s) URL"),
    ("coredns_download_url", "https://mirror.example.com/coredns_{version}.tgz", "must contain {arch}"),
    ("coredns_download_url", "https://mirror.example.com/{name}_{arch}.tgz", "{name} is unknown"),
    ("coredns_sha256", {"amd64": "abc123"}, "not a sha256"),
    ("coredns_sha256", {"riscv64": "a" * 64}, "'amd64' or 'arm64'"),
    ("dns_upstreams", ["127.0.0.53"], "back to itself"),
    ("dns_upstreams", ["dns.google"], "valid IPv4"),
    ("dns_upstreams", [], "at least 1"),
    ("dns_upstreams", ["9.9.9.9", "9.9.9.9"], "same resolver twice"),
    ("dns_ttl", 5, "greater than or equal to 60"),
    ("dns_nameservers", ["ns2.example.net."], "must not end with a dot"),
    ("dns_caa_issuers", [], "at least 1"),
    ("dns_caa_issuers", ["Let's Encrypt"], "CAA identity"),
    ("dns_records", [{"name": "@", "type": "CNAME", "value": "other.example.net"}], "a CNAME cannot sit at '@'"),
    ("dns_records", [{"name": "ns1", "type": "A", "value": "198.51.100.1"}], "already points at public_ipv4"),
    ("dns_records", [{"name": "www", "type": "A", "value": "2001:db8::1"}], "not an IPv4 address"),
    ("dns_records", [{"name": "www", "type": "AAAA", "value": "198.51.100.1"}], "not an IPv6 address"),
    ("dns_records", [{"name": "@", "type": "MX", "value": "mail.example.com"}], "'<preference 0-65535> <mail host"),
    ("dns_records", [{"name": "@", "type": "MX", "value": "10 mail_server"}], "at least two labels"),
    ("dns_records", [{"name": "www", "type": "CNAME", "value": "Other.Example.net"}], "lower case"),
    ("dns_records", [{"name": "@", "type": "TXT", "value": "caf\u00e9"}], "printable ASCII"),
    ("dns_records", [{"name": "WWW", "type": "TXT", "value": "x"}], "name relative to DOMAIN"),
    ("dns_records", [{"name": "www.example.com.", "type": "TXT", "value": "x"}], "name relative to DOMAIN"),
    ("dns_records", [{"name": "_acme-challenge", "type": "TXT", "value": "x"}], "letsencrypt module"),
    ("dns_records", [{"name": "@", "type": "SRV", "value": "0 5 5060 sip"}], "'A', 'AAAA', 'CNAME', 'MX' or 'TXT'"),
    ("dns_records", [{"name": "@", "type": "TXT", "value": "x", "ttl": 1}], "greater than or equal to 60"),
    (
        "dns_records",
        [{"name": "www", "type": "CNAME", "value": "a.example.net"}, {"name": "www", "type": "TXT", "value": "x"}],
        "a CNAME must be alone",
    ),
]


@pytest.mark.parametrize(
    ("key", "value", "rule"), BAD_DNS_SETTINGS, ids=[f"{k}={v!r}"[:70] for k, v, _ in BAD_DNS_SETTINGS]
)
def test_bad_dns_setting_is_refused_naming_key_and_rule(valid_data, key, value, rule):
    problems = problems_for({**valid_data, key: value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(key), problems
    assert rule in problems[0], problems


def test_the_ganymede_port_cannot_take_a_coredns_admin_port(valid_data):
    problems = problems_for({**valid_data, "ganymede_port": 8181})
    assert problems == ["ganymede_port = 8181 clashes with coredns ready (TCP port 8181); every TCP port must differ"]


def test_the_zone_has_every_platform_name_and_the_extra_records(valid_data):
    settings = settings_with(
        valid_data,
        public_ipv6="2001:db8::10",
        dns_nameservers=["ns2.example.net"],
        dns_records=[SPF, {"name": "@", "type": "MX", "value": "10 mail.example.com"}],
    )
    rows = {(name, kind, data) for name, _ttl, kind, data in dns.records(settings)}
    for name in ("@", "ns1", "ganymede"):
        assert (name, "A", "203.0.113.10") in rows and (name, "AAAA", "2001:db8::10") in rows
    # organisations' blocks listen on IPv4 only (Ganymede writes them): no AAAA for the wildcard
    assert ("*", "A", "203.0.113.10") in rows and ("*", "AAAA", "2001:db8::10") not in rows
    assert {("@", "NS", "ns1.app.example.com."), ("@", "NS", "ns2.example.net.")} <= rows
    assert ("@", "CAA", '0 issue "letsencrypt.org"') in rows
    assert ("@", "CAA", '0 issuewild "letsencrypt.org"') in rows
    assert ("@", "CAA", '0 iodef "mailto:ops@example.com"') in rows
    assert ("@", "MX", "10 mail.example.com.") in rows
    assert ("@", "TXT", '"v=spf1 mx -all"') in rows


def test_no_aaaa_records_without_an_ipv6_address(valid_data):
    assert all(kind != "AAAA" for _, _, kind, _ in dns.records(settings_with(valid_data)))


def test_long_txt_values_are_split_into_255_byte_strings(valid_data):
    dkim = "v=DKIM1; k=rsa; p=" + "A" * 400
    settings = settings_with(valid_data, dns_records=[{"name": "mail._domainkey", "type": "TXT", "value": dkim}])
    data = next(d for n, _, k, d in dns.records(settings) if n == "mail._domainkey")
    chunks = data.split('" "')
    assert len(chunks) == 2 and len(chunks[0].strip('"')) == 255
    assert "".join(chunk.strip('"') for chunk in chunks) == dkim


def test_the_soa_mailbox_escapes_dots_before_the_at(valid_data):
    assert dns.soa_mailbox("ops.team@example.com") == "ops\\.team.example.com."
    assert dns.soa_mailbox("ops@example.com") == "ops.example.com."


@pytest.mark.parametrize(
    ("current", "today", "expected"),
    [
        (None, datetime.date(2026, 11, 27), 2026112700),
        (2026112700, datetime.date(2026, 11, 27), 2026112701),
        (2026112705, datetime.date(2026, 11, 28), 2026112800),
        (2026112799, datetime.date(2026, 11, 27), 2026112800),  # a 100th change the same day
        (4000000000, datetime.date(2026, 11, 27), 4000000001),  # a larger serial from an older scheme
    ],
)
def test_the_next_serial_is_always_higher(current, today, expected):
    assert dns.next_serial(current, today) == expected


def test_a_serial_at_the_end_of_its_range_is_an_error_not_a_wrap():
    with pytest.raises(ValueError, match="RFC 1982"):
        dns.next_serial(2**32 - 1, datetime.date(2026, 11, 27))


def test_the_content_digest_ignores_the_serial_and_follows_the_content(valid_data):
    settings = settings_with(valid_data)
    assert dns.content_digest(settings) == dns.content_digest(settings_with(valid_data))
    assert dns.content_digest(settings) != dns.content_digest(settings_with(valid_data, dns_records=[SPF]))
    assert dns.content_digest(settings) != dns.content_digest(settings_with(valid_data, dns_ttl=600))
    assert dns.content_digest(settings) != dns.content_digest(settings_with(valid_data, admin_email="dns@example.com"))
    first, second = dns.render_zone(settings, 2026112700), dns.render_zone(settings, 2026112701)
    assert first.replace("2026112700", "2026112701") == second


@pytest.mark.parametrize(
    "records",
    [
        [],
        [SPF, {"name": "_dmarc", "type": "TXT", "value": "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"}],
        [
            {"name": "@", "type": "MX", "value": "10 mail.app.example.com"},
            {"name": "mail", "type": "A", "value": "198.51.100.25"},
        ],
        [
            {"name": "www", "type": "CNAME", "value": "app.example.com"},
            {"name": "docs", "type": "CNAME", "value": "x.example.net"},
        ],
        [{"name": "mail._domainkey", "type": "TXT", "value": 'v=DKIM1; p="' + "B" * 500 + '"\\'}],
    ],
    ids=["plain", "spf-dmarc", "mx-in-zone", "cnames", "long-quoted-txt"],
)
def test_rendered_zone_passes_named_checkzone_strict(valid_data, tmp_path, records):
    checker = shutil.which("named-checkzone")
    assert checker, "named-checkzone (bind9-utils) is needed: apt install bind9-utils"
    settings = settings_with(valid_data, public_ipv6="2001:db8::10", dns_records=records)
    zone = tmp_path / "db.app.example.com"
    zone.write_text(dns.render_zone(settings, 2026112700))
    strict = ["-k", "fail", "-n", "fail", "-m", "fail", "-M", "fail", "-S", "fail", "-i", "full"]
    check = subprocess.run([checker, *strict, settings.domain, str(zone)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_recursion_is_for_loopback_and_the_docker_bridge_only(valid_data):
    settings = settings_with(valid_data, docker_bridge_cidr="172.18.0.1/16", dns_upstreams=["9.9.9.9", "1.1.1.1"])
    corefile = dns.render_corefile(settings)
    assert "allow net 127.0.0.0/8 ::1/128 172.18.0.0/16\n        block\n" in corefile
    assert "forward . 9.9.9.9 1.1.1.1 {" in corefile
    assert "block type AXFR IXFR" in corefile and "transfer" not in corefile


def test_the_host_falls_back_to_two_upstreams_after_coredns(valid_data):
    settings = settings_with(valid_data, dns_upstreams=["9.9.9.9", "1.1.1.1", "8.8.8.8"])
    nameservers = [
        line.split()[1] for line in dns.render_resolv_conf(settings).splitlines() if line.startswith("nameserver")
    ]
    assert nameservers == ["127.0.0.1", "9.9.9.9", "1.1.1.1"]


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_the_release_architecture_follows_uname(machine, arch):
    assert dns.architecture(machine) == arch


def test_an_architecture_without_a_release_is_named():
    with pytest.raises(ValueError, match="'riscv64'"):
        dns.architecture("riscv64")
