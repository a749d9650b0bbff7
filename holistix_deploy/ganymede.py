"""Ganymede policy shared by the ganymede module and its tests: the environment it gets
(platform contract 1.7), where things live, and its systemd units."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from holistix_deploy import monitoring, nginx
from holistix_deploy.templating import render

if TYPE_CHECKING:
    from holistix_deploy.settings import Settings

SERVICE_USER = "ganymede"
RELEASE_HELPER = "/usr/local/sbin/holistix-release"
ENV_HELPER = "/usr/local/lib/holistix/ganymede-env"
NGINX_CONTROL = "/usr/local/lib/holistix/nginx-control"
LOOPBACK_PRELOAD = "/usr/local/lib/holistix/loopback-listen.cjs"
NGINX_CONTROL_SOCKET_UNIT = "holistix-nginx-control.socket"
UNIT_FILE = "/etc/systemd/system/ganymede@.service"
NGINX_CONTROL_POLICY = "/etc/holistix/nginx-control.json"
NODESOURCE_KEYRING = "/etc/apt/keyrings/nodesource.gpg"
# NodeSource's repository signing key ("NSolid <nsolid-gpg@nodesource.com>"); files/ganymede/nodesource.gpg
NODESOURCE_FINGERPRINT = "6F71F525282841EEDAF851B42F59B5F99B1BE0B4"
# what a release that nobody configured a value for gets, where Ganymede insists on a value
PLACEHOLDER = "unconfigured"

# what Ganymede's config.ts refuses to start without (platform contract 1.7)
REQUIRED_VARIABLES = (
    ["FRONTEND_FQDN", "GANYMEDE_FQDN", "GANYMEDE_SERVER_BIND", "ALLOWED_ORIGINS"]
    + ["PG_HOST", "PG_PORT", "PG_DATABASE", "PG_USER", "PG_PASSWORD", "JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY"]
    + [f"{p}_CLIENT_{part}" for p in ("GITHUB", "GITLAB", "LINKEDIN", "DISCORD") for part in ("ID", "SECRET")]
    + ["MAILING_HOST", "MAILING_PORT", "MAILING_USER", "MAILING_PASSWORD", "SESSION_COOKIE_KEY"]
)

# variables the module sets, and the setting each comes from (ganymede_environment may not set them)
MANAGED_VARIABLES = {
    "FRONTEND_FQDN": "domain",
    "GANYMEDE_FQDN": "domain",
    "GANYMEDE_SERVER_BIND": "ganymede_port",
    "ALLOWED_ORIGINS": "domain",
    "DOMAIN": "domain",
    "ENV_NAME": "environment",
    "PG_HOST": "the postgres module",
    "PG_PORT": "the postgres module",
    "PG_DATABASE": "environment",
    "PG_USER": "environment",
    "PG_PASSWORD": "the secret database_password",
    "PGSSLMODE": "the postgres module (TLS, verified)",
    "JWT_PRIVATE_KEY": "the secret jwt_private_key.pem",
    "JWT_PUBLIC_KEY": "the secret jwt_public_key.pem",
    "SESSION_COOKIE_KEY": "the secret session_cookie_key",
    "CREDENTIALS_ENCRYPTION_KEY": "the secret credentials_encryption_key",
    "MAILING_HOST": "smtp_host",
    "MAILING_PORT": "smtp_port",
    "MAILING_USER": "smtp_user",
    "MAILING_PASSWORD": "HOLISTIX_SMTP_PASSWORD",
    "NGINX_GATEWAYS_DIR": "environment",
    "NGINX_SSL_CERT": "domain",
    "NGINX_SSL_KEY": "domain",
    "NGINX_LOGS_DIR": "the nginx module",
    "NGINX_LISTEN_PORT": "the nginx module",
    "NGINX_TEST_COMMAND": "the ganymede module (no sudo)",
    "NGINX_RELOAD_COMMAND": "the ganymede module (no sudo)",
    "NODE_ENV": "the ganymede module (production)",
    "NODE_EXTRA_CA_CERTS": "ganymede_extra_ca_file",
    "NODE_OPTIONS": "the ganymede module (loopback listener)",
    "OTEL_SERVICE_NAME": "environment",
    "OTEL_DEPLOYMENT_ENVIRONMENT": "environment",
    "OTLP_ENDPOINT_HTTP": "the monitoring module (Jaeger on loopback)",
    "OTLP_ENDPOINT_GRPC": "the monitoring module (Jaeger on loopback)",
    "PUBLIC_TUNNEL": "the ganymede module (0)",
} | {
    f"{provider.upper()}_CLIENT_{part}": f"ganymede_oauth_client_ids / HOLISTIX_{provider.upper()}_CLIENT_SECRET"
    for provider in ("github", "gitlab", "discord", "linkedin")
    for part in ("ID", "SECRET")
}


def base_dir(settings: Settings) -> str:
    return f"/opt/holistix/{settings.environment}"


def env_file(settings: Settings) -> str:
    return f"{settings.secrets_dir}/ganymede.env"


def env_plan_file(settings: Settings) -> str:
    return f"{settings.secrets_dir}/ganymede-env.json"


def ca_bundle(settings: Settings) -> str:
    # beside the releases: the service reads it, and the secrets directory is root's alone
    return f"{base_dir(settings)}/ca-bundle.pem"


def extra_ca_file(settings: Settings) -> str:
    return f"{base_dir(settings)}/extra-ca.pem"


def gate_file(settings: Settings) -> str:
    return f"{base_dir(settings)}/release-gate.json"


def release_upload(settings: Settings) -> str:
    return f"/var/cache/holistix/{settings.environment}/release-upload.tar.gz"


def desired_version(settings: Settings) -> str:
    return settings.ganymede_rollback_to or settings.ganymede_release.version


def environment(settings: Settings) -> dict[str, str]:
    """The plain (non-secret) variables, by name."""
    domain = settings.domain
    otlp = monitoring.otlp_endpoints(settings, "loopback")
    values = {
        "FRONTEND_FQDN": domain,
        "GANYMEDE_FQDN": f"ganymede.{domain}",
        # Ganymede ignores the host; the unit pins its listener to loopback (LOOPBACK_PRELOAD)
        "GANYMEDE_SERVER_BIND": json.dumps([{"host": "127.0.0.1", "port": settings.ganymede_port}]),
        "ALLOWED_ORIGINS": json.dumps([f"https://{domain}"]),
        "DOMAIN": domain,
        "ENV_NAME": settings.environment,
        "PG_HOST": "localhost",
        "PG_PORT": "5432",
        "PG_DATABASE": settings.database_name,
        "PG_USER": settings.database_role,
        # pg_hba.conf takes the app role over TLS only; node-postgres reads PGSSLMODE and then
        # verifies the server's certificate (the host's loopback CA is in NODE_EXTRA_CA_CERTS)
        "PGSSLMODE": "verify-full",
        "MAILING_HOST": settings.smtp_host or PLACEHOLDER,
        "MAILING_PORT": str(settings.smtp_port),
        "MAILING_USER": settings.smtp_user or PLACEHOLDER,
        "NGINX_GATEWAYS_DIR": settings.nginx_gateways_dir,
        "NGINX_SSL_CERT": f"{settings.tls_dir}/fullchain.pem",
        "NGINX_SSL_KEY": f"{settings.tls_dir}/privkey.pem",
        "NGINX_LOGS_DIR": nginx.LOG_DIR,
        "NGINX_LISTEN_PORT": "443",
        # Ganymede's check wants "syntax is ok" on stdout: the helper prints nginx -t's output there
        "NGINX_TEST_COMMAND": f"{NGINX_CONTROL} test",
        "NGINX_RELOAD_COMMAND": f"{NGINX_CONTROL} reload",
        "NODE_ENV": "production",
        "NODE_EXTRA_CA_CERTS": ca_bundle(settings),
        "OTEL_SERVICE_NAME": f"ganymede-{settings.environment}",
        "OTEL_DEPLOYMENT_ENVIRONMENT": settings.environment,
        # the monitoring module's collector (Jaeger) on loopback
        "OTLP_ENDPOINT_HTTP": otlp["http"],
        "OTLP_ENDPOINT_GRPC": otlp["grpc"],
        "PUBLIC_TUNNEL": "0",
    }
    for provider in ("github", "gitlab", "discord", "linkedin"):
        values[f"{provider.upper()}_CLIENT_ID"] = settings.ganymede_oauth_client_ids.get(provider, PLACEHOLDER)
    return values | dict(settings.ganymede_environment)


def secret_files(settings: Settings) -> dict[str, tuple[str, str | None]]:
    """Variables read from files in the secrets directory: (file, placeholder when absent, or
    None when the file must exist)."""
    files = {
        "PG_PASSWORD": ("database_password", None),
        "JWT_PRIVATE_KEY": ("jwt_private_key.pem", None),
        "JWT_PUBLIC_KEY": ("jwt_public_key.pem", None),
        "SESSION_COOKIE_KEY": ("session_cookie_key", None),
        "CREDENTIALS_ENCRYPTION_KEY": ("credentials_encryption_key", None),
        "MAILING_PASSWORD": ("smtp_password", PLACEHOLDER),
    }
    for provider in ("github", "gitlab", "discord", "linkedin"):
        files[f"{provider.upper()}_CLIENT_SECRET"] = (f"{provider}_client_secret", PLACEHOLDER)
    return files


def env_plan(settings: Settings, ca_files: list[str]) -> str:
    """What holistix-ganymede-env composes the environment file and the CA bundle from (no secrets)."""
    plan = {
        "values": environment(settings),
        "secret_files": secret_files(settings),
        "ca_files": ca_files,
        "ca_bundle": ca_bundle(settings),
        "env_file": env_file(settings),
    }
    return json.dumps(plan, indent=2, sort_keys=True) + "\n"


def gate(settings: Settings) -> str:
    return (
        json.dumps(
            {
                "unit": settings.ganymede_unit,
                "port": settings.ganymede_port,
                "path": settings.ganymede_health_path,
                "timeout": settings.ganymede_health_timeout_seconds,
                # what the service reads when it starts: a change to any of them needs a restart
                "config_files": [env_file(settings), UNIT_FILE, LOOPBACK_PRELOAD, ca_bundle(settings)],
            },
            sort_keys=True,
        )
        + "\n"
    )


def nginx_control_policy(settings: Settings) -> str:
    """What holistix-nginx-control lets an organisation block contain (files/ganymede/nginx_control.py):
    the values the contract's block takes on this host."""
    policy = {
        "gateways_dir": settings.nginx_gateways_dir,
        "domain": settings.domain,
        "listen_port": 443,
        "certificate": f"{settings.tls_dir}/fullchain.pem",
        "certificate_key": f"{settings.tls_dir}/privkey.pem",
        "logs_dir": nginx.LOG_DIR,
        # gateways publish on the Docker bridge; loopback for a gateway (or stand-in) on the host
        "upstream_networks": ["127.0.0.0/8", str(settings.docker_bridge_cidr.network)],
    }
    return json.dumps(policy, indent=2, sort_keys=True) + "\n"


def ip_allow_list(settings: Settings) -> list[str]:
    """Peers the unit may exchange packets with: loopback, the host's own addresses (its
    organisation checks go through the host's nginx by name), the Docker bridge, and the
    operator's egress networks. Everything else, inbound or outbound, is dropped."""
    allowed = ["localhost", str(settings.public_ipv4), str(settings.docker_bridge_cidr.network)]
    if settings.public_ipv6:
        allowed.append(str(settings.public_ipv6))
    return allowed + [str(network) for network in settings.ganymede_egress_networks]


def render_unit(settings: Settings, postgres_unit: str) -> str:
    return render(
        "ganymede/ganymede@.service.j2",
        settings=settings,
        postgres_unit=postgres_unit,
        user=SERVICE_USER,
        base_dir="/opt/holistix/%i",
        env_file="/etc/holistix/%i/ganymede.env",
        org_data_dir="/var/lib/holistix/%i/org-data",
        gateways_dir=settings.nginx_gateways_dir,
        preload=LOOPBACK_PRELOAD,
        ip_allow=" ".join(ip_allow_list(settings)),
    )
