"""Production: one VPS. A documented example: replace the addresses, names and keys.

First run on the fresh VPS (root with the provider's key; creates the deploy user):
    pyinfra inventories/prod.py deploys/base.py --user root --key ~/.ssh/provider_key
Every later run (as the deploy user below):
    pyinfra inventories/prod.py deploys/all.py
    pyinfra inventories/prod.py deploys/base.py         # one module alone

Every key is explained in the README's Settings table; defaults are in group_data/all.py.
Secrets are never written here: export the HOLISTIX_* variables the README lists.
"""

vps = [
    (
        "prod-vps",
        {
            # how pyinfra reaches the host (pyinfra's own ssh_* keys)
            "ssh_hostname": "203.0.113.10",
            "ssh_user": "deploy",
            "ssh_key": "~/.ssh/holistix_deploy_ed25519",
            "ssh_known_hosts_file": "~/.ssh/known_hosts",
            "ssh_strict_host_key_checking": "yes",
            "_sudo": True,
            # what this host serves
            "domain": "app.example.com",
            "environment": "prod",
            "admin_email": "ops@example.com",
            "public_ipv4": "203.0.113.10",
            "public_ipv6": "2001:db8::10",
            "deploy_user": "deploy",
            "deploy_authorized_keys": [
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIUXAcIz21dZ+GtEcRo/duZ4Nipg8UkEPISzPBKYfxgj ops@example.com",
            ],
            "gateway_pool_size": 8,
            # the registrar delegates DOMAIN to ns1.DOMAIN (glue 203.0.113.10): CoreDNS here answers it
            "dns_served_publicly": True,
            "dns_records": [
                {"name": "@", "type": "TXT", "value": "v=spf1 -all"},
                {"name": "_dmarc", "type": "TXT", "value": "v=DMARC1; p=reject"},
            ],
            # Required before deploys/coredns.py runs: the sha256 of the pinned CoreDNS release
            # tarball for this host's architecture, copied from coredns_<version>_linux_amd64.tgz.sha256
            # on https://github.com/coredns/coredns/releases (the README says why it is not built in):
            # "coredns_sha256": {"amd64": "<64 hex digits>"},
            # Required before deploys/monitoring.py runs: the VictoriaLogs release tarballs' sha256,
            # from their _checksums.txt on https://github.com/VictoriaMetrics/VictoriaLogs/releases:
            # "victorialogs_sha256": {
            #     "victoria-logs-linux-amd64-v1.52.1.tar.gz": "<64 hex digits>",
            #     "vlutils-linux-amd64-v1.52.1.tar.gz": "<64 hex digits>",
            # },
            # and Jaeger's, from jaeger-2.13.0.sha256sum.txt on https://github.com/jaegertracing/jaeger/releases:
            # "jaeger_sha256": {"amd64": "<64 hex digits>"},
            # The dashboards in a browser at https://dashboards.DOMAIN (user admin, the password
            # generated in /etc/holistix/prod/dashboards_password); without it, the host only:
            # "dashboards_public": True,
            # Required by deploys/ganymede.py and deploys/gateway_pool.py: the platform build and the
            # gateway image (docker save), each with the sha256 published with it (README, Releases):
            # "ganymede_release": {"version": "1.4.2", "source": "https://...", "sha256": "<64 hex>"},
            # "gateway_image": {"tag": "holistix-gateway:1.4.2", "source": "https://...", "sha256": "<64 hex>"},
        },
    ),
]
