"""Day one of a VPS, as an operator lives it: fresh host -> bootstrap as root -> converge as
deploy -> host suites -> checks from outside (port scan, ssh-audit, fail2ban, lockout
rollback) -> zero-change re-run -> reboot -> host suites and scan again -> Docker published
ports still obey the firewall."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from holistix_deploy import dns, ganymede, monitoring
from holistix_deploy import nginx as web
from holistix_deploy.hardening import SSH_AUDIT_POLICY
from holistix_deploy.settings import COREDNS_LOOPBACK_PORTS, MONITORING_LOOPBACK_PORTS

from . import retention

pytestmark = pytest.mark.destructive

RUNS: dict[str, list] = {}
# each check from outside has an address of its own, so that fail2ban or ufw's rate limit,
# provoked on purpose by one check, never blocks another
PROBE_SCAN, PROBE_AUDIT, PROBE_ROOT, PROBE_BANNED, PROBE_LOGIN, PROBE_OPERATOR = 2, 3, 4, 5, 6, 7
PROBE_MIGRATIONS, PROBE_RESTORE = 8, 9
PROBE_DNS_CHANGE, PROBE_DNS_BROKEN, PROBE_DNS_RESTORE = 10, 11, 12
PROBE_WEB, PROBE_AUTH_BURST, PROBE_STATIC_BURST, PROBE_NGINX_BROKEN, PROBE_NGINX_AGAIN = 13, 14, 15, 16, 17
PROBE_ACME_DNS_DOWN, PROBE_ACME_CLOUDFLARE, PROBE_ACME_RESTORE = 18, 19, 20
# the release runs come quickly one after another: each from an address that has been quiet for
# minutes (and never banned), so ufw's 6-in-30-s SSH limit never counts them together
PROBE_RELEASE_2, PROBE_RELEASE_3, PROBE_ROLLBACK, PROBE_CHECKSUM = 10, 11, 12, 16
PROBE_SCALE_UP, PROBE_SCALE_DOWN, PROBE_SCALE_BACK = 14, 15, 17
PROBE_OFFSITE, PROBE_OFFSITE_BACK = 18, 19
PROBE_MONITORING_ALERTS, PROBE_MONITORING_BACK, PROBE_MONITORING_BROKEN = 8, 9, 13
PROBE_FIRST_RERUN = 20
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
ARTIFACTS = Path(os.environ.get("HOLISTIX_ARTIFACTS", "/var/cache/holistix-deploy/artifacts"))


def _venv_tool(name: str) -> str:
    """A command installed with the project's test dependencies (PATH may not hold the venv)."""
    return shutil.which(name) or f"{sys.prefix}/bin/{name}"


def _report(run) -> str:
    return f"rc={run.returncode}\n--- stderr (tail) ---\n{run.stderr[-5000:]}"


def _scan(staging_host, *nmap_args: str, target: str | None = None) -> dict[str, str]:
    """nmap from the probe: {"22/tcp": "open", ...} for every port the firewall lets through
    ("open", or "closed" when nothing listens yet); dropped ports ("filtered", "open|filtered")
    are left out."""
    scan = staging_host.probe(
        "nmap",
        "-Pn",
        "-n",
        "--max-retries",
        "2",
        "-oG",
        "-",
        *nmap_args,
        target or staging_host.address,
        addr=PROBE_SCAN,
    )
    assert scan.returncode == 0, scan.stderr
    ports_line = next((line for line in scan.stdout.splitlines() if "Ports:" in line), "")
    states = {}
    for entry in re.findall(r"(\d+)/([a-z|]+)/(tcp|udp)/", ports_line):
        port, state, protocol = entry
        if "filtered" not in state:
            states[f"{port}/{protocol}"] = state
    return states


def _expected_tcp(settings) -> set[str]:
    ports = {"22/tcp", "80/tcp", "443/tcp"} | ({"53/tcp"} if settings.dns_served_publicly else set())
    ports |= {f"{r.ports}/{r.protocol}" for r in settings.firewall_extra_rules if r.target == "host"}
    return ports


# -- day one ------------------------------------------------------------------------------------


def test_fresh_host_offers_root_key_login_and_password_login(staging_host):
    effective = staging_host.exec("sshd", "-T")
    assert "passwordauthentication yes" in effective  # the cloud-init drop-in
    assert "deploy:" not in staging_host.exec("cat", "/etc/passwd")


def test_bad_settings_stop_the_run_before_any_change(staging_host):
    run = staging_host.pyinfra("--data", "gateway_pool_sise=3", "--data", "domain=Not_A_Domain", as_root=True)
    assert run.returncode != 0
    assert "gateway_pool_sise = 3: unknown setting; did you mean 'gateway_pool_size'?" in run.stderr
    assert "domain = 'Not_A_Domain'" in run.stderr
    assert "deploy:" not in staging_host.exec("cat", "/etc/passwd"), "the host was changed"


def test_bootstrap_as_root_creates_the_deploy_user_and_keeps_root_open(staging_host):
    run = staging_host.pyinfra("-vvv", deploy="deploys/base.py", as_root=True)
    RUNS.setdefault(staging_host.name, []).append(run)
    assert run.returncode == 0, _report(run)
    assert "deploy:" in staging_host.exec("cat", "/etc/passwd")
    # the bootstrap run logged in as root: closing root now would end its own access path
    assert "permitrootlogin without-password" in staging_host.exec("sshd", "-T")
    assert "passwordauthentication no" in staging_host.exec("sshd", "-T")


def test_a_planned_run_works_before_anything_is_installed(staging_host):
    # pyinfra without -y plans every module first: nothing may depend on an earlier operation
    run = staging_host.pyinfra("--dry")
    assert run.returncode == 0, _report(run)


