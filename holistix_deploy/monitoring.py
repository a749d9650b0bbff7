"""What the monitoring module runs, derived from the settings: the exporters and their loopback
listeners, Prometheus's scrape targets, the alert rules, Alertmanager's routes, the probes, the
logs store with what ships the journal and nginx's logs to it, and Jaeger, the OTLP endpoint.
Pure functions, so unit tests (promtool, amtool) can check the files without a host."""

from __future__ import annotations

from dataclasses import dataclass

from holistix_deploy import nginx
from holistix_deploy.settings import (
    COREDNS_LOOPBACK_PORTS,
    MONITORING_LOOPBACK_PORTS,
    VICTORIALOGS_TARBALLS,
    Settings,
    SettingsError,
)
from holistix_deploy.templating import render

LOOPBACK = "127.0.0.1"
CONFIG_DIR = "/etc/prometheus"
RULES_FILE = f"{CONFIG_DIR}/rules/holistix.yml"
PROMETHEUS_CONFIG = f"{CONFIG_DIR}/prometheus.yml"
ALERTMANAGER_CONFIG = f"{CONFIG_DIR}/alertmanager.yml"
BLACKBOX_CONFIG = f"{CONFIG_DIR}/blackbox.yml"
# the CA the HTTPS probes trust when monitoring_probe_ca_file is set
PROBE_CA_FILE = f"{CONFIG_DIR}/probe-ca.pem"
# Alertmanager reads the SMTP password from a file (never from its configuration)
SMTP_PASSWORD_FILE = f"{CONFIG_DIR}/alertmanager-smtp-password"
MTAIL_PROGRAM = "/etc/mtail/holistix_nginx.mtail"
# node_exporter's textfile collector directory in Debian's and Ubuntu's prometheus-node-exporter
METRICS_DIR = "/var/lib/prometheus/node-exporter"
# Prometheus's and Alertmanager's storage in Debian's packages
STORAGE_DIR = "/var/lib/prometheus/metrics2"
ALERTMANAGER_STORAGE_DIR = "/var/lib/prometheus/alertmanager"
# the logs store and its file shipper: release binaries with units of ours (no distribution has them)
BIN_DIR = "/usr/local/bin"
LOGS_STORAGE_DIR = "/var/lib/victoria-logs"
VLAGENT_STATE_DIR = "/var/lib/vlagent"
# Jaeger (v2): OTLP in (traces kept in its Badger store, logs passed on to VictoriaLogs); it
# refuses data while its heap is above this (a flood from a gateway is refused, not held). In
# MiB, not a share of the host's memory: that needs /proc/meminfo, which its sandbox hides.
JAEGER_MEMORY_LIMIT_MIB = 512
JAEGER_BINARY = f"{BIN_DIR}/jaeger"
JAEGER_CONFIG = "/etc/jaeger/config.yaml"
TRACES_STORAGE_DIR = "/var/lib/jaeger"
# the dashboards: Prometheus's console templates and their library (files/monitoring/), served
# through nginx's front door (the user and a password generated on the host)
CONSOLES_DIR = f"{CONFIG_DIR}/consoles"
CONSOLE_LIBRARIES_DIR = f"{CONFIG_DIR}/console_libraries"
DASHBOARDS_USER = "admin"
JAEGER_BASE_PATH = "/jaeger"
# systemd-journal-upload (Debian's systemd-journal-remote) ships the journal to the logs store
JOURNAL_UPLOAD_CONFIG = "/etc/systemd/journal-upload.conf.d/holistix.conf"


@dataclass(frozen=True)
class Component:
    unit: str  # the package's systemd unit (also its /etc/default file), or ours for a release binary
    package: str | None  # None: a release binary (victorialogs_release) run by a unit of ours
    port_key: str  # in MONITORING_LOOPBACK_PORTS
    job: str  # Prometheus's job name for its own metrics
    loopback_only: bool  # talks to nothing but this host's loopback (and sockets)
    writes: tuple[str, ...] = ()  # its state directories
    groups: tuple[str, ...] = ()  # supplementary groups (to read logs)
    # node_exporter reads the kernel's statistics under /proc and asks systemd over D-Bus and
    # netlink: no private user namespace, the whole of /proc
    host_view: bool = False
    # system calls beyond @system-service it cannot run without
    system_calls: tuple[str, ...] = ()

    @property
    def port(self) -> int:
        return MONITORING_LOOPBACK_PORTS[self.port_key]

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"


