"""letsencrypt: one certificate for DOMAIN, *.DOMAIN and every organisation's
*.org-<uuid>.DOMAIN, issued by DNS-01 and renewed by the distribution's certbot timer.

Manages: certbot from the distribution (and its Cloudflare plugin for that provider);
/usr/local/sbin/holistix-certificate and its configuration /etc/holistix/acme/certificate.json;
certbot's DNS-01 hooks for this host's CoreDNS and its deploy hook (links the certificate
where nginx reads it, then nginx -t and a reload); for Cloudflare, a 0600 credentials file made
on the host from HOLISTIX_DNS_API_TOKEN; certbot.service's environment for a private ACME
directory; the certificate itself, issued only when its names changed or 30 days are left.

Reads: domain, admin_email, public_ipv4, environment, acme_*.
Reloads nginx (through certbot's deploy hook) when a certificate is issued.

    pyinfra inventories/prod.py deploys/letsencrypt.py
"""

import json
import os
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import apt, files, server, systemd

from holistix_deploy.facts import NeedsRefresh
from holistix_deploy.operations import CERTIFICATE_HELPER, acme_certificate, install_helpers, operator_secret
from holistix_deploy.settings import ACME_MAX_NAMES, SettingsError, load_settings
from holistix_deploy.templating import render

settings = load_settings(host)
domain = settings.domain
ACME_DIR = "/etc/holistix/acme"
ORGANISATIONS_FILE = f"{ACME_DIR}/organisations"
CHALLENGE_HOOK = "/usr/local/lib/holistix/certbot-dns-coredns"
DEPLOY_HOOK = "/usr/local/lib/holistix/certbot-deploy"
cloudflare = settings.acme_dns_provider == "cloudflare"
if not cloudflare and not settings.dns_served_publicly:
    raise SettingsError(
        host.name,
        [
            "acme_dns_provider = 'coredns': the CA must reach this host's DNS, but dns_served_publicly is False "
            "(port 53 stays closed); delegate the domain to this host and set dns_served_publicly = True, "
            "or use acme_dns_provider = 'cloudflare'"
        ],
    )
token_file = f"{settings.secrets_dir}/dns_api_token"
token = os.environ.get("HOLISTIX_DNS_API_TOKEN", "")
if cloudflare and not token and not host.get_fact(File, path=token_file):
    raise SettingsError(
        host.name,
        [
            "acme_dns_provider = 'cloudflare': needs the Cloudflare API token; export HOLISTIX_DNS_API_TOKEN "
            "(a token limited to Zone:DNS:Edit) on the machine that runs pyinfra"
        ],
    )

apt.packages(
    name="Ensure certbot is installed" + (" with its Cloudflare plugin" if cloudflare else ""),
    packages=["certbot", *(["python3-certbot-dns-cloudflare"] if cloudflare else [])],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)
files.directory(name=f"Ensure {ACME_DIR} exists", path=ACME_DIR, user="root", group="root", mode="0755")

# -- what certbot needs in its environment, for issuance here and for the timer's renewals ----------
environment = {}
if settings.acme_directory_ca_file:
    ca_bundle = f"{ACME_DIR}/directory-ca.pem"
    files.put(
        name="Ensure certbot trusts the private ACME directory's CA",
        src=settings.acme_directory_ca_file,
        dest=ca_bundle,
        mode="0644",
    )
    environment["REQUESTS_CA_BUNDLE"] = ca_bundle
credentials = f"{settings.secrets_dir}/cloudflare.ini"
if cloudflare:
    if token:
        operator_secret(
            name="Ensure the Cloudflare API token from HOLISTIX_DNS_API_TOKEN is stored",
            path=token_file,
            value=token,
        )
    # the token goes from its file into certbot's credentials file on the host, by the shell's
    # printf builtin: never in a process's arguments, never through pyinfra
    server.shell(
        name="Ensure certbot's Cloudflare credentials file is made from the stored token (0600)",
        commands=[
            f"umask 077 && {{ printf 'dns_cloudflare_api_token = %s\\n' \"$(cat {token_file})\"; }}"
            f" > {credentials}.new && mv -f {credentials}.new {credentials}"
        ],
        _if=lambda: host.get_fact(NeedsRefresh, target=credentials, source=token_file),
    )
    if settings.acme_cloudflare_api_url:
        # python-cloudflare 2.x (Debian, Ubuntu) reads the first, the 4.x SDK the second
        environment["CLOUDFLARE_API_URL"] = settings.acme_cloudflare_api_url
        environment["CLOUDFLARE_BASE_URL"] = settings.acme_cloudflare_api_url
else:
    files.file(
        name="Ensure no Cloudflare credentials file is left when Cloudflare is not used",
        path=credentials,
        present=False,
    )
drop_in = files.put(
    name="Ensure certbot's renewals run with the environment issuance had",
    src=StringIO(render("letsencrypt/certbot-environment.conf.j2", environment=environment)),
    dest="/etc/systemd/system/certbot.service.d/holistix.conf",
    mode="0644",
)
systemd.daemon_reload(name="Ensure systemd knows certbot's environment", _if=drop_in.did_change)

# -- the helpers and their configuration ----------------------------------------------------------
install_helpers(
    {
        CERTIFICATE_HELPER: "letsencrypt/holistix_certificate.py",
        CHALLENGE_HOOK: "letsencrypt/certbot_dns_coredns.sh",
        DEPLOY_HOOK: "letsencrypt/certbot_deploy.sh",
    }
)
organisations = sorted(str(organisation) for organisation in settings.acme_organisations)
config = {
    "domain": domain,
    "email": settings.admin_email,
    "server": settings.acme_directory_url,
    "provider": settings.acme_dns_provider,
    "public_address": str(settings.public_ipv4),
    "tls_dir": settings.tls_dir,
    "organisations": organisations,
    "organisations_file": ORGANISATIONS_FILE,
    "max_names": ACME_MAX_NAMES,
    "dns_helper": "/usr/local/sbin/holistix-acme-dns",
    "challenge_hook": CHALLENGE_HOOK,
    "deploy_hook": f"{DEPLOY_HOOK} {settings.tls_dir}",
    "environment": environment,
    "cloudflare": {"credentials": credentials, "propagation_seconds": settings.acme_cloudflare_propagation_seconds},
}
files.put(
    name=f"Ensure {ACME_DIR}/certificate.json describes the certificate",
    src=StringIO(json.dumps(config, indent=2, sort_keys=True) + "\n"),
    dest=f"{ACME_DIR}/certificate.json",
    mode="0644",
)

# -- the certificate: organisations from the inventory and those added on the host ----------------
added_on_host = host.get_fact(FileContents, path=ORGANISATIONS_FILE) or []
every_organisation = sorted(set(organisations) | {line.strip() for line in added_on_host if line.strip()})
acme_certificate(
    name=f"Ensure the certificate for {domain}, *.{domain} and {len(every_organisation)} organisation(s) is issued",
    domain=domain,
    names=[domain, f"*.{domain}", *(f"*.org-{organisation}.{domain}" for organisation in every_organisation)],
    tls_dir=settings.tls_dir,
    server=settings.acme_directory_url,
    authenticator="dns-cloudflare" if cloudflare else "manual",
)
systemd.service(
    name="Ensure certbot's renewal timer is enabled",
    service="certbot.timer",
    running=True,
    enabled=True,
)