def test_someone_left_hand_made_ufw_rules(staging_host):
    # Arrange: what a previous admin might leave: inactive ufw with a stale comment on 22 and an
    # extra opening. The converge must end with exactly the inventory's rules (the scans below
    # would see 8080 otherwise) without losing SSH on the way.
    made = staging_host.harness(
        "exec",
        staging_host.name,
        "sh",
        "-c",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q ufw >/dev/null"
        " && ufw limit 22/tcp comment 'by hand' && ufw allow 8080/tcp comment 'forgotten test'",
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "8080/tcp" in staging_host.exec("ufw", "show", "added")


def test_systemd_resolved_holds_port_53_like_on_ubuntu(staging_host):
    # Arrange: Ubuntu 24.04's resolver setup (resolved's stub on 127.0.0.53:53, resolv.conf a link
    # to it); the coredns module must take port 53 over without the host losing DNS
    made = staging_host.harness(
        "exec",
        staging_host.name,
        "sh",
        "-c",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd-resolved >/dev/null && systemctl start systemd-resolved",
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert staging_host.exec("readlink", "/etc/resolv.conf").strip().endswith("stub-resolv.conf")
    assert re.search(r"127\.0\.0\.53(%lo)?:53\s", staging_host.exec("ss", "-Hlnu")), "resolved's stub is not listening"


def test_converge_as_the_deploy_user(staging_host):
    run = staging_host.pyinfra("-vvv")
    RUNS.setdefault(staging_host.name, []).append(run)
    assert run.returncode == 0, _report(run)
    assert run.results["totals"]["error"] == 0


def test_no_secret_appears_in_anything_pyinfra_printed(staging_host):
    runs = RUNS.get(staging_host.name)
    assert runs and len(runs) == 2, "the bootstrap and converge runs must have happened"
    printed = "\n".join(run.stdout + run.stderr for run in runs)
    secrets_dir = "/etc/holistix/staging"
    generated = {
        name: staging_host.exec("cat", f"{secrets_dir}/{name}")
        for name in (
            "session_cookie_key",
            "credentials_encryption_key",
            "jwt_private_key.pem",
            "database_password",
            "dashboards_password",
        )
    }
    # the operator secrets really reached the host (else the check below proves nothing)
    stored = staging_host.exec("cat", f"{secrets_dir}/smtp_password").strip()
    reached_the_host = stored == staging_host.operator_secrets["HOLISTIX_SMTP_PASSWORD"]
    assert reached_the_host, "HOLISTIX_SMTP_PASSWORD was not stored on the host"  # no values in the report
    needles = {f"${name}": value for name, value in staging_host.operator_secrets.items()}
    for name, value in generated.items():
        # a PEM key leaks as lines; check each body line of it
        lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
        needles.update({f"{name} line {i}": line for i, line in enumerate(lines)})
    # the gateways' registration tokens (JWTs made on the host during the converge)
    tokens_dir = f"{secrets_dir}/gateways"
    for name in staging_host.exec("ls", tokens_dir).split():
        needles[f"token of {name}"] = json.loads(staging_host.exec("cat", f"{tokens_dir}/{name}"))["token"]
    assert any(name.startswith("token of") for name in needles), "no gateway was registered"
    # the backup repository's password, kept apart from the secrets it protects
    needles["restic password"] = staging_host.exec("cat", "/etc/holistix-backup/staging/restic-password").strip()
    assert all(len(needle) >= 20 for needle in needles.values())
    leaked = [name for name, needle in needles.items() if needle in printed]
    assert leaked == [], f"secret values printed by pyinfra: {leaked}"


def test_a_fresh_hosts_second_converge_changes_nothing(staging_host):
    """At once, before any test changes the host: what the first converge leaves that a re-run
    would set again shows here (the later second converge comes after converges that hide it)."""
    run = staging_host.pyinfra(from_probe=PROBE_FIRST_RERUN)
    assert run.returncode == 0, _report(run)
    changed = run.changed_operations(staging_host.name)
    assert changed == [], f"the second converge of a fresh host changed {len(changed)} operation(s): {changed}"


def test_host_suites_pass(staging_host):
    suites = staging_host.host_suites()
    assert suites.returncode == 0, suites.stdout[-6000:]


# -- from outside -----------------------------------------------------------------------------


def test_root_and_passwords_are_refused_from_outside(staging_host):
    root = staging_host.ssh_from_probe("root", staging_host.env["STAGING_PROVIDER_KEY"], "true", addr=PROBE_ROOT)
    assert root.returncode != 0
    assert "Authentications that can continue: publickey\n" in root.stderr.replace("\r", "")
    deploy = staging_host.ssh_from_probe(
        "deploy", staging_host.env["STAGING_OPERATOR_KEY"], "sudo -n true", addr=PROBE_LOGIN
    )
    assert deploy.returncode == 0, deploy.stderr[-2000:]


def test_only_the_platform_ports_are_open_from_outside(staging_host):
    settings = staging_host.settings()
    reachable = _scan(staging_host, "-sS", "-p-", "--min-rate", "20000")
    # "closed" means the firewall let the probe through and nothing listens there yet
    assert set(reachable) == _expected_tcp(settings)
    assert reachable["22/tcp"] == "open"
    udp = _scan(staging_host, "-sU", "-p", "53,54,49100")
    vpn = {"49100/udp"} if settings.gateway_image and settings.gateway_vpn_port_base == 49100 else set()
    assert set(udp) == ({"53/udp"} if settings.dns_served_publicly else set()) | vpn


def test_hand_made_rules_are_gone(staging_host):
    added = staging_host.exec("ufw", "show", "added")
    assert "8080" not in added and "by hand" not in added
    assert "ufw limit 22/tcp comment 'ssh, rate limited'" in added


def test_only_the_platform_ports_are_open_over_ipv6(staging_host):
    link_local = staging_host.exec("ip", "-6", "-br", "addr", "show", "dev", "eth0").split()[2].split("/")[0]
    reachable = _scan(staging_host, "-6", "-sS", "-p-", "--min-rate", "20000", target=f"{link_local}%eth0")
    assert set(reachable) == _expected_tcp(staging_host.settings())


def test_ssh_passes_the_ssh_audit_hardened_policy(staging_host):
    ssh_audit = _venv_tool("ssh-audit")
    audit = staging_host.probe(
        ssh_audit, "--skip-rate-test", "-P", SSH_AUDIT_POLICY, staging_host.address, addr=PROBE_AUDIT
    )
    version = re.search(r"OpenSSH_(\d+)\.(\d+)", staging_host.exec("sh", "-c", "ssh -V 2>&1"))
    if (int(version[1]), int(version[2])) >= (9, 6):
        assert audit.returncode == 0, audit.stdout[-3000:]
        assert "Passed" in audit.stdout
        return
    # OpenSSH before 9.6 (Debian 12) never advertises the "ext-info-s" marker the policy lists;
    # nothing configurable can add it, so that one difference, and only it, is accepted
    errors = re.findall(r"^\s+\* (.+)$", audit.stdout, re.M)
    assert errors == ["Key exchanges did not match."], audit.stdout[-3000:]
    expected = re.search(r"- Expected: (.+)", audit.stdout)[1].split(", ")
    actual = re.search(r"- Actual:\s+(.+)", audit.stdout)[1].split(", ")
    assert [name for name in expected if name != "ext-info-s"] == actual


def test_fail2ban_bans_an_address_that_keeps_failing(staging_host, tmp_path):
    banned_ip = staging_host.address.rsplit(".", 1)[0] + f".{PROBE_BANNED}"
    stranger_key = tmp_path / "stranger_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger_key)], check=True)
    attempts = staging_host.settings().fail2ban_sshd_maxretry + 1
    for _ in range(attempts):
        staging_host.ssh_from_probe("nosuchuser", str(stranger_key), "true", addr=PROBE_BANNED)
    deadline = time.monotonic() + 30
    while banned_ip not in staging_host.exec("fail2ban-client", "status", "sshd") and time.monotonic() < deadline:
        time.sleep(1)
    try:
        assert banned_ip in staging_host.exec("fail2ban-client", "status", "sshd")
        assert banned_ip in staging_host.exec("iptables", "-S", "f2b-sshd")
        refused = staging_host.probe(
            "bash", "-c", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{staging_host.address}/22'", addr=PROBE_BANNED
        )
        assert refused.returncode != 0, "the banned address still reaches sshd"
    finally:
        staging_host.exec("fail2ban-client", "set", "sshd", "unbanip", banned_ip)


def test_an_sshd_change_that_would_lock_out_is_rolled_back(staging_host):
    before = staging_host.exec("cat", "/etc/ssh/sshd_config.d/00-holistix-hardening.conf")
    # from a second operator machine: the failed proof and the restore are three SSH connections,
    # which the control machine's budget under ufw's rate limit (6 in 30 s) must not pay for
    run = staging_host.pyinfra(
        "--data", 'ssh_extra_options={"AllowUsers": "nobody"}', deploy="deploys/base.py", from_probe=PROBE_OPERATOR
    )
    assert run.returncode != 0, "a configuration that locks the deploy user out must fail the run"
    assert "restored the previous configuration" in run.stderr, _report(run)
    assert staging_host.exec("cat", "/etc/ssh/sshd_config.d/00-holistix-hardening.conf") == before
    assert "allowusers" not in staging_host.exec("sshd", "-T")
    login = staging_host.ssh_from_probe("deploy", staging_host.env["STAGING_OPERATOR_KEY"], "true", addr=PROBE_LOGIN)
    assert login.returncode == 0, login.stderr[-2000:]


def test_postgresql_tls_is_mozilla_intermediate_compliant(staging_host, tmp_path):
    cluster_dir = staging_host.exec("sh", "-c", "ls -d /etc/postgresql/*/main | sort -V | tail -1").strip()
    ca = tmp_path / "postgres-ca.pem"
    ca.write_text(staging_host.exec("cat", f"{cluster_dir}/holistix-ca.crt"))
    sslyze = _venv_tool("sslyze")
    # PostgreSQL listens on the host's loopback only: sslyze runs in the host's network namespace
    scan = staging_host.harness(
        "netns",
        staging_host.name,
        sslyze,
        "--starttls=postgres",
        "--mozilla_config=intermediate",
        f"--certinfo_ca_file={ca}",
        "127.0.0.1:5432",
        check=False,
    )
    assert scan.returncode == 0, scan.stdout[-3000:]
    assert "OK - Compliant" in scan.stdout


def _schema(staging_host) -> str:
    dump = staging_host.exec("runuser", "-u", "postgres", "--", "pg_dump", "--schema-only", "ganymede_staging")
    # recent pg_dump wraps its output in \restrict/\unrestrict lines with a random key
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def _database_copy(tmp_path):
    from .conftest import ROOT

    copy = tmp_path / "database"
    shutil.copytree(ROOT / "tests" / "fixtures" / "database", copy)
    return copy


def test_a_changed_applied_migration_stops_the_run_and_names_the_file(staging_host, tmp_path):
    database = _database_copy(tmp_path)
    migration = database / "migrations" / "001-gateway-nginx-upstream.sql"
    migration.write_text(migration.read_text() + "-- edited after it was applied\n")
    run = staging_host.pyinfra(
        "--data", f"postgres_database_dir={database}", deploy="deploys/postgres.py", from_probe=PROBE_MIGRATIONS
    )
    assert run.returncode != 0
    assert "migrations/001-gateway-nginx-upstream.sql was applied with sha256" in run.stderr, _report(run)
    assert "put the change in a new migration file" in run.stderr


def test_a_broken_new_migration_leaves_the_schema_as_it_was(staging_host, tmp_path):
    database = _database_copy(tmp_path)
    (database / "migrations" / "003-half-broken.sql").write_text(
        "ALTER TABLE gateways ADD COLUMN half_applied integer;\nSELECT no_such_column FROM gateways;\n"
    )
    before = _schema(staging_host)
    run = staging_host.pyinfra(
        "--data", f"postgres_database_dir={database}", deploy="deploys/postgres.py", from_probe=PROBE_MIGRATIONS
    )
    assert run.returncode != 0
    assert "migrations/003-half-broken.sql failed and was rolled back" in run.stderr, _report(run)
    assert _schema(staging_host) == before
    assert "half_applied" not in before
    # the inventory's own directory again, so that the next converge starts from it
    restore = staging_host.pyinfra(deploy="deploys/postgres.py", from_probe=PROBE_RESTORE)
    assert restore.returncode == 0, _report(restore)


# -- DNS, asked from outside ------------------------------------------------------------------------


def _dig(staging_host, *question: str) -> str:
    """dig at the host from the probe (the internet); DNS is neither rate limited nor banned."""
    asked = staging_host.probe("dig", "+time=2", "+tries=2", f"@{staging_host.address}", *question, addr=PROBE_SCAN)
    assert asked.returncode == 0, asked.stderr
    return asked.stdout


def _serial(staging_host) -> int:
    return int(_dig(staging_host, "+short", staging_host.settings().domain, "SOA").split()[2])


def _served_within(staging_host, seconds: float, *question: str, expect) -> tuple[bool, float]:
    started = time.monotonic()
    while True:
        if expect(_dig(staging_host, "+norec", "+short", *question)):
            return True, time.monotonic() - started
        if time.monotonic() - started > seconds:
            return False, seconds
        time.sleep(0.2)


def test_dns_answers_authoritatively_for_every_platform_name(staging_host):
    domain = staging_host.settings().domain
    organisation = f"org-{uuid.uuid4()}"
    for name in (
        domain,
        f"ns1.{domain}",
        f"ganymede.{domain}",
        f"{organisation}.{domain}",
        f"uc-7.{organisation}.{domain}",
    ):
        answer = _dig(staging_host, "+norec", name, "A")
        assert re.search(r"flags: qr aa[ ;]", answer), f"{name}: not authoritative\n{answer}"
        assert re.search(rf"^{re.escape(name)}\.\s+\d+\s+IN\s+A\s+{re.escape(staging_host.address)}$", answer, re.M), (
            answer
        )


def test_dns_serves_soa_ns_caa_and_the_extra_records(staging_host):
    settings = staging_host.settings()
    domain = settings.domain
    soa = _dig(staging_host, "+short", domain, "SOA").split()
    assert soa[0] == f"ns1.{domain}." and soa[1] == dns.soa_mailbox(settings.admin_email).replace("\\", "")
    assert _dig(staging_host, "+short", domain, "NS").split() == [f"ns1.{domain}."]
    caa = _dig(staging_host, "+short", domain, "CAA").splitlines()
    assert sorted(caa) == sorted(
        [f'0 issue "{i}"' for i in settings.dns_caa_issuers]
        + [f'0 issuewild "{i}"' for i in settings.dns_caa_issuers]
        + [f'0 iodef "mailto:{settings.admin_email}"']
    )
    assert _dig(staging_host, "+short", domain, "MX").strip() == f"10 mail.{domain}."
    assert '"v=spf1 mx -all"' in _dig(staging_host, "+short", domain, "TXT")
    assert "v=DMARC1" in _dig(staging_host, "+short", f"_dmarc.{domain}", "TXT")
    assert _dig(staging_host, "+short", f"www.{domain}", "CNAME").strip() == f"{domain}."


def test_dns_is_not_an_open_resolver(staging_host):
    for name in ("example.org", "outside.example.org"):
        answer = _dig(staging_host, "+rec", name, "A")
        assert "status: REFUSED" in answer and "ANSWER: 0" in answer, answer


def test_zone_transfers_are_refused(staging_host):
    domain = staging_host.settings().domain
    for kind in ("AXFR", f"IXFR={_serial(staging_host) - 1}"):
        transfer = _dig(staging_host, "+tcp", domain, kind)
        assert "Transfer failed." in transfer or "status: REFUSED" in transfer, transfer
        assert not re.search(r"\sIN\s+(A|NS|TXT)\s", transfer), f"{kind} leaked records:\n{transfer}"


def _records_with(staging_host, *extra: dict) -> str:
    records = [record.model_dump() for record in staging_host.settings().dns_records] + list(extra)
    return f"dns_records={json.dumps(records)}"


def test_a_changed_record_is_served_with_a_higher_serial_without_a_restart(staging_host):
    domain = staging_host.settings().domain
    unit_before = staging_host.exec("systemctl", "show", "-p", "InvocationID,MainPID,NRestarts", "coredns")
    serial_before = _serial(staging_host)
    token = secrets.token_hex(12)
    run = staging_host.pyinfra(
        "--data",
        _records_with(staging_host, {"name": "e2e-change", "type": "TXT", "value": token}),
        deploy="deploys/coredns.py",
        from_probe=PROBE_DNS_CHANGE,
    )
    assert run.returncode == 0, _report(run)
    assert run.changed_operations(staging_host.name) == [
        f"Ensure the zone {domain} is served (checked by named-checkzone first)"
    ]
    # the documented bound (README, coredns): the zone directory is rescanned every ZONE_RELOAD_SECONDS
    served, seconds = _served_within(
        staging_host, dns.ZONE_RELOAD_SECONDS + 1, f"e2e-change.{domain}", "TXT", expect=lambda out: token in out
    )
    assert served, f"the new record was not served within {dns.ZONE_RELOAD_SECONDS + 1} s"
    print(f"new record served {seconds:.1f} s after the run")
    assert _serial(staging_host) > serial_before
    assert staging_host.exec("systemctl", "show", "-p", "InvocationID,MainPID,NRestarts", "coredns") == unit_before


def test_a_zone_named_checkzone_rejects_never_replaces_the_serving_one(staging_host):
    domain = staging_host.settings().domain
    serial_before = _serial(staging_host)
    # passes the settings schema, but an MX must not point at a CNAME (www is one): named-checkzone -M fail
    run = staging_host.pyinfra(
        "--data",
        _records_with(staging_host, {"name": "@", "type": "MX", "value": f"20 www.{domain}"}),
        deploy="deploys/coredns.py",
        from_probe=PROBE_DNS_BROKEN,
    )
    assert run.returncode != 0
    assert "rejected by the checker, the live file is unchanged" in run.stderr, _report(run)
    assert "is a CNAME (illegal)" in run.stderr, _report(run)
    time.sleep(dns.ZONE_RELOAD_SECONDS + 1)
    assert _serial(staging_host) == serial_before
    assert _dig(staging_host, "+short", f"e2e-change.{domain}", "TXT").strip(), "the serving zone was replaced"
    restore = staging_host.pyinfra(deploy="deploys/coredns.py", from_probe=PROBE_DNS_RESTORE)
    assert restore.returncode == 0, _report(restore)
    gone, _ = _served_within(
        staging_host, dns.ZONE_RELOAD_SECONDS + 1, f"e2e-change.{domain}", "TXT", expect=lambda out: not out.strip()
    )
    assert gone


def test_dns01_challenge_records_are_served_beside_the_zone(staging_host):
    domain = staging_host.settings().domain
    challenges = [
        (f"_acme-challenge.{domain}", "apex-" + secrets.token_urlsafe(16)),
        (f"_acme-challenge.{domain}", "wildcard-" + secrets.token_urlsafe(16)),
        (f"_acme-challenge.org-{uuid.uuid4()}.{domain}", "org-" + secrets.token_urlsafe(16)),
    ]
    CHALLENGES[staging_host.name] = challenges
    for name, value in challenges:
        added = staging_host.harness("exec", staging_host.name, dns.ACME_HELPER, "add", name, value, check=False)
        assert added.returncode == 0, added.stderr
        print(added.stdout.strip())
    for name, value in challenges:
        answer = _dig(staging_host, "+norec", name, "TXT")
        assert re.search(r"flags: qr aa[ ;]", answer) and f'"{value}"' in answer, answer
    # apex and wildcard share one name: both values are there at once
    assert len(_dig(staging_host, "+norec", "+short", challenges[0][0], "TXT").split()) == 2


CHALLENGES: dict[str, list] = {}


# -- the web edge, asked from outside ---------------------------------------------------------------


def _curl(staging_host, url: str, *options: str, addr: int = PROBE_WEB) -> subprocess.CompletedProcess:
    """curl from the probe, every platform name resolved to the host, the placeholder CA trusted."""
    domain = staging_host.settings().domain
    host_of = url.split("/")[2]
    command = ["curl", "-sS", "-m", "10", "--cacert", _placeholder_ca(staging_host)]
    command += [
        "--resolve",
        f"{host_of}:443:{staging_host.address}",
        "--resolve",
        f"{host_of}:80:{staging_host.address}",
    ]
    assert host_of.endswith(domain) or host_of.endswith(".example"), host_of
    return staging_host.probe(*command, *options, url, addr=addr)


def _placeholder_ca(staging_host) -> str:
    """A bundle of what a client of this host must trust: the placeholder CA nginx starts with
    and the stand-in Let's Encrypt's root (pebble makes a new one each time it starts)."""
    path = Path(f"/tmp/{staging_host.name}-trusted.pem")
    path.write_text(staging_host.exec("cat", f"{web.PLACEHOLDER_CA_DIR}/holistix-ca.crt") + _pebble_root(staging_host))
    return str(path)


def _pebble_root(staging_host, management: str | None = None) -> str:
    management = management or staging_host.env["STAGING_ACME_MANAGEMENT"]
    fetched = subprocess.run(
        ["curl", "-fsS", "--cacert", staging_host.env["STAGING_ACME_CA"], f"{management}/roots/0"],
        capture_output=True,
        text=True,
    )
    assert fetched.returncode == 0, fetched.stderr
    return fetched.stdout


def _pebble_root_file(staging_host, directory: Path) -> Path:
    root = directory / "pebble-root.pem"
    root.write_text(_pebble_root(staging_host))
    return root


def _headers(response: str) -> dict[str, str]:
    head = response.replace("\r", "").split("\n\n", 1)[0].splitlines()
    return {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head[1:] if ":" in line}


def test_http_redirects_to_https_keeping_the_name(staging_host):
    domain = staging_host.settings().domain
    organisation = f"org-{uuid.uuid4()}.{domain}"
    response = _curl(staging_host, f"http://{organisation}/project/7?tab=a", "-D", "-", "-o", "/dev/null")
    assert response.stdout.startswith("HTTP/1.1 301"), response.stdout
    assert _headers(response.stdout)["location"] == f"https://{organisation}/project/7?tab=a"


@pytest.mark.parametrize(
    ("server", "path", "status"),
    [
        ("frontend", "/", 200),
        ("frontend", "/assets/index-3f2a9c1b.js", 200),
        ("frontend", "/assets/index-0000dead.js", 404),
        ("ganymede", "/projects", 200),
    ],
)
def test_every_response_carries_the_security_headers(staging_host, server, path, status):
    settings = staging_host.settings()
    name = settings.domain if server == "frontend" else f"ganymede.{settings.domain}"
    response = _curl(staging_host, f"https://{name}{path}", "-D", "-", "-o", "/dev/null")
    assert f" {status}" in response.stdout.splitlines()[0], response.stdout
    headers = _headers(response.stdout)
    for header, value in web.security_headers(settings, server).items():
        assert headers.get(header.lower()) == value, f"{header} on {name}{path}"
    assert not [h for h in headers if h.startswith("access-control-") or h == "x-xss-protection"]
    assert headers["server"] == "nginx", "server_tokens off: no version"


def _write_organisation_block(staging_host, organisation: str) -> str:
    """Write, as Ganymede does when it allocates a gateway (platform contract 1.5), the server
    block of organisation (org-<uuid>), proxying to the Ganymede stand-in; reload nginx."""
    settings = staging_host.settings()
    escaped_domain = settings.domain.replace(".", "\\.")
    # exactly the contract's block (holistix-nginx-control refuses anything else), its gateway
    # stood in for by Ganymede's loopback port
    block = (
        f"upstream {organisation}-gw {{ server 127.0.0.1:{settings.ganymede_port}; }}\n"
        f"server {{ listen 443 ssl; server_name ~^(.+\\.)?{organisation}\\.{escaped_domain}$;"
        f" ssl_certificate {settings.tls_dir}/fullchain.pem; ssl_certificate_key {settings.tls_dir}/privkey.pem;"
        f" location / {{ proxy_pass http://{organisation}-gw; proxy_http_version 1.1;"
        f" proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection upgrade; proxy_set_header Host $host; }}"
        f" access_log /var/log/nginx/gateway-{organisation.removeprefix('org-')}-access.log; }}\n"
    )
    path = f"{settings.nginx_gateways_dir}/{organisation}.conf"
    written = subprocess.run(
        [
            str(staging_host.harness_path),
            "exec",
            staging_host.name,
            "sh",
            "-c",
            f"cat > {path} && nginx -t -q && nginx -s reload && sleep 0.5",
        ],
        input=block.encode(),
        capture_output=True,
    )
    assert written.returncode == 0, written.stderr
    return path


def test_organisation_blocks_get_hsts_but_may_be_framed(staging_host):
    # Arrange: a block like the ones Ganymede writes for an organisation (platform contract 1.5)
    settings = staging_host.settings()
    organisation = f"org-{uuid.uuid4()}"
    path = _write_organisation_block(staging_host, organisation)
    try:
        # org-<uuid>.DOMAIN: the placeholder, like the wildcard certificate, covers one label only
        response = _curl(staging_host, f"https://{organisation}.{settings.domain}/", "-D", "-", "-o", "/dev/null")
        headers = _headers(response.stdout)
        assert headers.get("strict-transport-security") == web.HSTS, response.stdout + response.stderr
        assert "x-frame-options" not in headers and "content-security-policy" not in headers
    finally:
        staging_host.exec("sh", "-c", f"rm -f {path} && nginx -s reload")


def test_the_frontend_caches_bundles_and_never_index_html(staging_host):
    domain = staging_host.settings().domain
    index = _headers(_curl(staging_host, f"https://{domain}/", "-D", "-", "-o", "/dev/null").stdout)
    assert index["cache-control"] == "no-cache"
    spa = _curl(staging_host, f"https://{domain}/projects/42/editor", "-D", "-")
    assert "200" in spa.stdout.splitlines()[0] and "stand-in frontend" in spa.stdout
    assert _headers(spa.stdout)["cache-control"] == "no-cache"
    bundle = _headers(
        _curl(staging_host, f"https://{domain}/assets/index-3f2a9c1b.js", "-D", "-", "-o", "/dev/null").stdout
    )
    assert bundle["cache-control"] == "public, max-age=31536000, immutable"
    stale = _headers(
        _curl(staging_host, f"https://{domain}/assets/index-0000dead.js", "-D", "-", "-o", "/dev/null").stdout
    )
    assert stale["clear-site-data"] == '"cache"'


def test_text_is_compressed(staging_host):
    domain = staging_host.settings().domain
    response = _curl(
        staging_host,
        f"https://{domain}/assets/index-3f2a9c1b.js",
        "-H",
        "Accept-Encoding: gzip",
        "-D",
        "-",
        "-o",
        "/dev/null",
    )
    headers = _headers(response.stdout)
    assert headers.get("content-encoding") == "gzip" and "Accept-Encoding" in headers.get("vary", "")


def test_ganymede_gets_websockets_and_the_headers_it_trusts(staging_host):
    domain = staging_host.settings().domain
    upgrade = _curl(
        staging_host,
        f"https://ganymede.{domain}/collab/room-1?token=e2e-secret-token-value",
        "--http1.1",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    )
    assert upgrade.stdout.startswith("HTTP/1.1 101"), upgrade.stdout + upgrade.stderr
    assert _headers(upgrade.stdout)["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    echoed = json.loads(_curl(staging_host, f"https://ganymede.{domain}/api/whoami").stdout)
    assert echoed["host"] == f"ganymede.{domain}" and echoed["x_forwarded_proto"] == "https"
    assert echoed["x_real_ip"] == staging_host.address.rsplit(".", 1)[0] + f".{PROBE_WEB}"
    logs = staging_host.exec("sh", "-c", "cat /var/log/nginx/*.log")
    assert "e2e-secret-token-value" not in logs and "token=[redacted]" in logs


def _status_codes(staging_host, url: str, times: int, addr: int) -> list[str]:
    """HTTP status of `times` requests to url, one after the other, from probe address addr."""
    requests = ["-o", "/dev/null", url] * times
    return _curl(staging_host, url, *requests[:-1], "-w", "%{http_code}\\n", addr=addr).stdout.split()


def test_a_burst_on_sign_in_gets_429_while_bundles_do_not(staging_host):
    settings = staging_host.settings()
    burst = settings.nginx_auth_rate_per_minute // 3
    codes = _status_codes(staging_host, f"https://ganymede.{settings.domain}/login", burst + 10, PROBE_AUTH_BURST)
    assert codes.count("429") >= 5 and set(codes) == {"200", "429"}, codes
    bundles = _status_codes(
        staging_host, f"https://{settings.domain}/assets/index-3f2a9c1b.js", 300, PROBE_STATIC_BURST
    )
    assert bundles == ["200"] * 300, "a page load's worth of bundles must never be throttled"
    # the host itself (and the Docker bridge, by the same rule) is never limited
    local = staging_host.exec(
        "sh",
        "-c",
        f"for i in $(seq {burst + 10}); do curl -sk -o /dev/null -w '%{{http_code}}\\n'"
        f" --resolve ganymede.{settings.domain}:443:127.0.0.1 https://ganymede.{settings.domain}/login; done",
    ).split()
    assert set(local) == {"200"}, local


def test_unknown_names_are_refused(staging_host):
    handshake = _curl(staging_host, "https://unknown.example/")
    assert handshake.returncode == 35, "no TLS handshake for a name the host does not serve"
    plain = staging_host.probe(
        "curl", "-sS", "-m", "5", "-H", "Host: unknown.example", f"http://{staging_host.address}/", addr=PROBE_WEB
    )
    assert plain.returncode == 52, "the connection is closed without a response (444)"


def test_tls_is_mozilla_intermediate_compliant(staging_host):
    domain = staging_host.settings().domain
    sslyze = _venv_tool("sslyze")
    scan = staging_host.probe(
        sslyze,
        "--mozilla_config=intermediate",
        f"--certinfo_ca_file={_placeholder_ca(staging_host)}",
        f"{domain}:443{{{staging_host.address}}}",
        f"ganymede.{domain}:443{{{staging_host.address}}}",
        addr=PROBE_WEB,
    )
    assert scan.returncode == 0, scan.stdout[-3000:]
    assert scan.stdout.count("OK - Compliant") == 2


def test_gixy_finds_nothing_in_the_live_configuration(staging_host, tmp_path):
    tree = subprocess.run(
        [str(staging_host.harness_path), "exec", staging_host.name, "tar", "-C", "/etc/nginx", "-cf", "-", "."],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-C", str(tmp_path), "-xf", "-"], input=tree, check=True)
    gixy = subprocess.run([_venv_tool("gixy"), str(tmp_path / "nginx.conf")], capture_output=True, text=True)
    assert gixy.returncode == 0, gixy.stdout[-3000:]


def test_a_broken_template_fails_the_run_and_the_site_keeps_serving(staging_host, tmp_path):
    # Arrange: a copy of the project whose site template has a typo, as a bad edit would
    settings = staging_host.settings()
    copy = tmp_path / "project"
    shutil.copytree(
        ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".tools", "__pycache__", "*.pyc", ".pytest_cache")
    )
    template = copy / "templates" / "nginx" / "site.conf.j2"
    template.write_text(
        template.read_text().replace("    index index.html;\n", "    index index.html;\n    indx index.html;\n", 1)
    )
    live_before = staging_host.exec("sha256sum", web.site_file(settings))
    for attempt in (PROBE_NGINX_BROKEN, PROBE_NGINX_AGAIN):  # a re-run checks again: nothing was kept
        run = staging_host.pyinfra(deploy="deploys/nginx.py", from_probe=attempt, cwd=copy)
        assert run.returncode != 0
        assert "nginx -t rejected the new configuration; nothing changed" in run.stderr, _report(run)
        assert 'unknown directive "indx"' in run.stderr, _report(run)
    assert staging_host.exec("sha256sum", web.site_file(settings)) == live_before
    response = _curl(staging_host, f"https://{settings.domain}/", "-o", "/dev/null", "-w", "%{http_code}")
    assert response.stdout == "200"


# -- certificates from the stand-in Let's Encrypt (pebble, asking this host's CoreDNS) ---------------


def _served_certificate(staging_host, name: str, ca_file: str) -> dict:
    """What nginx presents for name, seen from outside: names, serial, issuer, verification."""
    shown = staging_host.probe(
        "sh",
        "-c",
        f"echo | openssl s_client -connect {staging_host.address}:443 -servername {name} -CAfile {ca_file} 2>/dev/null"
        " | tee /dev/stderr | openssl x509 -noout -serial -issuer -ext subjectAltName",
        addr=PROBE_WEB,
    )
    return {
        "names": sorted(re.findall(r"DNS:([^,\s]+)", shown.stdout)),
        "serial": re.search(r"serial=(\w+)", shown.stdout)[1],
        "issuer": re.search(r"issuer=(.+)", shown.stdout)[1],
        "verified": "Verify return code: 0 (ok)" in shown.stderr,
    }


def test_the_wildcard_certificate_is_issued_by_dns01_and_served(staging_host, tmp_path):
    domain = staging_host.settings().domain
    root = _pebble_root_file(staging_host, tmp_path)
    served = _served_certificate(staging_host, f"ganymede.{domain}", str(root))
    assert served["verified"], "the chain does not lead to the stand-in Let's Encrypt's root"
    assert served["names"] == sorted([domain, f"*.{domain}"])
    assert "Pebble Intermediate" in served["issuer"]
    links = staging_host.exec("sh", "-c", f"readlink {staging_host.settings().tls_dir}/*.pem")
    assert links.split() == [
        f"/etc/letsencrypt/live/{domain}/fullchain.pem",
        f"/etc/letsencrypt/live/{domain}/privkey.pem",
    ]
    keys = staging_host.exec("sh", "-c", f"stat -c '%a %U' /etc/letsencrypt/archive/{domain}/privkey*.pem").split("\n")
    assert {line for line in keys if line} == {"600 root"}


def test_a_forced_renewal_goes_through_the_stored_hooks_and_nginx_serves_it(staging_host, tmp_path):
    domain = staging_host.settings().domain
    root = _pebble_root_file(staging_host, tmp_path)
    before = _served_certificate(staging_host, domain, str(root))
    # what certbot.timer runs, forced, with the timer service's environment: the renewal
    # configuration alone drives the DNS-01 hooks and the deploy hook
    renewed = staging_host.harness(
        "exec",
        staging_host.name,
        "sh",
        "-c",
        "env $(systemctl show certbot.service -p Environment --value)"
        " certbot renew --force-renewal --no-random-sleep-on-renew",
        check=False,
    )
    assert renewed.returncode == 0, renewed.stdout[-2000:] + renewed.stderr[-2000:]
    assert "certbot-deploy: nginx serves" in renewed.stdout + renewed.stderr
    after = _served_certificate(staging_host, domain, str(root))
    assert after["verified"] and after["serial"] != before["serial"]
    live_serial = staging_host.exec(
        "openssl", "x509", "-noout", "-serial", "-in", f"/etc/letsencrypt/live/{domain}/cert.pem"
    )
    assert live_serial.strip() == f"serial={after['serial']}"


def test_with_dns_down_the_module_stops_before_asking_the_ca(staging_host):
    settings = staging_host.settings()
    pebble_log = staging_host.env["STAGING_ACME_CA"].replace("ca.pem", f"pebble-{staging_host.name}.log")
    orders_before = Path(pebble_log).read_text().count("POST /order-plz")
    staging_host.exec("systemctl", "stop", "coredns")
    try:
        # a new organisation: the names change, so the module must issue
        run = staging_host.pyinfra(
            "--data",
            f'acme_organisations=["{uuid.uuid4()}"]',
            deploy="deploys/letsencrypt.py",
            from_probe=PROBE_ACME_DNS_DOWN,
        )
    finally:
        staging_host.exec("systemctl", "start", "coredns")
    assert run.returncode != 0
    assert f"does not answer for {settings.domain} authoritatively; not asking the CA" in run.stderr, _report(run)
    assert Path(pebble_log).read_text().count("POST /order-plz") == orders_before, "the CA was asked anyway"


def test_an_organisation_added_on_the_host_gets_its_user_container_names(staging_host, tmp_path):
    settings = staging_host.settings()
    organisation = str(uuid.uuid4())
    added = staging_host.harness(
        "exec", staging_host.name, "holistix-certificate", "add-organisation", organisation, check=False
    )
    assert added.returncode == 0, added.stderr
    root = _pebble_root_file(staging_host, tmp_path)
    user_container = f"uc-1.org-{organisation}.{settings.domain}"
    served = _served_certificate(staging_host, settings.domain, str(root))
    assert f"*.org-{organisation}.{settings.domain}" in served["names"]
    # a Ganymede-style block for the organisation, then a user container's name verifies
    _write_organisation_block(staging_host, f"org-{organisation}")
    answer = staging_host.probe(
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        str(root),
        "--resolve",
        f"{user_container}:443:{staging_host.address}",
        f"https://{user_container}/",
        addr=PROBE_WEB,
    )
    assert answer.returncode == 0, f"TLS for {user_container} does not verify: {answer.stderr}"


def test_cloudflare_mode_issues_through_the_api_with_the_operators_token(staging_host, tmp_path):
    # Arrange: a second stand-in CA that asks a mock DNS server, which a stand-in of Cloudflare's
    # API fills; the module is pointed at both for one run
    settings = staging_host.settings()
    bridge = staging_host.env["STAGING_ACME_DIRECTORY"].split("//")[1].split(":")[0]
    acme_dir = Path(staging_host.env["STAGING_ACME_CA"]).parent
    token = staging_host.operator_secrets["HOLISTIX_DNS_API_TOKEN"]
    # ports of this host's own on the bridge address (the other suite's host runs this test too)
    base = 20000 + 10 * int(staging_host.address.rsplit(".", 1)[1])
    acme, management, challenge_dns, challenge_api, cloudflare_api = (base + offset for offset in range(1, 6))
    config = tmp_path / "pebble.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"{bridge}:{acme}", "managementListenAddress": f"{bridge}:{management}",
        "certificate": str(acme_dir / "server.pem"), "privateKey": str(acme_dir / "server.key"),
        "httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": False,
        "certificateValidityPeriod": 7776000,
    }}))  # fmt: skip
    pebble_env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    api_log = tmp_path / "fake-cloudflare.log"
    with api_log.open("w") as api_log_file:
        started = [
            subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", f"{bridge}:{challenge_dns}", "-management", f"{bridge}:{challenge_api}",
                 "-http01", "", "-https01", "", "-tlsalpn01", ""],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                ["pebble", "-config", str(config), "-dnsserver", f"{bridge}:{challenge_dns}"],
                env=pebble_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [sys.executable, str(FIXTURES / "fake_cloudflare.py"), bridge, str(cloudflare_api), settings.domain,
                 f"http://{bridge}:{challenge_api}"],
                env={**os.environ, "FAKE_CLOUDFLARE_TOKEN": token}, stdout=subprocess.DEVNULL, stderr=api_log_file,
            ),
        ]  # fmt: skip
        try:
            time.sleep(1.5)
            run = staging_host.pyinfra(
                "-vvv",  # everything pyinfra can print is searched for the token below
                "--data", "acme_dns_provider=cloudflare",
                "--data", f"acme_cloudflare_api_url=http://{bridge}:{cloudflare_api}/client/v4",
                "--data", f"acme_directory=https://{bridge}:{acme}/dir",
                "--data", "acme_cloudflare_propagation_seconds=1",
                deploy="deploys/letsencrypt.py", from_probe=PROBE_ACME_CLOUDFLARE,
            )  # fmt: skip
            assert run.returncode == 0, _report(run)
            assert token not in run.stdout + run.stderr, "the Cloudflare token was printed"
            api_calls = api_log.read_text()
            assert "POST /client/v4/zones/" in api_calls and "DELETE /client/v4/zones/" in api_calls
            root = tmp_path / "cloudflare-mode-root.pem"
            root.write_text(_pebble_root(staging_host, management=f"https://{bridge}:{management}"))
            served = _served_certificate(staging_host, settings.domain, str(root))
            assert served["verified"], "nginx does not serve the certificate issued through Cloudflare"
            credentials = staging_host.exec("stat", "-c", "%a %U", f"{settings.secrets_dir}/cloudflare.ini").strip()
            assert credentials == "600 root"
        finally:
            for process in started:
                process.terminate()
                process.wait(timeout=10)
    # back to this host's CoreDNS and its own CA, as the inventory says
    restore = staging_host.pyinfra(deploy="deploys/letsencrypt.py", from_probe=PROBE_ACME_RESTORE)
    assert restore.returncode == 0, _report(restore)
    assert "cloudflare.ini" not in staging_host.exec("ls", settings.secrets_dir)