COMPONENTS = (
    Component("prometheus", "prometheus", "prometheus", "prometheus", True, writes=(STORAGE_DIR,)),
    # mail and webhooks leave the host
    Component(
        "prometheus-alertmanager",
        "prometheus-alertmanager",
        "alertmanager",
        "alertmanager",
        False,
        writes=(ALERTMANAGER_STORAGE_DIR,),
    ),
    Component("prometheus-node-exporter", "prometheus-node-exporter", "node_exporter", "node", True, host_view=True),
    Component("prometheus-postgres-exporter", "prometheus-postgres-exporter", "postgres_exporter", "postgres", True),
    Component("prometheus-nginx-exporter", "prometheus-nginx-exporter", "nginx_exporter", "nginx", True),
    # probes the public names, which resolve to the host's public addresses
    Component("prometheus-blackbox-exporter", "prometheus-blackbox-exporter", "blackbox_exporter", "blackbox", False),
    # nginx's logs belong to group adm
    Component("mtail", "mtail", "mtail", "mtail", True, groups=("adm",)),
    # their units' StateDirectory= is theirs to write (DynamicUser=yes: no user of their own to manage)
    # mincore: it checks whether its mmapped parts are in memory, and panics when refused
    Component("victoria-logs", None, "victorialogs", "victorialogs", True, system_calls=("mincore",)),
    Component("vlagent", None, "vlagent", "vlagent", True, groups=("adm",)),
    # takes OTLP from the gateways on the Docker bridge too: its unit allows that network alone
    Component("jaeger", None, "jaeger_metrics", "jaeger", False),
)
# {release tarball name: {member: installed path}}
RELEASE_BINARIES = {
    "victoria-logs": {"victoria-logs-prod": f"{BIN_DIR}/victoria-logs"},
    # vlogscli: the operator's query client (vlogscli -datasource.url http://127.0.0.1:9428/select/logsql/query)
    "vlutils": {"vlagent-prod": f"{BIN_DIR}/vlagent", "vlogscli-prod": f"{BIN_DIR}/vlogscli"},
}
assert set(RELEASE_BINARIES) == set(VICTORIALOGS_TARBALLS)
# the PostgreSQL role postgres_exporter logs in as (peer: the exporter's OS user), member of pg_monitor
POSTGRES_ROLE = "prometheus"


def component(unit: str) -> Component:
    return next(c for c in COMPONENTS if c.unit == unit)


def render_hardening(component: Component) -> str:
    families = ["AF_UNIX", "AF_INET", "AF_INET6"] + (["AF_NETLINK"] if component.host_view else [])
    return render(
        "monitoring/hardening.conf.j2",
        unit=component.unit,
        read_write=list(component.writes),
        private_users=not (component.host_view or component.groups),
        host_view=component.host_view,
        address_families=families,
        loopback_only=component.loopback_only,
        groups=list(component.groups),
        system_calls=list(component.system_calls),
    )


def hardening_file(component: Component) -> str:
    return f"/etc/systemd/system/{component.unit}.service.d/50-holistix-hardening.conf"


def health_url(component: Component) -> str:
    """Where a release binary's component says it is up (the packaged ones are checked by the host suite)."""
    if component.unit == "jaeger":
        return f"http://{LOOPBACK}:{MONITORING_LOOPBACK_PORTS['jaeger_health']}/status"
    return f"http://{component.address}/health"


def unit_file(component: Component) -> str:
    """Where the unit of a release binary's component is (packaged units stay under /usr/lib)."""
    return f"/etc/systemd/system/{component.unit}.service"


def otlp_endpoints(settings: Settings, where: str) -> dict[str, str]:
    """OTLP's URLs for Ganymede ("loopback") or the gateways ("bridge", the host's Docker bridge address)."""
    address = LOOPBACK if where == "loopback" else str(settings.docker_bridge_cidr.ip)
    return {
        protocol: f"http://{address}:{MONITORING_LOOPBACK_PORTS[f'otlp_{protocol}']}" for protocol in ("http", "grpc")
    }


