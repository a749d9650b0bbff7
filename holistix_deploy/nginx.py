"""What the nginx module serves, derived from the settings: nginx.conf, the environment's site,
the security headers. Pure functions, so unit tests can read the policy without a host."""

from __future__ import annotations

from holistix_deploy import tls
from holistix_deploy.settings import MONITORING_LOOPBACK_PORTS, Settings
from holistix_deploy.templating import render

CONFIG_DIR = "/etc/nginx"
MAIN_CONFIG = f"{CONFIG_DIR}/nginx.conf"
LOG_DIR = "/var/log/nginx"
# distribution files our nginx.conf never includes; removed so no one believes they are live
DISTRIBUTION_SITE = f"{CONFIG_DIR}/sites-enabled/default"
# the host-made CA that signs the placeholder certificate (verify it with holistix-ca.crt there)
PLACEHOLDER_CA_DIR = "/etc/ssl/holistix/placeholder-ca"
# stub_status, for the monitoring module's nginx exporter: loopback only
STATUS_ADDRESS = f"127.0.0.1:{MONITORING_LOOPBACK_PORTS['nginx_status']}"
# the candidate tree `nginx -t` checks before anything live changes (tmpfs, root only)
CANDIDATE_DIR = "/run/holistix/nginx-candidate"
# HSTS: two years, every subdomain (OWASP secure headers project)
HSTS = "max-age=63072000; includeSubDomains"
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
)
# what the frontend may load in one burst: a Vite build is a few hundred hashed files at most
STATIC_RATE_PER_SECOND, STATIC_BURST = 200, 1000


def site_file(settings: Settings) -> str:
    return f"{CONFIG_DIR}/holistix/{settings.environment}.conf"


def environment_dir(settings: Settings) -> str:
    """The environment's own files beside its site: header snippets, other modules' blocks."""
    return f"{CONFIG_DIR}/holistix/{settings.environment}"


def servers_dir(settings: Settings) -> str:
    """Where other modules put server blocks of their own (the monitoring module's dashboards):
    nginx.conf includes every *.conf there, so a re-run of this module keeps them."""
    return f"{environment_dir(settings)}/servers"


def api_burst(settings: Settings) -> int:
    """The burst the API's rate limit lets through (Ganymede's block, the public dashboards)."""
    return settings.nginx_api_rate_per_second * 3


def http2_directive(version: tuple[int, int]) -> bool:
    """nginx 1.25.1 moved HTTP/2 from a listen parameter to its own directive."""
    return version >= (1, 25)


def access_log(settings: Settings, server: str | None = None) -> str:
    """The access log of one of the site's server blocks ("redirect", "frontend", "ganymede"); with
    none, nginx's main one (the organisation blocks Ganymede writes log there)."""
    return f"{LOG_DIR}/{settings.environment}-{server}.access.log" if server else f"{LOG_DIR}/access.log"


def headers_file(settings: Settings, server: str) -> str:
    return f"{environment_dir(settings)}/{server}-headers.conf"


def relative(path: str) -> str:
    """A path under /etc/nginx as nginx.conf includes it: relative, so that a copy of the whole
    tree can be checked by `nginx -t -c <copy>/nginx.conf` before it goes live."""
    return path.removeprefix(CONFIG_DIR + "/")


def content_security_policy(settings: Settings, frame_ancestors: str) -> str:
    """A policy the app lives with: it calls https://ganymede.DOMAIN, opens wss://org-<uuid>.DOMAIN
    and frames https://uc-<id>.org-<uuid>.DOMAIN (platform contract 4.5)."""
    platform = f"https://*.{settings.domain} wss://*.{settings.domain}"
    connect = " ".join(["'self'", platform, *settings.nginx_csp_connect_extra])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' data: blob: https://*.{settings.domain}",
            "font-src 'self' data:",
            f"connect-src {connect}",
            f"frame-src https://*.{settings.domain}",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action 'self' https://*.{settings.domain}",
            f"frame-ancestors {frame_ancestors}",
        ]
    )


def security_headers(settings: Settings, server: str) -> dict[str, str]:
    """Headers of the frontend ("frontend") and the API ("ganymede") server blocks, per the
    OWASP secure headers project: no X-XSS-Protection, no CORS (the apps do CORS)."""
    frame_ancestors, frame_options = ("'self'", "SAMEORIGIN") if server == "frontend" else ("'none'", "DENY")
    return {
        "Strict-Transport-Security": HSTS,
        "Content-Security-Policy": content_security_policy(settings, frame_ancestors),
        "X-Frame-Options": frame_options,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": PERMISSIONS_POLICY,
        "Cross-Origin-Opener-Policy": "same-origin",
    }


# Inherited by the organisation blocks Ganymede writes (they set no headers of their own): never
# X-Frame-Options or a CSP there, the frontend frames those hosts.
INHERITED_HEADERS = {
    "Strict-Transport-Security": HSTS,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def auth_location_regex(settings: Settings) -> str:
    prefixes = "|".join(path.lstrip("/").replace(".", "\\.") for path in settings.nginx_auth_paths)
    return f"^/({prefixes})(/|$)"


def render_main_config(settings: Settings, version: tuple[int, int]) -> str:
    return render(
        "nginx/nginx.conf.j2",
        ciphers=tls.MOZILLA_INTERMEDIATE_CIPHERS,
        curves=tls.MOZILLA_INTERMEDIATE_CURVES,
        inherited_headers=INHERITED_HEADERS,
        rate_exempt=["127.0.0.0/8", "::1", str(settings.docker_bridge_cidr.network)],
        auth_rate=settings.nginx_auth_rate_per_minute,
        api_rate=settings.nginx_api_rate_per_second,
        static_rate=STATIC_RATE_PER_SECOND,
        site=relative(site_file(settings)),
        gateways=relative(settings.nginx_gateways_dir),
        servers=relative(servers_dir(settings)),
        log_dir=LOG_DIR,
        version=version,
        status_address=STATUS_ADDRESS,
    )


def render_site(settings: Settings, version: tuple[int, int]) -> str:
    return render(
        "nginx/site.conf.j2",
        domain=settings.domain,
        environment=settings.environment,
        tls_dir=settings.tls_dir,
        frontend_root=settings.frontend_root,
        ganymede_port=settings.ganymede_port,
        body_size_mb=settings.nginx_client_max_body_size_mb,
        auth_regex=auth_location_regex(settings),
        auth_burst=max(1, settings.nginx_auth_rate_per_minute // 3),
        api_burst=api_burst(settings),
        static_burst=STATIC_BURST,
        frontend_headers=relative(headers_file(settings, "frontend")),
        ganymede_headers=relative(headers_file(settings, "ganymede")),
        log_dir=LOG_DIR,
        access_logs={server: access_log(settings, server) for server in ("redirect", "frontend", "ganymede")},
        http2_directive=http2_directive(version),
    )


def render_headers(settings: Settings, server: str) -> str:
    return render("nginx/headers.conf.j2", server=server, headers=security_headers(settings, server))