# -- ganymede: the platform's API, its releases and its organisations ------------------------------


def _health(staging_host) -> dict:
    settings = staging_host.settings()
    answer = _curl(staging_host, f"https://ganymede.{settings.domain}{settings.ganymede_health_path}", addr=PROBE_WEB)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def _main_pid(staging_host, unit: str) -> str:
    return staging_host.exec("systemctl", "show", "-p", "MainPID", "--value", unit).strip()


def _release_state(staging_host) -> dict:
    settings = staging_host.settings()
    base = f"/opt/holistix/{settings.environment}"
    return {
        "current": staging_host.exec("readlink", f"{base}/current").strip(),
        "releases": staging_host.exec("ls", f"{base}/releases").split(),
        "pid": _main_pid(staging_host, settings.ganymede_unit),
    }


def _release(version: str, *, local: bool = False) -> str:
    """--data value of ganymede_release for a stand-in release (scripts/ganymede-release-artifact)."""
    tarball = ARTIFACTS / f"holistix-{version}.tar.gz"
    bridge = os.environ.get("STAGING_NET", "10.77.0") + ".1"
    source = str(tarball) if local else f"http://{bridge}:8800/{tarball.name}"
    sha256 = Path(f"{tarball}.sha256").read_text().split()[0]
    return "ganymede_release=" + json.dumps({"version": version, "source": source, "sha256": sha256})


