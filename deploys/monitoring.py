"""monitoring: metrics, alerts, logs and traces for the whole host.

Manages: Prometheus (retention from settings; the alert rules, checked by promtool), Alertmanager
(mail through smtp_host and/or a webhook; checked by amtool; no cluster listener), the node
exporter (with the systemd collector and the textfile directory the backups and the gateway pool
write to), the PostgreSQL exporter (peer login as a pg_monitor role), the nginx exporter (nginx's
stub_status on loopback), the blackbox exporter (HTTPS probes of DOMAIN and ganymede.DOMAIN with
their certificates' expiry, a DNS probe of CoreDNS), mtail (Ganymede's responses by status from
nginx's access log) and CoreDNS's own metrics, all from the distribution's packages; VictoriaLogs
(the logs store, retention from settings) with vlagent shipping nginx's logs to it, from
VictoriaLogs's release tarballs (pinned, sha256-checked), and systemd-journal-upload shipping the
journal; Jaeger (release tarball, pinned, sha256-checked), the OTLP endpoint of Ganymede and the
gateways, keeping traces and passing OTLP logs on to VictoriaLogs; dashboards for the host, nginx,
PostgreSQL and the gateway pool (Prometheus's console templates), served with Prometheus's UI, the
logs' and the traces' views by an nginx front door behind a password generated on the host, on
127.0.0.1:3000 and, with dashboards_public, at https://dashboards_subdomain.DOMAIN. Every listener
is on 127.0.0.1 (Jaeger's OTLP receivers also on the Docker bridge's address); every unit gets a
sandboxing drop-in. Configuration is checked by its own tool before it replaces the live file,
then the daemon reloads; a rejected file fails the run and the old one keeps serving.

Reads: domain, environment, docker_bridge_cidr, ganymede_health_path, smtp_*, monitoring_*, logs_*,
victorialogs_*, traces_*, jaeger_*, alert_*, dashboards_*, tls_dir, secrets_dir, nginx_api_rate_per_second.
Needs: postgres, nginx, coredns (it scrapes them); Docker (gateway_pool: Jaeger listens on its
bridge's address); the SMTP password (HOLISTIX_SMTP_PASSWORD) when alert_email_to is set.

    pyinfra inventories/prod.py deploys/monitoring.py
"""

from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.facts.server import Arch
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from holistix_deploy import dns, monitoring, nginx
from holistix_deploy.facts import AptPackageAvailable, DaemonBehind, NginxVersion, PasswordHashMatches
from holistix_deploy.operations import (
    daemon_answers,
    generated_secret,
    jaeger_release,
    nginx_config,
    operator_secret,
    postgres_monitoring_role,
    validated_file,
    victorialogs_release,
)
from holistix_deploy.secrets import read_operator_secrets
from holistix_deploy.settings import SettingsError, load_settings
from holistix_deploy.templating import ROOT

settings = load_settings(host)
smtp_password = read_operator_secrets().get("smtp_password")
if settings.alert_email_to and not smtp_password and not host.get_fact(File, path=monitoring.SMTP_PASSWORD_FILE):
    raise SettingsError(
        host.name,
        [
            f"HOLISTIX_SMTP_PASSWORD: required by alert_email_to = {settings.alert_email_to!r} (Alertmanager logs "
            f"in to {settings.smtp_host} as {settings.smtp_user}); not set and not stored on the host by an earlier run"
        ],
    )
arch = dns.architecture(host.get_fact(Arch))
releases = monitoring.victorialogs_downloads(settings, arch, host.name)
jaeger = monitoring.jaeger_download(settings, arch, host.name)

