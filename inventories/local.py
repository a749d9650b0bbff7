"""The local staging host(s) made by scripts/staging-host (see the README, "Staging hosts").

Every host in the harness state directory is a target. The first run bootstraps as root
with the provider key the harness made:

    pyinfra inventories/local.py deploys/base.py --user root --key "$STAGING_PROVIDER_KEY"

later runs log in as the deploy user with the operator key.
"""

import os
from pathlib import Path

_state = Path(os.environ.get("STAGING_STATE", "/var/lib/machines/.staging"))
_operator_key = _state / "operator_ed25519"


def _host(ip_file: Path):
    address = ip_file.read_text().strip()
    return (
        ip_file.stem,
        {
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
        # bans sooner than production, so the e2e proves a ban with few attempts
        "fail2ban_sshd_maxretry": 3,
        # one published container port made public on purpose (the e2e checks that only it is)
        "firewall_extra_rules": [
            {"ports": "18081", "protocol": "tcp", "target": "containers", "comment": "staging: public container port"}
        ],
        "deploy_authorized_keys": [_operator_key.with_suffix(".pub").read_text().strip()]
        if _operator_key.with_suffix(".pub").exists()
        else [],
    },
)