def test_ganymede_answers_through_nginx_and_reaches_its_database(staging_host):
    assert _health(staging_host) == {"database": "ok", "release": "1.0.0"}


def test_ganymede_is_not_reachable_directly_from_outside(staging_host):
    port = staging_host.settings().ganymede_port
    direct = staging_host.probe("curl", "-sS", "-m", "5", f"http://{staging_host.address}:{port}/", addr=PROBE_WEB)
    assert direct.returncode != 0, direct.stdout
    assert _scan(staging_host, "-sS", "-p", str(port)) == {}


def test_an_organisation_allocated_by_ganymede_is_served_and_its_data_kept(staging_host):
    # Act: what POST /gateway/start does, through the public API: write the organisation's
    # block, nginx -t and reload (no sudo), ping https://org-<uuid>.DOMAIN, save its data
    settings = staging_host.settings()
    organisation = str(uuid.uuid4())
    request = json.dumps({"organisation": organisation, "upstream": f"127.0.0.1:{settings.ganymede_port}"})
    allocated = _curl(
        staging_host,
        f"https://ganymede.{settings.domain}/stand-in/organisations",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        request,
        "-w",
        "\n%{http_code}",
    )
    try:
        assert allocated.stdout.endswith("\n200"), allocated.stdout + allocated.stderr
        # Assert: the organisation answers from outside, through its own block
        ping = _curl(staging_host, f"https://org-{organisation}.{settings.domain}/collab/ping")
        assert json.loads(ping.stdout) == {"pong": True, "host": f"org-{organisation}.{settings.domain}"}
        block = staging_host.exec("stat", "-c", "%U %a", f"{settings.nginx_gateways_dir}/org-{organisation}.conf")
        assert block.split() == ["ganymede", "640"]
        saved = json.loads(staging_host.exec("cat", f"{settings.org_data_dir}/{organisation}.json"))
        assert saved["organisation"] == organisation
        # nginx was tested and reloaded by the root-owned socket service, on Ganymede's request
        requests = staging_host.exec("journalctl", "-q", "--no-pager", "-u", "holistix-nginx-control@*", "-o", "cat")
        assert requests.count("Finished holistix-nginx-control@") >= 2
    finally:
        removed = _curl(
            staging_host, f"https://ganymede.{settings.domain}/stand-in/organisations/{organisation}", "-X", "DELETE"
        )
        assert removed.returncode == 0, removed.stderr
    assert f"org-{organisation}.conf" not in staging_host.exec("ls", settings.nginx_gateways_dir)


