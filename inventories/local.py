"""The local staging host(s) made by scripts/staging-host (see the README, "Staging hosts").

Every host in the harness state directory is a target. The first run bootstraps as root
with the provider key the harness made:

    pyinfra inventories/local.py deploys/base.py --user root --key "$STAGING_PROVIDER_KEY"

later runs log in as the deploy user with the operator key.
"""

import os
from pathlib import Path

from holistix_deploy.settings import Settings

_state = Path(os.environ.get("STAGING_STATE", "/var/lib/machines/.staging"))
_operator_key = _state / "operator_ed25519"
# the harness's stand-ins for the internet on the bridge address (scripts/staging-host)
_outside = os.environ.get("STAGING_NET", "10.77.0") + ".1"
_acme_ca = Path("/run/holistix-staging") / os.environ.get("STAGING_BRIDGE", "hxstg0") / "acme" / "ca.pem"
_artifacts = Path(os.environ.get("HOLISTIX_ARTIFACTS", "/var/cache/holistix-deploy/artifacts"))


def _artifact_checksums(pattern: str) -> dict:
    """{arch: sha256} of the locally built release tarballs (scripts/coredns-artifact), read from
    their .sha256 files the way an operator copies them from a release page."""
    checksums = {}
    for sha_file in sorted(_artifacts.glob(pattern + ".sha256")):
        digest, name = sha_file.read_text().split()
        checksums[name.rsplit("_", 1)[1].removesuffix(".tgz")] = digest
    return checksums


def _victorialogs_checksums(version: str) -> dict:
    """{tarball: sha256} of the locally built VictoriaLogs tarballs (scripts/victorialogs-artifact),
    read from their _checksums.txt files, as an operator copies them from the release page."""
    checksums = {}
    for sums in sorted(_artifacts.glob(f"*-linux-*-v{version}_checksums.txt")):
        for line in sums.read_text().splitlines():
            digest, name = line.split()
            if name.endswith(".tar.gz"):
                checksums[name] = digest
    return checksums


def _jaeger_checksums(version: str) -> dict:
    """{arch: sha256} of the locally built Jaeger tarballs (scripts/jaeger-artifact), from
    jaeger-<version>.sha256sum.txt as the release publishes it."""
    sums = _artifacts / f"jaeger-{version}.sha256sum.txt"
    checksums = {}
    for line in sums.read_text().splitlines() if sums.exists() else []:
        digest, name = line.split()
        if name.lstrip("*").startswith(f"jaeger-{version}-linux-") and name.endswith(".tar.gz"):
            checksums[name.lstrip("*").removesuffix(".tar.gz").rsplit("-", 1)[1]] = digest
    return checksums


def _release(version: str) -> dict | None:
    """A platform release made of the contract stand-ins (scripts/ganymede-release-artifact),
    downloaded by the host from the harness's download server, like a release from a URL."""
    sha_file = _artifacts / f"holistix-{version}.tar.gz.sha256"
    if not sha_file.exists():
        return None
    return {
        "version": version,
        "source": f"http://{_outside}:8800/holistix-{version}.tar.gz",
        "sha256": sha_file.read_text().split()[0],
    }


def _gateway_image(tag: str) -> dict | None:
    """The stand-in gateway image (scripts/gateway-image-artifact), a `docker save` tarball the
    host downloads from the harness's download server."""
    tarball = _artifacts / f"{tag.replace(':', '_')}.docker.tar"
    sha_file = Path(f"{tarball}.sha256")
    if not sha_file.exists():
        return None
    return {"tag": tag, "source": f"http://{_outside}:8800/{tarball.name}", "sha256": sha_file.read_text().split()[0]}


def _acme(address: str) -> dict:
    """The host's own stand-in for Let's Encrypt (a pebble asking this host's DNS server)."""
    if not _acme_ca.exists():
        return {}
    port = 14000 + int(address.rsplit(".", 1)[1])
    return {"acme_directory": f"https://{_outside}:{port}/dir", "acme_directory_ca_file": str(_acme_ca)}