# -- before the packages: their units start at install, and must start on loopback, confined ----------
# 0640: the postgres exporter's package makes its file so (a DSN may hold a password); a re-run
# must not undo what its postinst did, and none of these files is for anyone but systemd
defaults = {
    unit: files.put(
        name=f"Ensure /etc/default/{unit} keeps {unit} on loopback",
        src=StringIO(text),
        dest=f"/etc/default/{unit}",
        mode="0640",
    )
    for unit, text in monitoring.unit_environment(settings).items()
}
hardening = {}
for component in monitoring.COMPONENTS:
    drop_in = monitoring.hardening_file(component)
    files.directory(name=f"Ensure {Path(drop_in).parent} exists", path=str(Path(drop_in).parent), mode="0755")
    hardening[component.unit] = files.put(
        name=f"Ensure {component.unit} is sandboxed ({Path(drop_in).name})",
        src=StringIO(monitoring.render_hardening(component)),
        dest=drop_in,
        mode="0644",
    )
units = {
    path: files.put(name=f"Ensure {path} is in place", src=StringIO(text), dest=path, mode="0644")
    for path, text in monitoring.render_units(settings).items()
}
journal_upload = {}
for path, text in monitoring.render_journal_upload(settings).items():
    files.directory(name=f"Ensure {Path(path).parent} exists", path=str(Path(path).parent), mode="0755")
    journal_upload[path] = files.put(
        name=f"Ensure {path} sends the journal to VictoriaLogs", src=StringIO(text), dest=path, mode="0644"
    )
systemd.daemon_reload(
    name="Reload systemd's units",
    _if=any_changed(*hardening.values(), *units.values(), *journal_upload.values()),
)

# Debian 13 ships promtool apart from prometheus; elsewhere prometheus has it
packages = [component.package for component in monitoring.COMPONENTS if component.package]
packages += ["dbus", "systemd-journal-remote"]
packages += ["promtool"] if host.get_fact(AptPackageAvailable, package="promtool") else []
apt.packages(
    name="Ensure Prometheus, Alertmanager, the exporters, mtail and the journal uploader are installed",
    packages=packages,
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)
for release in releases:
    victorialogs_release(
        name=f"Ensure {release['tarball']} is installed ({', '.join(release['binaries'].values())}), checked against its sha256",
        version=settings.victorialogs_version,
        url=release["url"],
        sha256=release["sha256"],
        binaries=release["binaries"],
    )
jaeger_release(
    name=f"Ensure Jaeger {settings.jaeger_version} ({arch}) is installed, checked against its sha256",
    version=settings.jaeger_version,
    **jaeger,
    # a new release must accept the configuration that is live now, or it is not installed
    check_command=f"if [ -f {monitoring.JAEGER_CONFIG} ]; then {{binary}} validate"
    f" --config=file:{monitoring.JAEGER_CONFIG} >/dev/null; fi",
)

# -- what the exporters read --------------------------------------------------------------------------
postgres_monitoring_role(
    name=f"Ensure role {monitoring.POSTGRES_ROLE} reads PostgreSQL's statistics (pg_monitor) and nothing more",
    role=monitoring.POSTGRES_ROLE,
)
files.directory(name=f"Ensure {monitoring.METRICS_DIR} exists", path=monitoring.METRICS_DIR, mode="0755")
files.directory(
    name=f"Ensure {Path(monitoring.RULES_FILE).parent} exists", path=str(Path(monitoring.RULES_FILE).parent)
)
if settings.monitoring_probe_ca_file:
    files.put(
        name=f"Ensure {monitoring.PROBE_CA_FILE} holds the CA the HTTPS probes trust",
        src=settings.monitoring_probe_ca_file,
        dest=monitoring.PROBE_CA_FILE,
        mode="0644",
    )
else:
    files.file(name=f"Ensure {monitoring.PROBE_CA_FILE} is not kept", path=monitoring.PROBE_CA_FILE, present=False)
if settings.alert_email_to and smtp_password:
    operator_secret(
        name="Ensure Alertmanager's SMTP password from HOLISTIX_SMTP_PASSWORD is stored",
        path=monitoring.SMTP_PASSWORD_FILE,
        value=smtp_password,
        mode="0640",
        group="prometheus",
        newline=False,
    )