def test_a_block_beyond_the_contract_is_refused_before_nginx_reads_it(staging_host):
    # Arrange: what a compromised Ganymede could write: a block that makes nginx's root master
    # create and fill a file of its choosing
    settings = staging_host.settings()
    block = f"{settings.nginx_gateways_dir}/org-{uuid.uuid4()}.conf"
    evil = "log_format p '$http_x';\nserver { listen 443 ssl; access_log /etc/cron.d/holistix-evil p; }\n"
    try:
        # Act: as Ganymede's user, write it and ask for the reload Ganymede would ask for
        asked = subprocess.run(
            [str(staging_host.harness_path), "exec", staging_host.name, "runuser", "-u", "ganymede", "--", "sh", "-c",
             f"cat > {block} && /usr/local/lib/holistix/nginx-control reload"],
            input=evil, capture_output=True, text=True,
        )  # fmt: skip
        # Assert: refused before nginx was even tested; nothing created; the value never echoed
        assert asked.returncode != 0
        assert ":1: log_format is not allowed here" in asked.stdout, asked.stdout + asked.stderr
        assert "$http_x" not in asked.stdout and "holistix-evil" not in asked.stdout
        assert "holistix-evil" not in staging_host.exec("ls", "/etc/cron.d")
    finally:
        staging_host.exec("rm", "-f", block)


def test_ganymede_is_back_within_10_s_after_kill_9(staging_host):
    # settings read once: each read runs pyinfra, which would slow every poll below
    settings = staging_host.settings()
    health = f"http://127.0.0.1:{settings.ganymede_port}/health"
    before = _main_pid(staging_host, settings.ganymede_unit)
    staging_host.exec("kill", "-9", before)
    started, back = time.monotonic(), None
    while time.monotonic() - started < 15:
        pid = _main_pid(staging_host, settings.ganymede_unit)
        answered = staging_host.harness("exec", staging_host.name, "curl", "-sf", "-m", "1", health, check=False)
        if pid not in ("0", before) and answered.returncode == 0:
            back = time.monotonic() - started
            break
        time.sleep(0.25)
    assert back is not None and back <= 10, f"not answering again within 10 s (after {back})"


def test_a_healthy_release_from_the_operators_machine_is_switched_to(staging_host):
    run = staging_host.pyinfra(
        "--data", _release("2.0.0", local=True), deploy="deploys/ganymede.py", from_probe=PROBE_RELEASE_2
    )
    assert run.returncode == 0, _report(run)
    assert _health(staging_host)["release"] == "2.0.0"
    state = _release_state(staging_host)
    assert state["current"] == "releases/2.0.0" and state["releases"] == ["1.0.0", "2.0.0"]
    assert staging_host.exec("ls", "-A", "/var/cache/holistix/staging").strip() == "", "the upload was left behind"


def test_an_unhealthy_release_is_rolled_back_and_the_run_fails_saying_so(staging_host):
    run = staging_host.pyinfra("--data", _release("3.0.0"), deploy="deploys/ganymede.py", from_probe=PROBE_RELEASE_3)
    assert run.returncode != 0
    assert "release 3.0.0 did not answer on 127.0.0.1:6010/health within 20 s" in run.stderr, _report(run)
    assert "rolled back to release 2.0.0, which answers" in run.stderr
    assert _health(staging_host)["release"] == "2.0.0"
    assert _release_state(staging_host)["current"] == "releases/2.0.0"


def test_a_rollback_to_a_kept_release_on_request(staging_host):
    run = staging_host.pyinfra(
        "--data", "ganymede_rollback_to=1.0.0", deploy="deploys/ganymede.py", from_probe=PROBE_ROLLBACK
    )
    assert run.returncode == 0, _report(run)
    assert _health(staging_host)["release"] == "1.0.0"
    # pruning keeps the current and the previous release, never one that failed its gate
    assert _release_state(staging_host)["releases"] == ["1.0.0", "2.0.0"]
    missing = staging_host.pyinfra(
        "--data", "ganymede_rollback_to=0.9.0", deploy="deploys/ganymede.py", from_probe=PROBE_ROLLBACK
    )
    assert missing.returncode != 0
    assert "release 0.9.0 is not installed (installed: 1.0.0, 2.0.0)" in missing.stderr, _report(missing)
    assert _health(staging_host)["release"] == "1.0.0"


def test_a_release_with_a_wrong_checksum_is_refused_and_nothing_changes(staging_host):
    before = _release_state(staging_host)
    wrong = json.loads(_release("2.0.0").split("=", 1)[1]) | {"version": "2.0.1", "sha256": "0" * 64}
    run = staging_host.pyinfra(
        "--data", "ganymede_release=" + json.dumps(wrong), deploy="deploys/ganymede.py", from_probe=PROBE_CHECKSUM
    )
    assert run.returncode != 0
    assert "release 2.0.1: the sha256 of" in run.stderr and "refused before unpacking, nothing changed" in run.stderr
    # the failed host ends the run before pyinfra's JSON report: its progress lines tell
    assert f"[{staging_host.name}] Success" not in run.stderr, "an operation changed the host"
    assert _release_state(staging_host) == before
    # a local file is checked with the settings, before the run touches the host at all
    local = json.loads(_release("2.0.0", local=True).split("=", 1)[1]) | {"version": "2.0.1", "sha256": "0" * 64}
    refused = staging_host.pyinfra(
        "--data", "ganymede_release=" + json.dumps(local), deploy="deploys/ganymede.py", from_probe=PROBE_CHECKSUM
    )
    assert refused.returncode != 0 and "refused before anything changes" in refused.stderr, _report(refused)
    assert _release_state(staging_host) == before


# -- the gateway pool ---------------------------------------------------------------------------------


def _pool(staging_host) -> tuple[list[str], list[str]]:
    """(pool containers, gateways registered in the database), by name."""
    settings = staging_host.settings()
    containers = staging_host.exec(
        "docker", "ps", "-a", "--filter", "label=holistix.gateway-pool", "--format", "{{.Names}}"
    )
    registered = staging_host.exec(
        "runuser",
        "-u",
        "postgres",
        "--",
        "psql",
        "-At",
        "-d",
        settings.database_name,
        "-c",
        "SELECT hostname FROM gateways",
    )
    return sorted(containers.split()), sorted(registered.split())


def test_gateway_ports_are_closed_from_outside_but_the_vpn_range_is_open(staging_host):
    settings = staging_host.settings()
    first_http, first_vpn, size = (
        settings.gateway_http_port_base,
        settings.gateway_vpn_port_base,
        settings.gateway_pool_size,
    )
    http_ports = f"{first_http}-{first_http + size - 1},{settings.gateway_build_server_port}"
    assert _scan(staging_host, "-sS", "-p", http_ports) == {}, "a gateway's HTTP port or the build server is reachable"
    vpn = _scan(staging_host, "-sU", "-p", f"{first_vpn - 1}-{first_vpn + size}")
    assert set(vpn) == {f"{first_vpn + i}/udp" for i in range(size)}