def _issuing_root(name: str) -> dict:
    """Ganymede calls https://org-<uuid>.DOMAIN with the certificate pebble issued, and the
    monitoring's HTTPS probes check it: both trust pebble's root (never NODE_TLS_REJECT_UNAUTHORIZED=0)."""
    root = _acme_ca.parent / f"pebble-{name}-root.pem"
    return {"ganymede_extra_ca_file": str(root), "monitoring_probe_ca_file": str(root)} if root.exists() else {}


def _host(ip_file: Path):
    address = ip_file.read_text().strip()
    return (
        ip_file.stem,
        {
            **_acme(address),
            **_issuing_root(ip_file.stem),
            "ssh_hostname": address,
            "ssh_user": "deploy",
            "ssh_key": str(_operator_key),
            "ssh_known_hosts_file": str(_state / "known_hosts"),
            "ssh_strict_host_key_checking": "yes",
            "ssh_look_for_keys": False,
            "ssh_allow_agent": False,
            "_sudo": True,
            "public_ipv4": address,
        },
    )


staging_hosts = [_host(ip_file) for ip_file in sorted(_state.glob("*.ip"))]

# Settings shared by the staging hosts; .test is a reserved name (RFC 6761) that never resolves.
local = (
    [name for name, _ in staging_hosts],
    {
        "domain": "staging.holistix.test",
        "environment": "staging",
        "admin_email": "ops@staging.holistix.test",
        # like production: the staging host is the zone's public DNS server
        "dns_served_publicly": True,
        # a small VPS's memory (the container sees all of this machine's), and a stand-in for a
        # platform build's database/ directory
        "postgres_memory_mb": 2048,
        "postgres_database_dir": "tests/fixtures/database",
        # CoreDNS from the harness's download stand-in; other names go to its stand-in resolver
        "coredns_download_url": f"http://{_outside}:8800/coredns_{{version}}_linux_{{arch}}.tgz",
        "coredns_sha256": _artifact_checksums(
            f"coredns_{Settings.model_fields['coredns_version'].default}_linux_*.tgz"
        ),
        "dns_upstreams": [_outside],
        # VictoriaLogs, like CoreDNS, from the harness's download stand-in
        "victorialogs_download_url": f"http://{_outside}:8800/{{name}}-linux-{{arch}}-v{{version}}.tar.gz",
        "victorialogs_sha256": _victorialogs_checksums(Settings.model_fields["victorialogs_version"].default),
        "jaeger_download_url": f"http://{_outside}:8800/jaeger-{{version}}-linux-{{arch}}.tar.gz",
        "jaeger_sha256": _jaeger_checksums(Settings.model_fields["jaeger_version"].default),
        "dns_records": [
            {"name": "@", "type": "MX", "value": "10 mail.staging.holistix.test"},
            {"name": "mail", "type": "A", "value": "192.0.2.25"},
            {"name": "@", "type": "TXT", "value": "v=spf1 mx -all"},
            {"name": "_dmarc", "type": "TXT", "value": "v=DMARC1; p=reject; rua=mailto:ops@staging.holistix.test"},
            {"name": "www", "type": "CNAME", "value": "staging.holistix.test"},
        ],
        # the platform: a stand-in release (scripts/ganymede-release-artifact) on the distribution's
        # Node.js (NodeSource is out of reach here); the stand-in's /health asks PostgreSQL
        "ganymede_release": _release("1.0.0"),
        "ganymede_health_path": "/health",
        "ganymede_health_timeout_seconds": 20,
        "nodejs_source": "distro",
        "gateway_image": _gateway_image("holistix-gateway:stand-in-1"),
        "gateway_pool_size": 3,
        # bans sooner than production, so the e2e proves a ban with few attempts
        "fail2ban_sshd_maxretry": 3,
        # scrapes and evaluates sooner than production, so the e2e sees a change within seconds
        "monitoring_scrape_interval_seconds": 5,
        # the dashboards at https://dashboards.staging.holistix.test too (the e2e turns it off and on)
        "dashboards_public": True,
        # one published container port made public on purpose (the e2e checks that only it is)
        "firewall_extra_rules": [
            {"ports": "18081", "protocol": "tcp", "target": "containers", "comment": "staging: public container port"}
        ],
        "deploy_authorized_keys": [_operator_key.with_suffix(".pub").read_text().strip()]
        if _operator_key.with_suffix(".pub").exists()
        else [],
    },
)