def listen_addresses(component: Component, settings: Settings) -> list[str]:
    """Every address:port the component listens on."""
    if component.unit != "jaeger":
        return [component.address]
    loopback = [
        f"{LOOPBACK}:{MONITORING_LOOPBACK_PORTS[key]}"
        for key in ("jaeger_ui", "jaeger_query_grpc", "jaeger_metrics", "jaeger_health", "otlp_grpc", "otlp_http")
    ]
    bridge = str(settings.docker_bridge_cidr.ip)
    return loopback + [f"{bridge}:{MONITORING_LOOPBACK_PORTS[key]}" for key in ("otlp_grpc", "otlp_http")]


def jaeger_download(settings: Settings, arch: str, host_name: str) -> dict:
    """{url, sha256, binaries} of Jaeger's release tarball; a missing checksum stops the run."""
    version = settings.jaeger_version
    tarball = f"jaeger-{version}-linux-{arch}.tar.gz"
    return {
        "url": settings.jaeger_download_url.format(version=version, arch=arch),
        "sha256": settings.architecture_checksum(
            "jaeger_sha256",
            arch,
            host_name,
            f"{tarball}'s line in jaeger-{version}.sha256sum.txt on Jaeger's release page",
        ),
        "binaries": {f"jaeger-{version}-linux-{arch}/jaeger": JAEGER_BINARY},
    }


def render_jaeger_config(settings: Settings) -> str:
    ports = MONITORING_LOOPBACK_PORTS
    return render(
        "monitoring/jaeger.yaml.j2",
        base_path=JAEGER_BASE_PATH,
        receivers={"loopback": LOOPBACK, "bridge": str(settings.docker_bridge_cidr.ip)},
        ports=ports,
        loopback=LOOPBACK,
        storage_dir=TRACES_STORAGE_DIR,
        retention_hours=settings.traces_retention_hours,
        logs_store=component("victoria-logs").address,
        memory_limit_mib=JAEGER_MEMORY_LIMIT_MIB,
    )


def victorialogs_downloads(settings: Settings, arch: str, host_name: str) -> list[dict]:
    """[{tarball, url, sha256, binaries}] for this architecture; a missing checksum stops the run,
    naming the setting and the tarball."""
    version = settings.victorialogs_version
    releases, missing = [], []
    for name, binaries in RELEASE_BINARIES.items():
        tarball = f"{name}-linux-{arch}-v{version}.tar.gz"
        if tarball not in settings.victorialogs_sha256:
            missing.append(tarball)
            continue
        url = settings.victorialogs_download_url.format(name=name, version=version, arch=arch)
        releases.append(
            {"tarball": tarball, "url": url, "sha256": settings.victorialogs_sha256[tarball], "binaries": binaries}
        )
    if missing:
        raise SettingsError(
            host_name,
            [
                f"victorialogs_sha256 = {dict(settings.victorialogs_sha256)!r}: has no checksum for {', '.join(missing)}; "
                f"copy it from the matching _checksums.txt on the VictoriaLogs v{version} release page"
            ],
        )
    return releases


def render_units(settings: Settings) -> dict[str, str]:
    """{unit file: content} of the release binaries' components: the logs store, the nginx log
    shipper, Jaeger."""
    size_bytes = size_in_bytes(settings.logs_retention_size)
    store, shipper = component("victoria-logs"), component("vlagent")
    return {
        unit_file(store): render(
            "monitoring/victoria-logs.service.j2",
            binary=RELEASE_BINARIES["victoria-logs"]["victoria-logs-prod"],
            arguments=[
                f"-httpListenAddr={store.address}",
                f"-storageDataPath={LOGS_STORAGE_DIR}",
                f"-retentionPeriod={settings.logs_retention_days}d",
                f"-retention.maxDiskSpaceUsageBytes={size_bytes}",
            ],
            state_directory=LOGS_STORAGE_DIR.removeprefix("/var/lib/"),
        ),
        unit_file(shipper): render(
            "monitoring/vlagent.service.j2",
            binary=RELEASE_BINARIES["vlutils"]["vlagent-prod"],
            arguments=[
                f"-httpListenAddr={shipper.address}",
                f"-remoteWrite.url=http://{store.address}/insert/native",
                f"-tmpDataPath={VLAGENT_STATE_DIR}/remotewrite",
                # every nginx log: the server blocks', the organisation blocks' and nginx's own
                f"-fileCollector.glob={nginx.LOG_DIR}/*.log",
                f"-fileCollector.checkpointsPath={VLAGENT_STATE_DIR}/file-checkpoints.json",
            ],
            state_directory=VLAGENT_STATE_DIR.removeprefix("/var/lib/"),
            store_unit=store.unit,
        ),
        unit_file(component("jaeger")): render(
            "monitoring/jaeger.service.j2",
            binary=JAEGER_BINARY,
            config=JAEGER_CONFIG,
            state_directory=TRACES_STORAGE_DIR.removeprefix("/var/lib/"),
            store_unit=store.unit,
            bridge_network=str(settings.docker_bridge_cidr.network),
        ),
    }