def test_the_pool_scales_and_the_registrations_follow(staging_host):
    settings = staging_host.settings()
    names = [f"gw-pool-{settings.environment}-{i}" for i in range(1, 6)]
    for size, probe in ((5, PROBE_SCALE_UP), (2, PROBE_SCALE_DOWN)):
        run = staging_host.pyinfra("--data", f"gateway_pool_size={size}", from_probe=probe)
        assert run.returncode == 0, _report(run)
        assert _pool(staging_host) == (names[:size], names[:size]), f"size {size}"
    back = staging_host.pyinfra(from_probe=PROBE_SCALE_BACK)
    assert back.returncode == 0, _report(back)
    size = settings.gateway_pool_size
    assert _pool(staging_host) == (names[:size], names[:size])


# -- backups --------------------------------------------------------------------------------------------

BACKUP = "/usr/local/sbin/holistix-backup"


def _psql(staging_host, database: str, sql: str) -> str:
    return staging_host.exec("runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-d", database, "-c", sql).strip()


def _table_digest(staging_host, database: str, table: str) -> str:
    """Row count and md5 of every row of ``table``, in a fixed order."""
    return _psql(
        staging_host,
        database,
        f"SELECT count(*) || ' ' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t",
    )


def _files_digest(staging_host, directory: str) -> str:
    """Name, owner, mode and sha256 of every file under ``directory``."""
    return staging_host.exec(
        "sh",
        "-c",
        f'cd {directory} && find . -type f | sort | while read -r f; do stat -c \'%n %U:%G %a\' "$f"; sha256sum "$f"; done',
    )


def _backup_metrics(staging_host) -> dict[str, float]:
    env = staging_host.settings().environment
    text = staging_host.exec("cat", f"/var/lib/prometheus/node-exporter/holistix_backup_{env}.prom")
    return {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if 'repository="local"' in line
    }


def _nightly_backup(staging_host) -> subprocess.CompletedProcess:
    """What the timer does at night: start holistix-backup@<env> and wait for it."""
    env = staging_host.settings().environment
    return staging_host.harness("exec", staging_host.name, "systemctl", "start", f"holistix-backup@{env}", check=False)


def _snapshot_ids(staging_host) -> list[str]:
    env = staging_host.settings().environment
    return [snapshot["id"] for snapshot in json.loads(staging_host.exec(BACKUP, "snapshots", env))]


def test_a_restore_brings_back_every_row_and_file_after_both_are_lost(staging_host):
    settings = staging_host.settings()
    env, database, org_data = settings.environment, settings.database_name, settings.org_data_dir
    # Arrange: rows in the app database and organisation data files, as the platform writes them
    marker = secrets.token_hex(6)
    _psql(
        staging_host,
        database,
        f"INSERT INTO users (username) SELECT 'drill-{marker}-' || i FROM generate_series(1, 50) i;"
        f"INSERT INTO organizations (owner_id, name) SELECT user_id, 'org of ' || username FROM users"
        f" WHERE username LIKE 'drill-{marker}-%'",
    )
    for organisation in (str(uuid.uuid4()), str(uuid.uuid4())):
        staging_host.exec(
            "sh",
            "-c",
            f'printf \'%s\' \'{{"organization_id": "{organisation}", "data": "{secrets.token_hex(64)}"}}\''
            f" > {org_data}/{organisation}.json && chown ganymede:ganymede {org_data}/{organisation}.json"
            f" && chmod 0640 {org_data}/{organisation}.json",
        )
    tables = {table: _table_digest(staging_host, database, table) for table in ("users", "organizations")}
    files = _files_digest(staging_host, org_data)
    assert tables["users"].split()[0] != "0" and files.count(".json") >= 2

    # Act: the nightly backup (through its unit), then both are lost
    backup = _nightly_backup(staging_host)
    assert backup.returncode == 0, staging_host.exec("journalctl", "-u", f"holistix-backup@{env}", "-n", "30")
    staging_host.exec("systemctl", "stop", f"holistix-gateway-pool@{env}", f"ganymede@{env}")
    _psql(staging_host, "postgres", f"DROP DATABASE {database}")
    staging_host.exec("sh", "-c", f"rm -f {org_data}/*")
    assert _psql(staging_host, "postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{database}'") == "0"
    assert _files_digest(staging_host, org_data) == ""

    started = time.monotonic()
    restored = staging_host.harness("exec", staging_host.name, BACKUP, "restore", env, "latest", "--yes", check=False)
    RUNS.setdefault("restore_seconds", []).append(round(time.monotonic() - started, 1))
    assert restored.returncode == 0, restored.stdout + restored.stderr

    # Assert: every row and file as it was, and the platform serving with a pool registered anew
    assert {table: _table_digest(staging_host, database, table) for table in tables} == tables
    assert _files_digest(staging_host, org_data) == files
    assert _health(staging_host)["database"] == "ok"
    containers, registered = _pool(staging_host)
    assert containers == registered and len(containers) == settings.gateway_pool_size


def test_a_restore_over_live_data_sets_it_aside_and_backups_leave_it_out(staging_host):
    settings = staging_host.settings()
    env, database = settings.environment, settings.database_name
    # Arrange: a user who signed up after the last backup
    late = f"late-{secrets.token_hex(6)}"
    _psql(staging_host, database, f"INSERT INTO users (username) VALUES ('{late}')")

    # Act: the last backup is restored over the live database
    restored = staging_host.harness("exec", staging_host.name, BACKUP, "restore", env, "latest", "--yes", check=False)
    assert restored.returncode == 0, restored.stdout + restored.stderr

    # Assert: the restored database is the snapshot's; the live one is kept aside, whole
    assert _psql(staging_host, database, f"SELECT count(*) FROM users WHERE username = '{late}'") == "0"
    aside = _psql(
        staging_host, "postgres", f"SELECT datname FROM pg_database WHERE datname LIKE '{database}_pre_restore_%'"
    )
    assert aside, "the live database was not kept"
    assert _psql(staging_host, aside, f"SELECT count(*) FROM users WHERE username = '{late}'") == "1"
    # ...and the nightly backup leaves the set-aside copy out
    backup = _nightly_backup(staging_host)
    assert backup.returncode == 0
    manifest = staging_host.exec(
        "env", f"RESTIC_PASSWORD_FILE=/etc/holistix-backup/{env}/restic-password", "restic", "-r",
        settings.backup_local_repository, "dump", "latest", f"/var/lib/holistix/{env}/backup-staging/manifest.json",
    )  # fmt: skip
    assert sorted(json.loads(manifest)["databases"]) == [database]
    # the operator's last step of the runbook, once satisfied
    _psql(staging_host, "postgres", f'DROP DATABASE "{aside}"')
    staging_host.exec(
        "sh",
        "-c",
        "rm -rf /var/lib/holistix/*/*.pre-restore-* /etc/holistix/*.pre-restore-* /etc/letsencrypt.pre-restore-*",
    )


def test_retention_keeps_exactly_what_7_daily_4_weekly_12_monthly_promise(staging_host, retention_drill):
    settings = staging_host.settings()
    env = settings.environment
    password_file = f"/etc/holistix-backup/{env}/restic-password"
    # Arrange: a repository of 377 nightly snapshots over 430 nights (tests/e2e/retention.py: the
    # host down all of August 2026, failed nights, a re-run on 2026-11-18), made on this machine
    # and fetched from the harness's download server; the host's password added as a key
    tarball = retention_drill.result(timeout=900)
    times = retention.nights()
    drill = "/var/tmp/retention-drill"
    bridge = os.environ.get("STAGING_NET", "10.77.0") + ".1"
    made = staging_host.harness(
        "exec",
        staging_host.name,
        "bash",
        "-c",
        f"set -e; rm -rf {drill}; curl -fsS http://{bridge}:8800/{tarball.name} | tar -x -C /var/tmp;"
        f" RESTIC_PASSWORD={retention.DRILL_PASSWORD} restic -r {drill} key add -q --new-password-file {password_file}",
        check=False,
    )
    assert made.returncode == 0, made.stderr[-2000:]

    # Act: the retention the nightly run applies, by this host's restic, on this repository
    pruned = staging_host.harness("exec", staging_host.name, BACKUP, "forget", env, "--repository", drill, check=False)
    assert pruned.returncode == 0, pruned.stderr

    # Assert: exactly these survive (restic doc 060_forget: newest first, each policy keeps the
    # newest snapshot of each day, ISO week or month until it has kept its count)
    left = staging_host.exec(
        "env", f"RESTIC_PASSWORD_FILE={password_file}", "restic", "-r", drill, "snapshots", "--json"
    )
    survivors = sorted(snapshot["time"][:16].replace("T", " ") for snapshot in json.loads(left))
    assert (settings.backup_keep_daily, settings.backup_keep_weekly, settings.backup_keep_monthly) == (7, 4, 12)
    daily = ["2026-11-14 02:00", "2026-11-15 02:00", "2026-11-16 02:00", "2026-11-17 02:00", "2026-11-18 14:30",
             "2026-11-19 02:00", "2026-11-20 02:00"]  # fmt: skip
    # the failed 12th and 13th are skipped; the 18th's re-run is that day's newest
    weekly = ["2026-11-01 02:00", "2026-11-08 02:00"]  # weeks 44 and 45; weeks 46 and 47 are daily ones
    # the newest of each month that has a snapshot: August (host down) is skipped, so the twelfth
    # is November 2025; June 30th failed, so June's is the 29th
    monthly = ["2025-11-30 02:00", "2025-12-31 02:00", "2026-01-31 02:00", "2026-02-28 02:00", "2026-03-31 02:00",
               "2026-04-30 02:00", "2026-05-31 02:00", "2026-06-29 02:00", "2026-07-31 02:00", "2026-09-30 02:00",
               "2026-10-31 02:00"]  # fmt: skip
    assert survivors == sorted(daily + weekly + monthly), f"{len(times)} snapshots made, these survived: {survivors}"
    staging_host.exec("rm", "-rf", drill)


def test_a_backup_with_postgresql_down_fails_keeps_every_snapshot_and_monitoring_sees_it(staging_host):
    env = staging_host.settings().environment
    version = staging_host.exec("ls", "/etc/postgresql").split()[-1]
    before, metrics_before = _snapshot_ids(staging_host), _backup_metrics(staging_host)
    assert before and metrics_before["holistix_backup_last_run_success"] == 1

    staging_host.exec("systemctl", "stop", f"postgresql@{version}-main")
    failed = _nightly_backup(staging_host)
    metrics = _backup_metrics(staging_host)
    result = staging_host.exec("systemctl", "show", "-p", "Result", "--value", f"holistix-backup@{env}").strip()
    staging_host.exec("systemctl", "start", f"postgresql@{version}-main", f"ganymede@{env}")

    assert failed.returncode != 0, "a backup without its database must fail"
    assert result == "exit-code", "the unit is left failed, for the failed-units alert"
    assert _snapshot_ids(staging_host) == before, "a failed backup pruned or added a snapshot"
    assert metrics["holistix_backup_last_run_success"] == 0
    assert (
        metrics["holistix_backup_last_success_timestamp_seconds"]
        == metrics_before["holistix_backup_last_success_timestamp_seconds"]
    )
    journal = staging_host.exec("journalctl", "-u", f"holistix-backup@{env}", "-n", "20", "-o", "cat")
    assert "FAILED, nothing pruned" in journal

    # with PostgreSQL back, the next run succeeds again
    staging_host.exec(ganymede.RELEASE_HELPER, "wait", env)
    again = _nightly_backup(staging_host)
    assert again.returncode == 0
    assert _backup_metrics(staging_host)["holistix_backup_last_run_success"] == 1
    assert len(_snapshot_ids(staging_host)) >= len(before)


