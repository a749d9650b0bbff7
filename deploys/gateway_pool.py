"""gateway_pool: the environment's gateway containers (platform contract 1.8), limited,
health-checked, firewalled, registered with Ganymede, started after Ganymede answers.

Manages: Docker Engine (the distribution's docker.io) and /etc/docker/daemon.json (log
rotation, live-restore, no-new-privileges, the bridge address, DNS through CoreDNS on the
bridge); the gateway image (a `docker save` tarball, sha256-checked before `docker load`,
loaded once per checksum); the build server holistix-build-server@<env> serving the current
release's packed gateway build on the bridge address; gateway_pool_size containers
gw-pool-<env>-<i> (holistix-gateway-pool: registered through the release's app-ganymede-cmds,
recreated when their spec changes, the highest-numbered removed and deregistered when the pool
shrinks); holistix-gateway-pool@<env>, which starts them at boot once Ganymede answers;
holistix-gateway-pool-metrics@<env>.timer, which writes the pool's metrics (containers running
and unhealthy, gateways registered, ready and free) for node_exporter every minute.

Reads: environment, domain, public_ipv4, docker_bridge_cidr, gateway_*.

    pyinfra inventories/prod.py deploys/gateway_pool.py
"""

import json
import re
from io import StringIO

from pyinfra import host
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from holistix_deploy import ganymede
from holistix_deploy.facts import AptPackageAvailable, GatewayImageState, HelperCheck
from holistix_deploy.monitoring import METRICS_DIR, otlp_endpoints
from holistix_deploy.operations import install_helpers, then_remove, validated_file
from holistix_deploy.settings import SettingsError, load_settings
from holistix_deploy.templating import render

POOL_HELPER = "/usr/local/sbin/holistix-gateway-pool"

settings = load_settings(host)
if settings.missing_for("gateway_pool"):
    raise SettingsError(host.name, settings.missing_for("gateway_pool"))
environment, image = settings.environment, settings.gateway_image
bridge_ip = str(settings.docker_bridge_cidr.ip)
state_dir = f"/var/lib/holistix/{environment}"

# -- Docker Engine, configured before it first starts ------------------------------------------------
files.directory(name="Ensure /etc/docker exists", path="/etc/docker", user="root", group="root", mode="0755")
daemon = validated_file(
    name="Ensure /etc/docker/daemon.json is in place (checked as JSON first)",
    dest="/etc/docker/daemon.json",
    content=json.dumps(
        {
            "bip": str(settings.docker_bridge_cidr),
            # gateways resolve through CoreDNS, which answers the bridge (never an outside resolver)
            "dns": [bridge_ip],
            "live-restore": True,
            "log-driver": "json-file",
            "log-opts": {"max-size": "10m", "max-file": "3"},
            "no-new-privileges": True,
        },
        indent=2,
        sort_keys=True,
    )
    + "\n",
    validate="python3 -m json.tool {path} >/dev/null",
    candidate="/etc/docker/.daemon.json.candidate",
)
# Debian 13 ships the command line apart from the engine (docker-cli); elsewhere docker.io has both
docker_packages = ["docker.io"] + (["docker-cli"] if host.get_fact(AptPackageAvailable, package="docker-cli") else [])
apt.packages(
    name="Ensure Docker Engine (docker.io) is installed",
    packages=docker_packages,
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)
server.shell(
    name="Ensure Docker runs its new daemon.json (live-restore keeps the containers)",
    commands=["systemctl restart docker"],
    _if=daemon.did_change,
)
systemd.service(name="Ensure Docker runs and starts at boot", service="docker", running=True, enabled=True)

# -- the image: checked, loaded once -------------------------------------------------------------------
install_helpers({POOL_HELPER: "gateway_pool/gateway_pool.py"})
files.directory(name=f"Ensure {state_dir} exists", path=state_dir, user="root", group="root", mode="0755")


def _image_state() -> str:
    return host.get_fact(
        GatewayImageState, helper=POOL_HELPER, environment=environment, tag=image.tag, sha256=image.sha256
    )


upload = None
if not re.match(r"https?://", image.source):
    upload = f"/var/tmp/holistix-gateway-image-{environment}.tar"
    files.put(
        name=f"Ensure the gateway image {image.tag} is uploaded while it is not loaded",
        src=image.source,
        dest=upload,
        mode="0600",
        _if=lambda: _image_state() != "loaded",
    )
load = f"{POOL_HELPER} load-image {environment} {image.tag} {image.sha256} {upload or image.source}"
server.shell(
    name=f"Ensure the gateway image {image.tag} is loaded (sha256 checked before docker load)",
    commands=[then_remove(load, upload) if upload else load],
    _if=lambda: _image_state() != "loaded",
)