def render_journal_upload(settings: Settings) -> dict[str, str]:
    """{path: content}: where systemd-journal-upload sends the journal, and how its unit restarts."""
    store = component("victoria-logs")
    return {
        JOURNAL_UPLOAD_CONFIG: f"# {MANAGED}\n[Upload]\nURL=http://{store.address}/insert/journald\n",
        JOURNAL_UPLOAD_DROP_IN: render("monitoring/journal-upload.conf.j2", store_unit=store.unit),
    }


JOURNAL_UPLOAD_DROP_IN = "/etc/systemd/system/systemd-journal-upload.service.d/50-holistix.conf"


def size_in_bytes(size: str) -> int:
    """A settings size (K, M or G, binary) in bytes."""
    return int(size[:-1]) * 1024 ** ("KMG".index(size[-1]) + 1)


def probe_targets(settings: Settings) -> dict[str, list[str]]:
    """{job: targets} of the blackbox probes: the frontend must answer 2xx, Ganymede anything
    below 500 (its health gate's rule), CoreDNS the domain's SOA."""
    return {
        "https_frontend": [f"https://{settings.domain}/"],
        "https_api": [f"https://ganymede.{settings.domain}{settings.ganymede_health_path}"],
        "dns": [f"{LOOPBACK}:53"],
    }


def unit_arguments(settings: Settings) -> dict[str, str]:
    """The command line each package's unit runs ($ARGS in /etc/default/<unit>): loopback only."""
    size = settings.monitoring_retention_size + "B"  # Prometheus writes sizes as 4GB

    def listen(unit: str) -> str:
        return f"--web.listen-address={component(unit).address}"

    return {
        "prometheus": " ".join(
            [
                f"--config.file={PROMETHEUS_CONFIG}",
                f"--storage.tsdb.path={STORAGE_DIR}/",
                f"--storage.tsdb.retention.time={settings.monitoring_retention_days}d",
                f"--storage.tsdb.retention.size={size}",
                listen("prometheus"),
                f"--web.console.templates={CONSOLES_DIR}",
                f"--web.console.libraries={CONSOLE_LIBRARIES_DIR}",
            ]
        ),
        "prometheus-alertmanager": " ".join(
            [
                f"--config.file={ALERTMANAGER_CONFIG}",
                f"--storage.path={ALERTMANAGER_STORAGE_DIR}/",
                listen("prometheus-alertmanager"),
                # one Alertmanager: no gossip listener (it would listen on every address)
                "--cluster.listen-address=",
            ]
        ),
        "prometheus-node-exporter": " ".join(
            [listen("prometheus-node-exporter"), f"--collector.textfile.directory={METRICS_DIR}", "--collector.systemd"]
        ),
        "prometheus-postgres-exporter": listen("prometheus-postgres-exporter"),
        "prometheus-nginx-exporter": " ".join(
            [listen("prometheus-nginx-exporter"), f"--nginx.scrape-uri=http://{nginx.STATUS_ADDRESS}/stub_status"]
        ),
        "prometheus-blackbox-exporter": " ".join(
            [f"--config.file={BLACKBOX_CONFIG}", listen("prometheus-blackbox-exporter")]
        ),
    }


def unit_environment(settings: Settings) -> dict[str, str]:
    """/etc/default/<unit> of every component: what its packaged unit reads."""
    files = {unit: f'ARGS="{arguments}"\n' for unit, arguments in unit_arguments(settings).items()}
    # peer authentication over the socket: no password anywhere
    files["prometheus-postgres-exporter"] = (
        f"DATA_SOURCE_NAME='user={POSTGRES_ROLE} host=/run/postgresql dbname=postgres sslmode=disable'\n"
        + files["prometheus-postgres-exporter"]
    )
    # the HTTPS server blocks' logs, the organisation blocks' (contract 1.5) and nginx's main one;
    # not the HTTP redirects'
    logs = ",".join(
        [nginx.access_log(settings, server) for server in (None, "frontend", "ganymede")]
        + [f"{nginx.LOG_DIR}/gateway-*-access.log"]
    )
    files["mtail"] = f"HOST={LOOPBACK}\nPORT={component('mtail').port}\nLOGS={logs}\nEXTRA_ARGS=\n"
    return {unit: f"# {MANAGED}\n{text}" for unit, text in files.items()}