def _snapshot_trees(staging_host, repository: str) -> set[tuple[str, str]]:
    """(time, tree) of every snapshot in ``repository``, a path or URL on the host: equal in two
    repositories when one holds copies of the other's snapshots."""
    env = staging_host.settings().environment
    listing = staging_host.exec(
        "env", f"RESTIC_PASSWORD_FILE=/etc/holistix-backup/{env}/restic-password", "restic", "-r", repository,
        "snapshots", "--json",
    )  # fmt: skip
    return {(snapshot["time"], snapshot["tree"]) for snapshot in json.loads(listing or "[]")}


def test_a_backup_that_fills_its_disk_fails_and_prunes_nothing(staging_host):
    env = staging_host.settings().environment
    staging = f"/var/lib/holistix/{env}/backup-staging"
    before = _snapshot_ids(staging_host)
    # Arrange: the disk the backup stages on has 16 KiB left (a snapshot stages about 100 KiB here)
    staging_host.exec("mount", "-t", "tmpfs", "-o", "size=16k,mode=0711", "tmpfs", staging)
    try:
        failed = _nightly_backup(staging_host)
    finally:
        staging_host.exec("umount", staging)
    assert failed.returncode != 0
    journal = staging_host.exec("journalctl", "-u", f"holistix-backup@{env}", "-n", "10", "-o", "cat")
    assert "FAILED, nothing pruned" in journal and "No space left on device" in journal
    assert _snapshot_ids(staging_host) == before
    assert _backup_metrics(staging_host)["holistix_backup_last_run_success"] == 0
    again = _nightly_backup(staging_host)
    assert again.returncode == 0


def test_an_sftp_offsite_repository_gets_the_same_snapshots_and_its_loss_is_seen(staging_host):
    env = staging_host.settings().environment
    # Arrange: an "off-site server" reached over sftp (this host's own sshd on loopback, as a
    # user of its own), its host key pinned, the backup key authorized there
    host_key = staging_host.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    offsite_dir = "/home/offsite/restic"
    run = staging_host.pyinfra(
        "--data",
        f"backup_offsite_repository=sftp:offsite@127.0.0.1:{offsite_dir}",
        "--data",
        "backup_offsite_known_hosts=" + json.dumps([f"127.0.0.1 {host_key[0]} {host_key[1]}"]),
        deploy="deploys/backups.py",
        from_probe=PROBE_OFFSITE,
    )
    assert run.returncode == 0, _report(run)
    key = f"/etc/holistix-backup/{env}/offsite_ed25519"
    assert staging_host.exec("stat", "-c", "%U %a", key).strip() == "root 600"
    staging_host.exec(
        "sh",
        "-c",
        "id offsite >/dev/null 2>&1 || useradd -m -s /bin/sh offsite; install -d -o offsite -g offsite -m 0700"
        f" /home/offsite/.ssh && install -o offsite -g offsite -m 0600 {key}.pub /home/offsite/.ssh/authorized_keys",
    )

    # Act: the nightly run
    backup = _nightly_backup(staging_host)
    assert backup.returncode == 0, staging_host.exec(
        "journalctl", "-u", f"holistix-backup@{env}", "-n", "30", "-o", "cat"
    )

    # Assert: the off-site repository holds the very snapshots the local one holds
    local = _snapshot_trees(staging_host, staging_host.settings().backup_local_repository)
    assert _snapshot_trees(staging_host, offsite_dir) == local
    metrics = staging_host.exec("cat", f"/var/lib/prometheus/node-exporter/holistix_backup_{env}.prom")
    assert f'holistix_backup_last_run_success{{environment="{env}",repository="offsite"}} 1' in metrics
    # what a rebuilt host restores from: the off-site copy matches its manifest, rows and files
    tested = staging_host.harness(
        "exec", staging_host.name, BACKUP, "restore-test", env, "--from", "offsite", check=False
    )
    assert tested.returncode == 0 and "restore test passed" in tested.stdout, tested.stdout + tested.stderr

    # the off-site server stops accepting the key: the run fails and says so; the local snapshot
    # is still taken and the off-site one keeps what it had
    staging_host.exec("truncate", "-s", "0", "/home/offsite/.ssh/authorized_keys")
    failed = _nightly_backup(staging_host)
    assert failed.returncode != 0
    assert _snapshot_trees(staging_host, offsite_dir) == local
    newest_local = max(_snapshot_trees(staging_host, staging_host.settings().backup_local_repository))
    assert newest_local[0] > max(local)[0], "the local snapshot was not taken"
    metrics = staging_host.exec("cat", f"/var/lib/prometheus/node-exporter/holistix_backup_{env}.prom")
    assert f'holistix_backup_last_run_success{{environment="{env}",repository="offsite"}} 0' in metrics
    assert f'holistix_backup_last_run_success{{environment="{env}",repository="local"}} 1' in metrics

    # back to the inventory's settings: no off-site repository, its key gone
    back = staging_host.pyinfra(deploy="deploys/backups.py", from_probe=PROBE_OFFSITE_BACK)
    assert back.returncode == 0, _report(back)
    assert staging_host.harness("exec", staging_host.name, "test", "-e", key, check=False).returncode == 1
    staging_host.exec("userdel", "-r", "offsite")
    again = _nightly_backup(staging_host)
    assert again.returncode == 0


# -- monitoring ---------------------------------------------------------------------------------------
MONITORING_PORTS = sorted({*MONITORING_LOOPBACK_PORTS.values(), *COREDNS_LOOPBACK_PORTS.values()})


def _prometheus(staging_host, expression: str) -> list[dict]:
    answer = staging_host.exec(
        "curl",
        "-sf",
        "-m",
        "10",
        "--get",
        "--data-urlencode",
        f"query={expression}",
        "http://127.0.0.1:9090/api/v1/query",
    )
    return json.loads(answer)["data"]["result"]


def _eventually(check, seconds: float, every: float = 2):
    """check()'s first true result within seconds (the last false one otherwise)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(every)


def test_no_monitoring_port_is_reachable_from_another_namespace(staging_host):
    reachable = _scan(staging_host, "-sS", "-p", ",".join(map(str, MONITORING_PORTS)))
    assert reachable == {}, f"reachable from the probe: {reachable}"
    # ... and on the host itself, everything answers on loopback (the scan is not blind)
    for port in (MONITORING_LOOPBACK_PORTS["prometheus"], MONITORING_LOOPBACK_PORTS["alertmanager"]):
        staging_host.exec("curl", "-sf", "-m", "5", "-o", "/dev/null", f"http://127.0.0.1:{port}/-/ready")


def _dashboards_credentials(staging_host, config: Path) -> Path:
    """config, written as a curl config file (0600) with the dashboards' user and the password the
    host holds now: curl reads it, so the password is in no command line."""
    settings = staging_host.settings()
    password = staging_host.exec("cat", monitoring.dashboards_password_file(settings))
    config.touch(mode=0o600)
    config.write_text(f'user = "{monitoring.DASHBOARDS_USER}:{password}"\n')
    return config


def _dashboards_url(staging_host, path: str) -> str:
    return f"https://{monitoring.dashboards_public_name(staging_host.settings())}{path}"


def test_the_dashboards_answer_at_their_public_name_over_tls_only_with_the_password(staging_host, tmp_path):
    url = _dashboards_url(staging_host, "/consoles/gateway-pool.html")
    refused = _curl(staging_host, url, "-o", "/dev/null", "-w", "%{http_code}")
    assert refused.stdout == "401", refused.stdout + refused.stderr
    wrong = tmp_path / "wrong.curlrc"
    wrong.write_text(f'user = "{monitoring.DASHBOARDS_USER}:not-the-password"\n')
    assert _curl(staging_host, url, "-K", str(wrong), "-o", "/dev/null", "-w", "%{http_code}").stdout == "401"

    credentials = _dashboards_credentials(staging_host, tmp_path / "dashboards.curlrc")
    answer = _curl(staging_host, url, "-K", str(credentials), "-D", "-")
    credentials.unlink()  # pytest keeps the last runs' temporary directories
    wrong.unlink()
    head, _, page = answer.stdout.partition("\n\n")
    assert head.startswith("HTTP/2 200") or head.startswith("HTTP/1.1 200"), head
    headers = _headers(head)
    for header, value in monitoring.DASHBOARDS_HEADERS.items():
        assert headers.get(header.lower()) == value, header
    pool_size = re.search(r"<td>Pool size</td><td><a [^>]*>(\d+)</a>", page)
    assert pool_size and pool_size.group(1) == str(staging_host.settings().gateway_pool_size), page[-2000:]


def test_dashboards_public_off_takes_the_name_away_and_the_loopback_door_stays(staging_host, tmp_path):
    """... and on again, after the operator deleted the password to have a new one made."""
    url = _dashboards_url(staging_host, "/consoles/index.html")
    old_credentials = _dashboards_credentials(staging_host, tmp_path / "old.curlrc")
    loopback = f"http://127.0.0.1:{MONITORING_LOOPBACK_PORTS['dashboards']}/consoles/index.html"

    # Act: the operator turns the public name off
    run = staging_host.pyinfra(
        "--data", "dashboards_public=false", deploy="deploys/monitoring.py", from_probe=PROBE_MONITORING_ALERTS
    )
    assert run.returncode == 0, _report(run)
    try:
        # Assert: the name is unknown to nginx again (no TLS handshake), loopback still asks for the password
        gone = _curl(staging_host, url, "-o", "/dev/null")
        assert gone.returncode == 35, f"curl {gone.returncode}: {gone.stderr}"
        status = staging_host.exec("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", loopback)
        assert status == "401"
    finally:
        # the rotation runbook: delete the password, converge
        staging_host.exec("rm", monitoring.dashboards_password_file(staging_host.settings()))
        back = staging_host.pyinfra(deploy="deploys/monitoring.py", from_probe=PROBE_MONITORING_BACK)
    assert back.returncode == 0, _report(back)
    new_credentials = _dashboards_credentials(staging_host, tmp_path / "new.curlrc")
    try:
        assert new_credentials.read_text() != old_credentials.read_text(), "no new password was made"
        new_password = new_credentials.read_text().split(":", 1)[1].rstrip('"\n')
        assert new_password not in back.stdout + back.stderr, "the new password was printed"
        for credentials, status in ((old_credentials, "401"), (new_credentials, "200")):
            answered = _curl(staging_host, url, "-K", str(credentials), "-o", "/dev/null", "-w", "%{http_code}")
            assert answered.stdout == status, credentials
    finally:
        # pytest keeps the last runs' temporary directories
        old_credentials.unlink()
        new_credentials.unlink()


def test_a_failed_unit_reaches_the_operators_webhook_and_mail_is_set_up_without_leaking(staging_host, tmp_path):
    # Arrange: the operators' paging service (a webhook receiver on the host's loopback, run from
    # this machine in the host's network namespace), alert mail through an SMTP account
    settings = staging_host.settings()
    received = tmp_path / "webhook.jsonl"
    received.touch()
    receiver = subprocess.Popen(
        [
            str(staging_host.harness_path),
            "netns",
            staging_host.name,
            sys.executable,
            str(Path(__file__).parent / "webhook_receiver.py"),
            "9999",
            str(received),
        ],
    )
    smtp_password = staging_host.operator_secrets["HOLISTIX_SMTP_PASSWORD"]
    try:
        run = staging_host.pyinfra(
            "-vvv",
            "--data",
            "alert_webhook_url=http://127.0.0.1:9999/alerts",
            "--data",
            "alert_group_wait_seconds=1",
            "--data",
            "alert_group_interval_seconds=2",
            "--data",
            "smtp_host=smtp.staging.holistix.test",
            "--data",
            "smtp_user=alerts@staging.holistix.test",
            "--data",
            'alert_email_to=["ops@staging.holistix.test"]',
            "--data",
            'ganymede_egress_networks=["192.0.2.0/24"]',
            deploy="deploys/monitoring.py",
            from_probe=PROBE_MONITORING_ALERTS,
        )
        assert run.returncode == 0, _report(run)
        assert smtp_password not in run.stdout + run.stderr, "the SMTP password was printed"
        password_file = "/etc/prometheus/alertmanager-smtp-password"
        assert staging_host.exec("stat", "-c", "%U %G %a", password_file).strip() == "root prometheus 640"
        # byte for byte: Alertmanager before 0.27 sends a trailing newline as part of the password
        assert staging_host.exec("cat", password_file) == smtp_password

        # Act: a monitored unit fails
        doomed = staging_host.harness(
            "exec",
            staging_host.name,
            "systemd-run",
            "--unit=holistix-e2e-doomed",
            "--property=Type=oneshot",
            "/bin/false",
            check=False,
        )
        assert doomed.returncode != 0, "the unit was meant to fail"

        # Assert: the operators are told, by name, within a minute
        def notified():
            for line in received.read_text().splitlines():
                notification = json.loads(line)
                for alert in notification["alerts"]:
                    labels = alert["labels"]
                    doomed = labels.get("name") == "holistix-e2e-doomed.service" and alert["status"] == "firing"
                    if labels.get("alertname") == "SystemdUnitFailed" and doomed:
                        return notification, alert
            return None

        found = _eventually(notified, 60)
        assert found, f"no SystemdUnitFailed notification; received: {received.read_text()[-2000:]}"
        notification, alert = found
        assert notification["receiver"] == "webhook"
        assert alert["labels"]["environment"] == settings.environment
        assert alert["annotations"]["summary"] == "Unit holistix-e2e-doomed.service failed"
    finally:
        receiver.terminate()
        receiver.wait(10)
        staging_host.exec("systemctl", "reset-failed", "holistix-e2e-doomed.service")
    # the inventory's settings again: no mail, no webhook, no password kept
    back = staging_host.pyinfra(deploy="deploys/monitoring.py", from_probe=PROBE_MONITORING_BACK)
    assert back.returncode == 0, _report(back)
    assert staging_host.harness("exec", staging_host.name, "test", "-e", password_file, check=False).returncode != 0


def test_the_pool_metrics_follow_the_database_and_exhaustion_is_seen(staging_host):
    env, database = staging_host.settings().environment, staging_host.settings().database_name
    metrics_unit = f"holistix-gateway-pool-metrics@{env}.service"

    def seen_free(count: int) -> bool:
        """What the timer does every minute, now; then Prometheus's view once it has scraped it."""
        staging_host.exec("systemctl", "start", metrics_unit)
        seen = lambda: [r["value"][1] for r in _prometheus(staging_host, "holistix_gateway_pool_free_gateways")]  # noqa: E731
        return _eventually(lambda: seen() == [str(count)], 30) or seen()

    # Arrange: the gateways report ready (the stand-in gateways never call Ganymede's /gateway/ready)
    _psql(staging_host, database, "UPDATE gateways SET ready = true")
    assert seen_free(3) is True, "the ready gateways are not seen free"

    # Act: three organisations take the three gateways, as Ganymede's allocator would
    _psql(
        staging_host,
        database,
        "WITH owner AS (INSERT INTO users (username) VALUES ('e2e-pool-owner') RETURNING user_id), "
        "orgs AS (INSERT INTO organizations (owner_id, name) SELECT user_id, 'e2e-pool-' || n FROM owner, "
        "generate_series(1, 3) n RETURNING organization_id) "
        "INSERT INTO organizations_gateways (organization_id, gateway_id) "
        "SELECT o.organization_id, g.gateway_id FROM (SELECT organization_id, row_number() OVER () r FROM orgs) o "
        "JOIN (SELECT gateway_id, row_number() OVER () r FROM gateways) g USING (r)",
    )
    try:
        # Assert: the pool is seen empty, and the exhaustion alert starts its 5 minutes
        assert seen_free(0) is True, "the taken gateways are still seen free"
        pending = _eventually(lambda: _prometheus(staging_host, 'ALERTS{alertname="GatewayPoolExhausted"}'), 30)
        assert pending and pending[0]["metric"]["alertstate"] == "pending", pending
    finally:
        # the organisations let go (ended_at), as Ganymede records it
        _psql(staging_host, database, "UPDATE organizations_gateways SET ended_at = now()")
    assert seen_free(3) is True, "the released gateways are not seen free again"


