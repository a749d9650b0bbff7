"""nginx: the TLS edge of the environment: the frontend at DOMAIN, Ganymede at
ganymede.DOMAIN, and the per-organisation blocks Ganymede writes at run time.

Manages: the distribution's nginx; /etc/nginx/nginx.conf (owned whole: Mozilla intermediate
TLS, server_tokens off, server_names_hash_bucket_size 128, rate-limit zones, an access log
without bearer tokens); the environment's site /etc/nginx/holistix/<env>.conf (unknown names
rejected, HTTP to HTTPS keeping the host, the frontend with its caching rules, Ganymede
behind a WebSocket-capable proxy, per-location rate limits) and its security-header
snippets; the directory Ganymede writes organisation blocks to; the directory other modules'
server blocks go in (holistix/<env>/servers/: the monitoring module's dashboards); a self-signed placeholder
certificate for DOMAIN and *.DOMAIN until the letsencrypt module provides the real one; the
distribution's default site removed. Every change is checked by `nginx -t` on a complete
copy of the new configuration before any live file changes.

Reads: domain, environment, docker_bridge_cidr, ganymede_port, nginx_*.
Reloads nginx on a configuration change or a renewed placeholder certificate.

    pyinfra inventories/prod.py deploys/nginx.py
"""

from pyinfra import host
from pyinfra.facts.files import Link
from pyinfra.operations import apt, files, server, systemd

from holistix_deploy import nginx, tls
from holistix_deploy.facts import CertificateState, NginxVersion
from holistix_deploy.ganymede import NGINX_CONTROL
from holistix_deploy.operations import NGINX_RELOAD, install_helpers, nginx_config, organisation_blocks_checked
from holistix_deploy.settings import load_settings

settings = load_settings(host)
version = host.get_fact(NginxVersion)
if version is None:
    raise RuntimeError("no nginx version known for this host: run deploys/base.py first (it refreshes apt)")

apt.packages(
    name=f"Ensure nginx {version[0]}.{version[1]} is installed",
    packages=["nginx"],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)
for directory, mode in (
    (f"{nginx.CONFIG_DIR}/holistix", "0755"),
    (nginx.environment_dir(settings), "0755"),
    (nginx.servers_dir(settings), "0755"),
    (settings.tls_dir, "0700"),
    (nginx.PLACEHOLDER_CA_DIR, "0700"),
):
    files.directory(name=f"Ensure {directory} exists", path=directory, user="root", group="root", mode=mode)
# Ganymede writes here: the ganymede module gives them to its user, so only their existence is ours
for directory in (settings.nginx_gateways_dir, f"{settings.nginx_gateways_dir}/locations"):
    files.directory(name=f"Ensure {directory} exists", path=directory, mode="0755")

# -- a certificate nginx can start with, until the letsencrypt module links the real one -----------
# signed by a CA made on this host (trust CA_DIR/holistix-ca.crt to verify it), 90 days, renewed
certificate, key = f"{settings.tls_dir}/fullchain.pem", f"{settings.tls_dir}/privkey.pem"
install_helpers({tls.CERTIFICATE_HELPER: "tls/host_certificates.sh"})
placeholder = server.shell(
    name=f"Ensure a placeholder certificate for {settings.domain} and *.{settings.domain} (until letsencrypt)",
    commands=[
        f"{tls.CERTIFICATE_HELPER} {nginx.PLACEHOLDER_CA_DIR} 'Placeholder CA' {key} {certificate}"
        f" {settings.domain} 'DNS:{settings.domain},DNS:*.{settings.domain}' 90"
    ],
    # a link is the letsencrypt module's certificate: never replaced here
    _if=lambda: (
        not host.get_fact(Link, path=certificate)
        and host.get_fact(CertificateState, path=certificate, seconds=30 * 86400) != "valid"
    ),
)

# -- the configuration, checked whole before anything live changes ----------------------------------
# nginx -t reads (and creates the logs of) every organisation block as root: check them first
organisation_blocks_checked(
    name="Ensure the organisation blocks Ganymede wrote hold only the platform's block",
    helper=NGINX_CONTROL,
)
config = nginx_config(
    name="Ensure nginx's configuration is in place (nginx -t on the complete new configuration first)",
    files={
        nginx.MAIN_CONFIG: nginx.render_main_config(settings, version),
        nginx.site_file(settings): nginx.render_site(settings, version),
        nginx.headers_file(settings, "frontend"): nginx.render_headers(settings, "frontend"),
        nginx.headers_file(settings, "ganymede"): nginx.render_headers(settings, "ganymede"),
    },
    absent=[nginx.DISTRIBUTION_SITE],
    candidate_dir=nginx.CANDIDATE_DIR,
)
systemd.service(
    name="Ensure nginx runs and starts at boot",
    service="nginx",
    running=True,
    enabled=True,
)
server.shell(
    name="Ensure nginx serves the renewed placeholder certificate",
    commands=[f"nginx -t -q && {NGINX_RELOAD}"],
    _if=lambda: placeholder.did_change() and not config.did_change(),
)
