"""ganymede: the platform's API from a release tarball, as a sandboxed systemd service, switched
to a new release only when the new one answers.

Manages: Node.js (NodeSource's repository with its key pinned, or the distribution's); the
system user ganymede; releases under /opt/holistix/<env>/releases/<version> (checked against
their sha256 before unpacking, root-owned, read-only to the service), the `current` link and
the last ganymede_releases_kept releases; the release's database/ applied with the postgres
module's migration helper before the switch; the environment file /etc/holistix/<env>/
ganymede.env (0600, composed on the host from the secrets there: pyinfra never sees one);
the unit ganymede@<env> (sandboxed, listening on loopback only, PostgreSQL first); the
organisation data directory /var/lib/holistix/<env>/org-data (seen by Ganymede at the path it
hard-codes, /root/.local-dev/<env>/org-data); the directory of organisation blocks, writable by
Ganymede; holistix-nginx-control.socket, through which Ganymede tests and reloads nginx
without sudo.

Reads: domain, environment, public_ipv4/6, docker_bridge_cidr, ganymede_*, nodejs_*, smtp_*.
Restarts ganymede@<env> on a new release or a changed environment or unit, always through
the health gate (a new release that does not answer is rolled back and the run fails).

    pyinfra inventories/prod.py deploys/ganymede.py
    pyinfra inventories/prod.py deploys/ganymede.py --data ganymede_rollback_to=1.4.1
"""

import re
from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from holistix_deploy import ganymede
from holistix_deploy.facts import HelperCheck, PlatformReleases, PostgresMajorVersion
from holistix_deploy.operations import (
    current_release,
    database_migrations,
    install_helpers,
    platform_release,
    release_configuration_applied,
    releases_pruned,
)
from holistix_deploy.settings import SettingsError, load_settings
from holistix_deploy.templating import ROOT, render

settings = load_settings(host)
if settings.missing_for("ganymede"):
    raise SettingsError(host.name, settings.missing_for("ganymede"))
postgres_version = host.get_fact(PostgresMajorVersion)
if postgres_version is None:
    raise RuntimeError("no PostgreSQL version known for this host: run deploys/postgres.py first")
environment, release = settings.environment, settings.ganymede_release
base_dir, user = ganymede.base_dir(settings), ganymede.SERVICE_USER

# -- the release first: verified (sha256 before unpacking) and unpacked beside the running one, so
# a wrong checksum stops the run before anything the service uses has changed ---------------------
install_helpers({ganymede.RELEASE_HELPER: "ganymede/holistix_release.py"})
version_dir = f"{base_dir}/releases/{release.version}"


def _installed_versions() -> dict:
    state = host.get_fact(PlatformReleases, helper=ganymede.RELEASE_HELPER, environment=environment)
    return (state or {}).get("releases", {})


upload = None
if not re.match(r"https?://", release.source):
    # a release on the operator's machine (checked against its sha256 with the settings)
    upload = ganymede.release_upload(settings)
    for path in ("/var/cache/holistix", f"/var/cache/holistix/{environment}"):
        files.directory(name=f"Ensure {path} exists", path=path, user="root", group="root", mode="0700")
    files.put(
        name=f"Ensure release {release.version} is uploaded while it is not installed",
        src=release.source,
        dest=upload,
        mode="0600",
        _if=lambda: release.version not in _installed_versions(),
    )
platform_release(
    name=f"Ensure release {release.version} is installed (sha256 checked before unpacking)",
    helper=ganymede.RELEASE_HELPER,
    environment=environment,
    version=release.version,
    sha256=release.sha256,
    source=upload or release.source,
    upload=upload,
)

# -- Node.js ---------------------------------------------------------------------------------------
nodesource_files = {
    ganymede.NODESOURCE_KEYRING: None,
    "/etc/apt/sources.list.d/nodesource.sources": render(
        "ganymede/nodesource.sources.j2",
        major=settings.nodejs_major,
        keyring=ganymede.NODESOURCE_KEYRING,
        fingerprint=ganymede.NODESOURCE_FINGERPRINT,
    ),
    "/etc/apt/preferences.d/nodesource": render("ganymede/nodesource.pref.j2"),
}
if settings.nodejs_source == "nodesource":
    repository = [
        files.put(
            name=f"Ensure {path} is in place",
            src=str(ROOT / "files" / "ganymede" / "nodesource.gpg") if content is None else StringIO(content),
            dest=path,
            mode="0644",
        )
        for path, content in nodesource_files.items()
    ]
    apt.update(name="Refresh apt's lists for NodeSource's repository", _if=any_changed(*repository))
else:
    for path in nodesource_files:
        files.file(name=f"Ensure {path} is absent (Node.js from the distribution)", path=path, present=False)
apt.packages(
    name=f"Ensure Node.js is installed (from {settings.nodejs_source})",
    packages=["nodejs", "python3"],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)

# -- the service's user and the places it may write --------------------------------------------------
server.group(name=f"Ensure the {user} group exists", group=user, system=True)
server.user(
    name=f"Ensure the {user} system user exists (no login, no home)",
    user=user,
    group=user,
    system=True,
    shell="/usr/sbin/nologin",
    home="/nonexistent",
    create_home=False,
    ensure_home=False,
)
for path, owner, mode in (
    ("/opt/holistix", "root", "0755"),
    (base_dir, "root", "0755"),
    (f"{base_dir}/releases", "root", "0755"),
    (f"/var/lib/holistix/{environment}", "root", "0755"),
    (settings.org_data_dir, user, "0750"),
    (settings.nginx_gateways_dir, user, "0755"),
    (f"{settings.nginx_gateways_dir}/locations", user, "0755"),
):
    files.directory(name=f"Ensure {path} exists", path=path, user=owner, group=owner, mode=mode)