# -- configuration, each checked by its own tool before the live file changes ---------------------------
def _checked(path: str, content: str, validate: str, what: str, **attributes):
    directory, name = path.rsplit("/", 1)
    return validated_file(
        name=f"Ensure {path} holds {what} (checked first)",
        dest=path,
        content=content,
        validate=validate,
        candidate=f"{directory}/.{name}.candidate",
        **attributes,
    )


_checked(
    monitoring.RULES_FILE,
    monitoring.render_rules(settings),
    "promtool check rules --lint=all --lint-fatal {path} >/dev/null",
    "the alert rules",
)
_checked(
    monitoring.PROMETHEUS_CONFIG,
    monitoring.render_prometheus_config(settings),
    "promtool check config {path} >/dev/null",
    "the scrape targets",
)
_checked(
    monitoring.ALERTMANAGER_CONFIG,
    monitoring.render_alertmanager_config(settings),
    "amtool check-config {path} >/dev/null",
    "the alert routes",
    # the webhook URL may carry a token: Alertmanager's group only
    mode="0640",
    group="prometheus",
)
if not settings.alert_email_to:
    # after the routes stopped naming it
    files.file(
        name=f"Ensure {monitoring.SMTP_PASSWORD_FILE} is not kept (no alert mail)",
        path=monitoring.SMTP_PASSWORD_FILE,
        present=False,
    )
_checked(
    monitoring.BLACKBOX_CONFIG,
    monitoring.render_blackbox_config(settings),
    "prometheus-blackbox-exporter --config.check --config.file={path} 2>/dev/null",
    "the probes",
)
files.directory(
    name=f"Ensure {Path(monitoring.JAEGER_CONFIG).parent} exists", path=str(Path(monitoring.JAEGER_CONFIG).parent)
)
_checked(
    monitoring.JAEGER_CONFIG,
    monitoring.render_jaeger_config(settings),
    # its reasons go to stderr, which pyinfra shows when the run fails
    f"{monitoring.JAEGER_BINARY} validate --config=file:{{path}} >/dev/null",
    "the OTLP receivers and the traces' store",
)
# mtail compiles every program of a directory: the candidate is compiled alone in a scratch one
_checked(
    monitoring.MTAIL_PROGRAM,
    monitoring.render_mtail_program(settings),
    # (it still opens its HTTP port: any free one)
    "( d=$(mktemp -d) && cp {path} $d/check.mtail"
    " && mtail --compile_only --address 127.0.0.1 --port 0 --progs $d 2>/dev/null; rc=$?; rm -rf $d; exit $rc )",
    "the access log's response counters",
)

# the daemons that reload their configuration in place, and the metric that says they did
reloads = {
    "prometheus": (
        [monitoring.RULES_FILE, monitoring.PROMETHEUS_CONFIG],
        "prometheus_config_last_reload_success_timestamp_seconds",
    ),
    "prometheus-alertmanager": (
        [monitoring.ALERTMANAGER_CONFIG],
        "alertmanager_config_last_reload_success_timestamp_seconds",
    ),
    "prometheus-blackbox-exporter": (
        [monitoring.BLACKBOX_CONFIG],
        "blackbox_exporter_config_last_reload_success_timestamp_seconds",
    ),
}
# a release binary's component restarts for its unit, its binaries, its configuration
release_files = {
    "victoria-logs": [monitoring.RELEASE_BINARIES["victoria-logs"]["victoria-logs-prod"]],
    "vlagent": [monitoring.RELEASE_BINARIES["vlutils"]["vlagent-prod"]],
    "jaeger": [monitoring.JAEGER_BINARY, monitoring.JAEGER_CONFIG],
}
for component in monitoring.COMPONENTS:
    unit = component.unit
    reload_paths, reload_metric = reloads.get(unit, ([], None))
    if component.package:
        # mtail starts its counters again either way: a new program restarts it
        restart_paths = [f"/etc/default/{unit}", *([monitoring.MTAIL_PROGRAM] if unit == "mtail" else [])]
    else:
        restart_paths = [monitoring.unit_file(component), *release_files[unit]]
    behind = {
        "unit": unit,
        "restart_paths": [*restart_paths, monitoring.hardening_file(component)],
        "reload_paths": reload_paths,
        "reload_metric": reload_metric,
        "metrics_url": f"http://{component.address}/metrics",
    }
    systemd.service(name=f"Ensure {unit} runs and starts at boot", service=unit, running=True, enabled=True)
    server.shell(
        name=f"Ensure {unit} runs its current command line and sandbox",
        commands=[f"systemctl restart {unit}"],
        _if=lambda behind=behind: host.get_fact(DaemonBehind, **behind) == "restart",
    )
    if reload_metric:
        server.shell(
            name=f"Ensure {unit} serves its current configuration",
            commands=[f"systemctl reload {unit}"],
            _if=lambda behind=behind: host.get_fact(DaemonBehind, **behind) == "reload",
        )
    if not component.package:
        daemon_answers(
            name=f"Ensure {unit} is up (its health endpoint answers)",
            unit=unit,
            url=monitoring.health_url(component),
        )