MANAGED = "Managed by holistix-deploy (monitoring module): local changes are overwritten."


def render_prometheus_config(settings: Settings) -> str:
    coredns = f"{LOOPBACK}:{COREDNS_LOOPBACK_PORTS['metrics']}"
    return render(
        "monitoring/prometheus.yml.j2",
        settings=settings,
        interval=f"{settings.monitoring_scrape_interval_seconds}s",
        rules_file=RULES_FILE,
        alertmanager=component("prometheus-alertmanager").address,
        jobs={c.job: c.address for c in COMPONENTS} | {"coredns": coredns},
        blackbox=component("prometheus-blackbox-exporter").address,
        probes=probe_targets(settings),
    )


def render_rules(settings: Settings) -> str:
    return render(
        "monitoring/holistix.rules.yml.j2",
        settings=settings,
        probe_jobs=list(probe_targets(settings)),
        metrics_dir=METRICS_DIR,
        nginx_log_dir=nginx.LOG_DIR,
    )


def render_alertmanager_config(settings: Settings) -> str:
    return render(
        "monitoring/alertmanager.yml.j2",
        settings=settings,
        email_from=settings.alert_email_from or f"alerts@{settings.domain}",
        password_file=SMTP_PASSWORD_FILE,
    )


def render_blackbox_config(settings: Settings) -> str:
    return render(
        "monitoring/blackbox.yml.j2",
        settings=settings,
        ca_file=PROBE_CA_FILE if settings.monitoring_probe_ca_file else None,
        # Ganymede is healthy when it answers below 500 (ganymede_health_path's rule)
        api_codes=list(range(200, 500)),
    )


def render_mtail_program(settings: Settings) -> str:
    return render("monitoring/holistix_nginx.mtail.j2", domain_pattern=settings.domain.replace(".", r"\."))


def dashboards_password_file(settings: Settings) -> str:
    """The front door's generated password (root 0600): what an operator types as DASHBOARDS_USER."""
    return f"{settings.secrets_dir}/dashboards_password"


def dashboards_htpasswd(settings: Settings) -> str:
    """nginx's user file for the front door: the password's SHA-512 crypt hash, for www-data to read."""
    return f"{nginx.environment_dir(settings)}/dashboards.htpasswd"


def dashboards_site(settings: Settings) -> str:
    return f"{nginx.servers_dir(settings)}/dashboards.conf"


def dashboards_public_name(settings: Settings) -> str:
    return f"{settings.dashboards_subdomain}.{settings.domain}"


def render_dashboards_site(settings: Settings, version: tuple[int, int]) -> str:
    """nginx's server blocks of the dashboards' front door: on loopback always, at
    dashboards_subdomain.DOMAIN (TLS) when dashboards_public is set."""
    return render(
        "monitoring/dashboards.nginx.conf.j2",
        user=DASHBOARDS_USER,
        password_file=dashboards_password_file(settings),
        htpasswd=dashboards_htpasswd(settings),
        loopback_address=f"{LOOPBACK}:{MONITORING_LOOPBACK_PORTS['dashboards']}",
        public=settings.dashboards_public,
        public_name=dashboards_public_name(settings),
        upstreams={
            "prometheus": component("prometheus").address,
            "logs": component("victoria-logs").address,
            "traces": f"{LOOPBACK}:{MONITORING_LOOPBACK_PORTS['jaeger_ui']}",
        },
        access_log=f"{nginx.LOG_DIR}/{settings.environment}-dashboards.access.log",
        tls_dir=settings.tls_dir,
        headers=DASHBOARDS_HEADERS,
        burst=nginx.api_burst(settings),
        http2_directive=nginx.http2_directive(version),
    )


# The public front door's headers: its pages are Prometheus's and the UIs' own (inline scripts),
# so the policy only forbids framing; nothing of it is for search engines or other sites.
DASHBOARDS_HEADERS = {
    "Strict-Transport-Security": nginx.HSTS,
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
