"""Staging: a smaller copy of production on its own VPS. A documented example.

Same commands as inventories/prod.py, with this file:
    pyinfra inventories/staging.py deploys/base.py --user root --key ~/.ssh/provider_key
    pyinfra inventories/staging.py deploys/all.py
"""

vps = [
    (
        "staging-vps",
        {
            "ssh_hostname": "203.0.113.20",
            "ssh_user": "deploy",
            "ssh_key": "~/.ssh/holistix_deploy_ed25519",
            "ssh_known_hosts_file": "~/.ssh/known_hosts",
            "ssh_strict_host_key_checking": "yes",
            "_sudo": True,
            "domain": "staging.example.com",
            "environment": "staging",
            "admin_email": "ops@example.com",
            "public_ipv4": "203.0.113.20",
            "deploy_authorized_keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIUXAcIz21dZ+GtEcRo/duZ4Nipg8UkEPISzPBKYfxgj ops@example.com",
            ],
            "gateway_pool_size": 2,
            # the staging domain is delegated to this VPS: its CoreDNS answers the CA's DNS-01 questions
            "dns_served_publicly": True,
        },
    ),
]