# the journal goes once the store runs (it uploads from where it stopped: its cursor is kept)
systemd.service(
    name="Ensure systemd-journal-upload ships the journal and starts at boot",
    service="systemd-journal-upload",
    running=True,
    enabled=True,
)
server.shell(
    name="Ensure systemd-journal-upload runs its current configuration",
    commands=["systemctl restart systemd-journal-upload"],
    _if=lambda: (
        host.get_fact(DaemonBehind, unit="systemd-journal-upload", restart_paths=list(journal_upload)) == "restart"
    ),
)


# -- the dashboards: Prometheus's consoles, behind nginx's front door with a generated password ----------
# (Prometheus reads them on every request: a new one is live at once)
for directory, source in (
    (monitoring.CONSOLE_LIBRARIES_DIR, "console_libraries"),
    (monitoring.CONSOLES_DIR, "consoles"),
):
    for page in sorted((ROOT / "files" / "monitoring" / source).iterdir()):
        files.put(
            name=f"Ensure {directory}/{page.name} is in place",
            src=str(page),
            dest=f"{directory}/{page.name}",
            mode="0644",
        )
password_file = monitoring.dashboards_password_file(settings)
htpasswd = monitoring.dashboards_htpasswd(settings)
generated_secret(
    name=f"Ensure the generated secret {password_file.rsplit('/', 1)[1]} exists",
    path=password_file,
    command="openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | head -c 32",
    directory=settings.secrets_dir,
)
server.shell(
    name=f"Ensure {htpasswd} holds the hash of the dashboards' password (made on the host)",
    # the password goes to openssl on stdin, never on a command line
    commands=[
        f"umask 027 && {{ printf '%s:' {monitoring.DASHBOARDS_USER}; openssl passwd -6 -stdin < {password_file}; }}"
        f" > {htpasswd}.new && chgrp www-data {htpasswd}.new && mv -f {htpasswd}.new {htpasswd}"
    ],
    _if=lambda: host.get_fact(PasswordHashMatches, password_file=password_file, user_file=htpasswd) != "yes",
)
files.file(
    name=f"Ensure {htpasswd} is for nginx's workers to read and no one else",
    path=htpasswd,
    user="root",
    group="www-data",
    mode="0640",
)
nginx_version = host.get_fact(NginxVersion)
if nginx_version is None:
    raise RuntimeError("no nginx version known for this host: run deploys/nginx.py first (the front door is nginx)")
nginx_config(
    name="Ensure nginx serves the dashboards' front door (nginx -t on the complete new configuration first)",
    files={monitoring.dashboards_site(settings): monitoring.render_dashboards_site(settings, nginx_version)},
    candidate_dir=nginx.CANDIDATE_DIR,
)