# -- the build server: the current release's packed gateway build, on the bridge only ------------------
serve_dir = f"{state_dir}/build-server"
files.directory(name=f"Ensure {serve_dir} exists", path=serve_dir, user="root", group="root", mode="0755")
files.link(
    name=f"Ensure gateway-{environment}.tar.gz is the current release's packed gateway build",
    path=f"{serve_dir}/gateway-{environment}.tar.gz",
    target=f"{ganymede.base_dir(settings)}/current/builds/gateway.tar.gz",
)
units = [
    files.put(
        name=f"Ensure /etc/systemd/system/{unit} is in place",
        src=StringIO(
            render(
                f"gateway_pool/{unit}.j2",
                bridge_ip=bridge_ip,
                bridge_network=str(settings.docker_bridge_cidr.network),
                port=settings.gateway_build_server_port,
                serve_dir="/var/lib/holistix/%i/build-server",
                release_helper=ganymede.RELEASE_HELPER,
                pool_helper=POOL_HELPER,
                metrics_dir=METRICS_DIR,
            )
        ),
        dest=f"/etc/systemd/system/{unit}",
        mode="0644",
    )
    for unit in (
        "holistix-build-server@.service",
        "holistix-gateway-pool@.service",
        "holistix-gateway-pool-metrics@.service",
        "holistix-gateway-pool-metrics@.timer",
    )
]
systemd.daemon_reload(name="Reload systemd's units", _if=any_changed(*units))
build_server = f"holistix-build-server@{environment}.service"
systemd.service(
    name=f"Ensure {build_server} serves and starts at boot", service=build_server, running=True, enabled=True
)
server.shell(
    name=f"Ensure {build_server} runs its new definition",
    commands=[f"systemctl restart {build_server}"],
    _if=units[0].did_change,
)

# -- the pool -------------------------------------------------------------------------------------------
plan = {
    "environment": environment,
    "size": settings.gateway_pool_size,
    "image": image.tag,
    "http_port_base": settings.gateway_http_port_base,
    "vpn_port_base": settings.gateway_vpn_port_base,
    "bridge_ip": bridge_ip,
    "public_ip": str(settings.public_ipv4),
    "build_server_port": settings.gateway_build_server_port,
    "domain": settings.domain,
    "memory": settings.gateway_memory_max,
    "cpus": settings.gateway_cpus,
    "pids": settings.gateway_pids_max,
    "gateway_version": ganymede.desired_version(settings) if settings.ganymede_release else "0.0.0",
    "cmds": f"{ganymede.base_dir(settings)}/current/dist/packages/app-ganymede-cmds/main.js",
    "env_file": ganymede.env_file(settings),
    "database": settings.database_name,
    "metrics_dir": METRICS_DIR,
    # the monitoring module's collector (Jaeger), on the bridge's address
    "otlp": otlp_endpoints(settings, "bridge"),
}
files.put(
    name=f"Ensure {settings.secrets_dir}/gateway-pool.json plans the pool",
    src=StringIO(json.dumps(plan, indent=2, sort_keys=True) + "\n"),
    dest=f"{settings.secrets_dir}/gateway-pool.json",
    mode="0600",
)


def _pending() -> list:
    state = host.get_fact(HelperCheck, helper=POOL_HELPER, arguments=environment)
    if not state or state[-1] != "exit 0":
        return ["unknown"]
    return json.loads(state[0])["pending"]


server.shell(
    name=f"Ensure the pool is {settings.gateway_pool_size} healthy gateway(s) registered with Ganymede",
    # gateways start only once Ganymede answers (a gateway that cannot reach it parks itself idle)
    commands=[f"{ganymede.RELEASE_HELPER} wait {environment} >/dev/null && {POOL_HELPER} converge {environment}"],
    _if=lambda: _pending() != [],
)


pool_unit = f"holistix-gateway-pool@{environment}.service"
systemd.service(name=f"Ensure {pool_unit} starts the pool at boot", service=pool_unit, running=True, enabled=True)

# -- the pool's metrics for monitoring (node_exporter's textfile collector), every minute --------------
files.directory(name=f"Ensure {METRICS_DIR} exists", path=METRICS_DIR, mode="0755")
systemd.service(
    name=f"Ensure holistix-gateway-pool-metrics@{environment}.timer writes the pool's metrics every minute",
    service=f"holistix-gateway-pool-metrics@{environment}.timer",
    running=True,
    enabled=True,
)