def test_a_rules_file_promtool_rejects_fails_the_run_and_prometheus_keeps_its_rules(staging_host, tmp_path):
    # Arrange: a copy of the project whose alert rules have a PromQL typo, as a bad edit would
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".tools", "__pycache__", "*.pyc"))
    template = copy / "templates" / "monitoring" / "holistix.rules.yml.j2"
    template.write_text(template.read_text().replace("expr: up == 0", "expr: up === 0", 1))
    live_before = staging_host.exec("sha256sum", "/etc/prometheus/rules/holistix.yml")

    run = staging_host.pyinfra(deploy="deploys/monitoring.py", from_probe=PROBE_MONITORING_BROKEN, cwd=copy)

    assert run.returncode != 0
    assert "rejected by the checker, the live file is unchanged: /etc/prometheus/rules/holistix.yml" in run.stderr, (
        _report(run)
    )
    assert staging_host.exec("sha256sum", "/etc/prometheus/rules/holistix.yml") == live_before
    assert staging_host.exec("ls", "-A", "/etc/prometheus/rules").split() == ["holistix.yml"]
    loaded = _prometheus(staging_host, "count(ALERTS) or vector(0)")
    assert loaded, "Prometheus stopped answering"
    rules = json.loads(staging_host.exec("curl", "-sf", "http://127.0.0.1:9090/api/v1/rules"))["data"]["groups"]
    assert "TargetDown" in {rule["name"] for group in rules for rule in group["rules"]}


def _secret_digests(staging_host) -> str:
    secrets_dir = staging_host.settings().secrets_dir
    # every file, the gateways' tokens in their own directory included
    return staging_host.exec("sh", "-c", f"cd {secrets_dir} && find . -type f | sort | xargs sha256sum")


def test_second_converge_changes_nothing(staging_host):
    secrets_before = _secret_digests(staging_host)
    run = staging_host.pyinfra()
    assert run.returncode == 0, _report(run)
    changed = run.changed_operations(staging_host.name)
    assert changed == [], f"a second converge changed {len(changed)} operation(s): {changed}"
    assert run.results["totals"]["success"] == 0
    assert _secret_digests(staging_host) == secrets_before, "a secret or Ganymede's environment file changed"


def test_dns01_challenge_records_survive_a_converge_and_go_when_removed(staging_host):
    challenges = CHALLENGES.get(staging_host.name)
    assert challenges, "the challenge records must have been added"
    for name, value in challenges:
        assert f'"{value}"' in _dig(staging_host, "+short", name, "TXT"), "the converge removed a challenge"
    for name, value in challenges:
        removed = staging_host.harness("exec", staging_host.name, dns.ACME_HELPER, "remove", name, value, check=False)
        assert removed.returncode == 0, removed.stderr
        assert f'"{value}"' not in _dig(staging_host, "+short", name, "TXT")
    leftovers = staging_host.exec("ls", "-A", dns.ZONES_DIR).split()
    assert [entry for entry in leftovers if "_acme-challenge" in entry] == []


# -- after a reboot -------------------------------------------------------------------------------


def test_host_suites_pass_after_reboot(staging_host):
    boot_before = staging_host.exec("cat", "/proc/sys/kernel/random/boot_id")
    rebooted = staging_host.harness("reboot", staging_host.name, check=False)
    assert rebooted.returncode == 0, rebooted.stderr
    assert staging_host.exec("cat", "/proc/sys/kernel/random/boot_id") != boot_before
    suites = staging_host.host_suites()
    assert suites.returncode == 0, suites.stdout[-6000:]


def test_the_pool_came_back_only_after_ganymede_answered(staging_host):
    settings = staging_host.settings()
    unit = f"holistix-gateway-pool@{settings.environment}"
    journal = staging_host.exec("journalctl", "-b", "-q", "--no-pager", "-o", "cat", "-u", unit)
    assert f"release {settings.ganymede_release.version} answers" in journal
    containers, registered = _pool(staging_host)
    assert containers == registered and len(containers) == settings.gateway_pool_size
    for name in containers:
        assert staging_host.exec("docker", "inspect", "-f", "{{.State.Running}}", name).strip() == "true"


def test_journal_kept_the_previous_boot(staging_host):
    boots = staging_host.exec("journalctl", "--list-boots", "--no-pager").strip().splitlines()
    assert len([line for line in boots if line.strip() and not line.lstrip().startswith("IDX")]) >= 2


def test_firewall_is_back_after_reboot(staging_host):
    reachable = _scan(staging_host, "-sS", "-p-", "--min-rate", "20000")
    assert set(reachable) == _expected_tcp(staging_host.settings())


def test_docker_published_ports_do_not_bypass_the_firewall(staging_host):
    # Arrange: Docker Engine from the distro and a busybox image made on the host (no registry)
    install = staging_host.harness(
        "exec",
        staging_host.name,
        "sh",
        "-c",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io busybox-static",
        check=False,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    staging_host.exec(
        "sh",
        "-c",
        "set -e; rm -rf /tmp/img; mkdir -p /tmp/img/bin; cp /bin/busybox /tmp/img/bin/;"
        " tar -C /tmp/img -c . | docker import - holistix-probe:1 >/dev/null",
    )
    public = [r for r in staging_host.settings().firewall_extra_rules if r.target == "containers"][0]
    for name, port in (("published-public", public.ports), ("published-private", "18080")):
        staging_host.exec(
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "-p",
            f"{port}:{port}",
            "holistix-probe:1",
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            port,
            "-h",
            "/",
        )
    # both containers answer on the host itself, so a filtered port below is the firewall's doing
    for port in (public.ports, "18080"):
        assert (
            staging_host.harness(
                "exec", staging_host.name, "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}", check=False
            ).returncode
            == 0
        )
    reachable = _scan(staging_host, "-sS", "-p", f"18080,{public.ports}")
    assert reachable == {f"{public.ports}/tcp": "open"}, "only the port the inventory makes public is reachable"


def test_containers_on_the_docker_bridge_resolve_through_coredns(staging_host):
    # Docker (and its bridge) arrived after CoreDNS started: the bridge is trusted by subnet,
    # so the order of the modules does not matter
    domain = staging_host.settings().domain
    bridge_ip = str(staging_host.settings().docker_bridge_cidr.ip)

    def lookup(name: str) -> str:
        # busybox nslookup asks A and AAAA; its exit status reflects the AAAA answer too
        return staging_host.harness(
            "exec",
            staging_host.name,
            "docker",
            "run",
            "--rm",
            "--dns",
            bridge_ip,
            "holistix-probe:1",
            "/bin/busybox",
            "nslookup",
            "-type=a",
            name,
            bridge_ip,
            check=False,
        ).stdout

    assert "198.51.100.53" in lookup("outside.example.org"), "an outside name is forwarded to the upstream"
    assert staging_host.address in lookup(f"org-{uuid.uuid4()}.{domain}")
    refused = _dig(staging_host, "+rec", "outside.example.org", "A")
    assert "status: REFUSED" in refused, "the same question from outside must be refused"