install_helpers(
    {
        ganymede.ENV_HELPER: "ganymede/ganymede_env.py",
        ganymede.NGINX_CONTROL: "ganymede/nginx_control.py",
        ganymede.LOOPBACK_PRELOAD: "ganymede/loopback_listen.cjs",
    }
)

# -- nginx test and reload for Ganymede, without sudo -------------------------------------------------
files.put(
    name=f"Ensure {ganymede.NGINX_CONTROL_POLICY} says what organisation blocks may contain",
    src=StringIO(ganymede.nginx_control_policy(settings)),
    dest=ganymede.NGINX_CONTROL_POLICY,
    mode="0644",
)
control_units = [
    files.put(
        name=f"Ensure /etc/systemd/system/{unit} is in place",
        src=StringIO(render(f"ganymede/{template}", group=user, helper=ganymede.NGINX_CONTROL)),
        dest=f"/etc/systemd/system/{unit}",
        mode="0644",
    )
    for unit, template in (
        (ganymede.NGINX_CONTROL_SOCKET_UNIT, "nginx-control.socket.j2"),
        ("holistix-nginx-control@.service", "nginx-control@.service.j2"),
    )
]

# -- environment: planned here, composed on the host with the secrets kept there ---------------------
ca_files = [f"/etc/postgresql/{postgres_version}/main/holistix-ca.crt"]
if settings.ganymede_extra_ca_file:
    files.put(
        name="Ensure the extra CA Ganymede trusts is in place",
        src=settings.ganymede_extra_ca_file,
        dest=ganymede.extra_ca_file(settings),
        mode="0644",
    )
    ca_files.append(ganymede.extra_ca_file(settings))
else:
    files.file(name="Ensure no extra CA is kept for Ganymede", path=ganymede.extra_ca_file(settings), present=False)
plan = files.put(
    name=f"Ensure {ganymede.env_plan_file(settings)} plans Ganymede's environment",
    src=StringIO(ganymede.env_plan(settings, ca_files)),
    dest=ganymede.env_plan_file(settings),
    mode="0600",
)
environment_file = server.shell(
    name=f"Ensure {ganymede.env_file(settings)} holds every variable Ganymede needs (composed on the host)",
    commands=[f"{ganymede.ENV_HELPER} write {environment}"],
    _if=lambda: host.get_fact(HelperCheck, helper=ganymede.ENV_HELPER, arguments=environment) != ["same", "exit 0"],
)
files.put(
    name=f"Ensure {ganymede.gate_file(settings)} describes the health gate",
    src=StringIO(ganymede.gate(settings)),
    dest=ganymede.gate_file(settings),
    mode="0644",
)

# -- the unit ------------------------------------------------------------------------------------------
unit = files.put(
    name="Ensure /etc/systemd/system/ganymede@.service is in place (sandboxed)",
    src=StringIO(ganymede.render_unit(settings, f"postgresql@{postgres_version}-main.service")),
    dest="/etc/systemd/system/ganymede@.service",
    mode="0644",
)
systemd.daemon_reload(name="Reload systemd's units", _if=any_changed(unit, *control_units))
systemd.service(
    name=f"Ensure {ganymede.NGINX_CONTROL_SOCKET_UNIT} listens and starts at boot",
    service=ganymede.NGINX_CONTROL_SOCKET_UNIT,
    running=True,
    enabled=True,
)
server.shell(
    name=f"Ensure {ganymede.NGINX_CONTROL_SOCKET_UNIT} runs its new definition",
    commands=[f"systemctl restart {ganymede.NGINX_CONTROL_SOCKET_UNIT}"],
    _if=control_units[0].did_change,
)
systemd.service(
    name=f"Ensure {settings.ganymede_unit} starts at boot",
    service=settings.ganymede_unit,
    running=None,
    enabled=True,
)

# -- the release: verified, unpacked, its database applied, then switched behind the health gate -----
if settings.ganymede_rollback_to is None:
    # forward only: a rollback keeps the newer schema (the platform's migrations only add); the
    # migration helper is the postgres module's
    database_migrations(
        name=f"Ensure release {release.version}'s database/ is applied to {settings.database_name}",
        database=settings.database_name,
        directory=f"{version_dir}/database",
    )
current_release(
    name=f"Ensure release {ganymede.desired_version(settings)} is current and answers (else the previous comes back)",
    helper=ganymede.RELEASE_HELPER,
    environment=environment,
    version=ganymede.desired_version(settings),
)
release_configuration_applied(
    name=f"Ensure {settings.ganymede_unit} runs its current environment and unit (restarted behind the gate if not)",
    helper=ganymede.RELEASE_HELPER,
    environment=environment,
)
systemd.service(
    name=f"Ensure {settings.ganymede_unit} runs",
    service=settings.ganymede_unit,
    running=True,
)
releases_pruned(
    name=f"Ensure at most {settings.ganymede_releases_kept} releases are kept",
    helper=ganymede.RELEASE_HELPER,
    environment=environment,
    keep=settings.ganymede_releases_kept,
)
