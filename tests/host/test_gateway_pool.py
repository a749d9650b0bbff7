"""gateway_pool: Docker configured, the pool's containers healthy, limited and labelled as the
platform's `docker run` contract says, registered with Ganymede, fed by the build server on
the bridge, started at boot after Ganymede."""

from __future__ import annotations

import json
import time

import pytest


@pytest.fixture(scope="module")
def pool(host, settings) -> dict[str, dict]:
    names = [f"gw-pool-{settings.environment}-{i}" for i in range(1, settings.gateway_pool_size + 1)]
    # right after a boot the first health checks may still be due (every 10 s): wait for them
    for _ in range(60):
        with host.sudo():
            inspected = json.loads(host.check_output("docker inspect " + " ".join(names)))
        if all(container["State"].get("Health", {}).get("Status") != "starting" for container in inspected):
            break
        time.sleep(1)
    return {container["Name"].lstrip("/"): container for container in inspected}


def test_docker_rotates_logs_keeps_containers_on_restart_and_uses_coredns(host, settings):
    assert host.service("docker").is_running and host.service("docker").is_enabled
    with host.sudo():
        daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
        live_restore = host.check_output("docker info --format '{{.LiveRestoreEnabled}}'")
    assert live_restore == "true"
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["no-new-privileges"] is True
    assert daemon["dns"] == [str(settings.docker_bridge_cidr.ip)]


def test_every_gateway_runs_healthy_with_the_contracts_flags(host, pool, settings):
    with host.sudo():
        support = host.check_output("docker info --format '{{.MemoryLimit}} {{.PidsLimit}} {{.CPUCfsQuota}}'")
    enforced = dict(zip(("memory", "pids", "cpu"), (value == "true" for value in support.split()), strict=True))
    bridge = str(settings.docker_bridge_cidr.ip)
    assert len(pool) == settings.gateway_pool_size
    for index, (name, container) in enumerate(sorted(pool.items()), start=0):
        state, config, limits = container["State"], container["Config"], container["HostConfig"]
        assert state["Running"] and state["Health"]["Status"] == "healthy", name
        assert config["Labels"]["environment"] == settings.environment
        assert config["Labels"]["gateway_id"]
        assert limits["RestartPolicy"]["Name"] == "no"  # started by holistix-gateway-pool@, after Ganymede
        assert limits["CapAdd"] == ["NET_ADMIN"] and limits["Devices"][0]["PathOnHost"] == "/dev/net/tun"
        assert limits["Dns"] == [bridge]
        assert "no-new-privileges" in limits["SecurityOpt"]
        # the limits asked for; where Docker can enforce them, set too (a staging container cannot:
        # Docker drops them with a warning, see the README)
        wanted = f"memory={settings.gateway_memory_max},cpus={settings.gateway_cpus},pids={settings.gateway_pids_max}"
        assert config["Labels"]["holistix.limits"] == wanted
        if enforced["memory"]:
            assert limits["Memory"] > 0
        if enforced["pids"]:
            assert limits["PidsLimit"] == settings.gateway_pids_max
        if enforced["cpu"]:
            assert limits["CpuQuota"] == round(settings.gateway_cpus * limits["CpuPeriod"])
        http_port, vpn_port = settings.gateway_http_port_base + index, settings.gateway_vpn_port_base + index
        assert limits["PortBindings"][f"{http_port}/tcp"] == [{"HostIp": bridge, "HostPort": str(http_port)}]
        assert limits["PortBindings"][f"{vpn_port}/udp"][0]["HostIp"] in ("", "0.0.0.0")
        environment = dict(item.split("=", 1) for item in config["Env"])
        assert environment["GANYMEDE_FQDN"] == f"ganymede.{settings.domain}"
        assert environment["BUILD_SERVER_IP"] == bridge and environment["ENV_NAME"] == settings.environment
        assert "NODE_TLS_REJECT_UNAUTHORIZED" not in environment
        assert environment["GATEWAY_TOKEN"].count(".") == 2  # a JWT, given through docker's environment


def test_each_gateway_is_registered_once_and_its_token_kept_root_only(host, pool, settings):
    with host.sudo():
        rows = host.check_output(
            f"runuser -u postgres -- psql -At -d {settings.database_name} -c 'SELECT gateway_id, hostname FROM gateways'"
        )
        registered = {hostname: gateway_id for gateway_id, hostname in (row.split("|") for row in rows.splitlines())}
        for name, container in pool.items():
            token = host.file(f"{settings.secrets_dir}/gateways/{name}.token")
            assert (token.user, token.mode) == ("root", 0o600)
            assert registered[name] == container["Config"]["Labels"]["gateway_id"]
    assert sorted(registered) == sorted(pool)


def test_the_build_server_serves_the_current_releases_gateway_build_on_the_bridge_only(host, settings):
    unit = host.service(f"holistix-build-server@{settings.environment}")
    assert unit.is_running and unit.is_enabled
    bridge, port = str(settings.docker_bridge_cidr.ip), settings.gateway_build_server_port
    listeners = host.socket.get_listening_sockets()
    assert f"tcp://{bridge}:{port}" in listeners
    assert not [s for s in listeners if s.endswith(f":{port}") and bridge not in s]
    # fetched the way a gateway does, from inside one (the unit only talks to the bridge network)
    with host.sudo():
        served = host.check_output(
            f"docker exec gw-pool-{settings.environment}-1 wget -q -O - http://{bridge}:{port}/gateway-{settings.environment}.tar.gz"
            " | sha256sum"
        )
    packed = host.check_output(f"sha256sum < /opt/holistix/{settings.environment}/current/builds/gateway.tar.gz")
    assert served == packed


def test_the_pool_starts_at_boot_after_ganymede(host, settings):
    unit = host.service(f"holistix-gateway-pool@{settings.environment}")
    assert unit.is_enabled
    with host.sudo():
        after = host.check_output(f"systemctl show -p After holistix-gateway-pool@{settings.environment}")
        start_pre = host.check_output(f"systemctl show -p ExecStartPre holistix-gateway-pool@{settings.environment}")
    assert f"ganymede@{settings.environment}.service" in after
    assert "holistix-release" in start_pre and "wait" in start_pre
