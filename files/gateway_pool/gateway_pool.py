#!/usr/bin/python3
"""holistix-gateway-pool: the environment's pool of gateway containers (platform contract 1.8).

    holistix-gateway-pool check    ENV   JSON: what converge would do (names only, no secret)
    holistix-gateway-pool converge ENV   create, recreate, remove and start until the pool is the plan
    holistix-gateway-pool start    ENV   start every pool container (at boot, once Ganymede answers)
    holistix-gateway-pool stop     ENV   stop them
    holistix-gateway-pool image-state ENV TAG SHA256          "loaded" or "missing"
    holistix-gateway-pool load-image  ENV TAG SHA256 SOURCE   sha256 first, then docker load
    holistix-gateway-pool metrics  ENV   the pool's metrics for node_exporter's textfile collector

Installed by holistix-deploy's gateway_pool module (files/gateway_pool/gateway_pool.py). Runs
as root. The plan is /etc/holistix/ENV/gateway-pool.json (written by the module, no secrets).

Containers are gw-pool-ENV-<i>, i = 1..size, HTTP port http_port_base + i - 1 published on the
Docker bridge address only, VPN port vpn_port_base + i - 1/udp published on every address.
Each is registered once with the release's app-ganymede-cmds (its token kept in
/etc/holistix/ENV/gateways/<name>.token, 0600) and deregistered when the pool shrinks. A
container carries the sha256 of its spec as a label: a changed spec recreates it, an
unchanged one is left alone. Secrets (the gateway token, Ganymede's database password and
JWT key for registration) reach processes through their environment, never their arguments.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

POOL_LABEL = "holistix.gateway-pool"
SPEC_LABEL = "holistix.spec-sha256"


def fail(message: str):
    print(f"holistix-gateway-pool: {message}", file=sys.stderr)
    raise SystemExit(1)


# -- the plan --------------------------------------------------------------------------------------


def plan(env: str) -> dict:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", env):
        fail(f"bad environment name {env!r}")
    return json.loads(Path("/etc/holistix", env, "gateway-pool.json").read_text())


def container_name(env: str, index: int) -> str:
    return f"gw-pool-{env}-{index}"


def desired(wanted: dict) -> dict[str, dict]:
    """{name: spec}: everything `docker run` gets, except the secrets it takes from the environment."""
    env, bridge = wanted["environment"], wanted["bridge_ip"]
    pool = {}
    for index in range(1, wanted["size"] + 1):
        name = container_name(env, index)
        http_port, vpn_port = wanted["http_port_base"] + index - 1, wanted["vpn_port_base"] + index - 1
        spec = {
            "image": wanted["image"],
            "publish": [f"{bridge}:{http_port}:{http_port}/tcp", f"{vpn_port}:{vpn_port}/udp"],
            "environment": {
                "ENV_NAME": env,
                "GATEWAY_HTTP_PORT": str(http_port),
                "GATEWAY_VPN_PORT": str(vpn_port),
                "GANYMEDE_FQDN": f"ganymede.{wanted['domain']}",
                "GANYMEDE_API_URL": f"https://{wanted['public_ip']}",
                "DOMAIN": wanted["domain"],
                "BUILD_SERVER_IP": bridge,
                "BUILD_SERVER_PORT": str(wanted["build_server_port"]),
                "ALLOWED_ORIGINS": json.dumps([f"https://{wanted['domain']}"]),
                "OTEL_SERVICE_NAME": f"gateway-{name}",
                "OTEL_DEPLOYMENT_ENVIRONMENT": env,
                "OTLP_ENDPOINT_HTTP": wanted["otlp"]["http"],
                "OTLP_ENDPOINT_GRPC": wanted["otlp"]["grpc"],
                "NODE_ENV": "production",
            },
            "memory": wanted["memory"],
            "cpus": wanted["cpus"],
            "pids": wanted["pids"],
            "dns": bridge,
            "nginx_upstream": f"{bridge}:{http_port}",
            "http_port": http_port,
            "vpn_port": vpn_port,
        }
        # over the spec and the exact `docker run` it makes: any change to either recreates
        spec["sha256"] = ""
        spec["sha256"] = hashlib.sha256(
            json.dumps([spec, run_arguments(name, spec, "<gateway id>", env)], sort_keys=True).encode()
        ).hexdigest()
        pool[name] = spec
    return pool


def run_arguments(name: str, spec: dict, gateway_id: str, env: str) -> list[str]:
    """`docker run` for one gateway: the contract's flags, limits, health check; secrets by name only."""
    arguments = ["docker", "run", "-d", "--name", name, "--network", "bridge", "--restart", "no"]
    arguments += ["--label", f"environment={env}", "--label", f"gateway_id={gateway_id}"]
    arguments += ["--label", f"{POOL_LABEL}={env}", "--label", f"{SPEC_LABEL}={spec['sha256']}"]
    # the limits asked for, also as labels: a Docker that cannot enforce a limit drops it silently
    arguments += ["--label", f"holistix.limits=memory={spec['memory']},cpus={spec['cpus']},pids={spec['pids']}"]
    for publish in spec["publish"]:
        arguments += ["-p", publish]
    arguments += ["--cap-add", "NET_ADMIN", "--device", "/dev/net/tun", "--dns", spec["dns"]]
    # --cpus as period and quota: the same CFS limit, and Docker accepts these where its own check of
    # --cpus fails (a container host whose cgroup does not show the CPU controller's files)
    quota = str(round(float(spec["cpus"]) * 100000))
    arguments += ["--security-opt", "no-new-privileges", "--memory", spec["memory"]]
    arguments += ["--cpu-period", "100000", "--cpu-quota", quota]
    arguments += ["--pids-limit", str(spec["pids"])]
    ping = f"wget -q -O /dev/null http://127.0.0.1:{spec['http_port']}/collab/ping"
    arguments += ["--health-cmd", ping, "--health-interval", "10s", "--health-timeout", "3s", "--health-retries", "3"]
    for key, value in sorted({**spec["environment"], "GATEWAY_ID": gateway_id}.items()):
        arguments += ["-e", f"{key}={value}"]
    # from the docker client's own environment: never in a process's arguments
    arguments += ["-e", "GATEWAY_TOKEN", "-e", "JWT_PUBLIC_KEY"]
    return [*arguments, spec["image"]]


# -- what is there -----------------------------------------------------------------------------------


def actual(env: str) -> dict[str, dict]:
    listing = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={POOL_LABEL}={env}", "--format", "{{json .}}"],
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        fail(f"docker ps failed: {listing.stderr.strip()}")
    found = {}
    for line in listing.stdout.splitlines():
        container = json.loads(line)
        labels = dict(item.split("=", 1) for item in container.get("Labels", "").split(",") if "=" in item)
        found[container["Names"]] = {
            "spec": labels.get(SPEC_LABEL),
            "running": container["State"] == "running",
            # Docker's health check verdict is in the status text: "Up 5 minutes (unhealthy)"
            "unhealthy": "(unhealthy)" in container.get("Status", ""),
        }
    return found


def actions(wanted: dict[str, dict], present: dict[str, dict], registered: set[str]) -> list[tuple[str, str]]:
    """What converge does, in order: remove the extra (highest first), then create, recreate or start."""
    steps = [("remove", name) for name in sorted(present, key=_index, reverse=True) if name not in wanted]
    steps += [("deregister", name) for name in sorted(registered - set(wanted), key=_index, reverse=True)]
    for name, spec in sorted(wanted.items(), key=lambda item: _index(item[0])):
        if name not in registered:
            steps.append(("register", name))
        if name not in present:
            steps.append(("create", name))
        elif present[name]["spec"] != spec["sha256"]:
            steps.append(("recreate", name))
        elif not present[name]["running"]:
            steps.append(("start", name))
    return steps


def _index(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


# -- secrets, on this host only -------------------------------------------------------------------


def environment_file(path: Path) -> dict[str, str]:
    """Parse the EnvironmentFile holistix-ganymede-env writes (single- or double-quoted values)."""
    values, text, position = {}, path.read_text(), 0
    pattern = re.compile(r"""([A-Z_][A-Z0-9_]*)=(?:'([^']*)'|"((?:[^"\\]|\\.)*)")\n""", re.S)
    while position < len(text):
        if text[position] == "#" or text[position] == "\n":
            position = text.index("\n", position) + 1
            continue
        match = pattern.match(text, position)
        if not match:
            fail(f"{path}: cannot read the line at offset {position}")
        values[match[1]] = match[2] if match[2] is not None else re.sub(r"\\(.)", r"\1", match[3], flags=re.S)
        position = match.end()
    return values


def secrets_dir(env: str) -> Path:
    return Path("/etc/holistix", env, "gateways")


def registered(env: str) -> set[str]:
    directory = secrets_dir(env)
    return {path.stem for path in directory.glob("*.token")} if directory.is_dir() else set()


def cmds(wanted: dict, *arguments: str) -> str:
    """Run the current release's app-ganymede-cmds with Ganymede's environment (its PG_* and JWT key)."""
    environment = {"PATH": "/usr/bin:/bin", **environment_file(Path(wanted["env_file"]))}
    done = subprocess.run(
        ["node", wanted["cmds"], *arguments], env=environment, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        fail(f"app-ganymede-cmds {arguments[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def register(env: str, wanted: dict, name: str, spec: dict) -> None:
    output = cmds(
        wanted, "add-gateway", "-gv", wanted["gateway_version"], "-c", name, "-hp", str(spec["http_port"]),
        "-vp", str(spec["vpn_port"]), "-nu", spec["nginx_upstream"],
    )  # fmt: skip
    gateway_id = re.search(r"^gateway_id: (\S+)$", output, re.M)
    token = re.search(r"^token: (\S+)$", output, re.M)
    if not gateway_id or not token:
        fail(f"app-ganymede-cmds add-gateway printed no gateway_id/token for {name}")
    directory = secrets_dir(env)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(directory / f"{name}.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump({"gateway_id": gateway_id[1], "token": token[1]}, stream)
    print(f"registered {name} (gateway {gateway_id[1]})")


def deregister(env: str, wanted: dict, name: str) -> None:
    cmds(wanted, "remove-gateway", "-c", name)
    (secrets_dir(env) / f"{name}.token").unlink()
    print(f"deregistered {name}")


def create(env: str, wanted: dict, name: str, spec: dict) -> None:
    registration = json.loads((secrets_dir(env) / f"{name}.token").read_text())
    environment = {
        **os.environ,
        "GATEWAY_TOKEN": registration["token"],
        "JWT_PUBLIC_KEY": environment_file(Path(wanted["env_file"]))["JWT_PUBLIC_KEY"],
    }
    done = subprocess.run(
        run_arguments(name, spec, registration["gateway_id"], env), env=environment, capture_output=True, text=True
    )
    if done.returncode != 0:
        fail(f"docker run {name} failed: {done.stderr.strip()[-500:]}")
    print(f"created {name}")


def docker(*arguments: str) -> None:
    done = subprocess.run(["docker", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"docker {' '.join(arguments[:2])} failed: {done.stderr.strip()[-500:]}")


def converge(env: str) -> None:
    wanted = plan(env)
    pool = desired(wanted)
    for step, name in actions(pool, actual(env), registered(env)):
        if step == "remove":
            docker("rm", "-f", name)
            print(f"removed {name}")
        elif step == "deregister":
            deregister(env, wanted, name)
        elif step == "register":
            register(env, wanted, name, pool[name])
        elif step == "create":
            create(env, wanted, name, pool[name])
        elif step == "recreate":
            docker("rm", "-f", name)
            create(env, wanted, name, pool[name])
        elif step == "start":
            docker("start", name)
            print(f"started {name}")


def image_state(env: str, tag: str, sha256: str) -> str:
    """ "loaded" when TAG exists and was loaded from the tarball with SHA256, else "missing"."""
    record = Path("/var/lib/holistix", env, "gateway-image.sha256")
    present = subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0
    return "loaded" if present and record.is_file() and record.read_text().strip() == f"{tag} {sha256}" else "missing"


def load_image(env: str, tag: str, sha256: str, source: str) -> None:
    """Verify the `docker save` tarball's sha256 (before Docker sees it), load it, record it."""
    import tempfile
    import urllib.request

    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        tarball = Path(source)
        if re.match(r"https?://", source):
            tarball = Path(scratch) / "image.tar"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(source, timeout=60) as response, tarball.open("wb") as out:
                while block := response.read(1 << 20):
                    out.write(block)
        digest = hashlib.sha256()
        with tarball.open("rb") as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != sha256:
            fail(f"the gateway image {source} has sha256 {digest.hexdigest()}, not {sha256}: not loaded")
        loaded = subprocess.run(["docker", "load", "-i", str(tarball)], capture_output=True, text=True)
        if loaded.returncode != 0 or f"Loaded image: {tag}" not in loaded.stdout:
            fail(f"docker load did not give {tag}: {(loaded.stdout + loaded.stderr).strip()[-300:]}")
    record = Path("/var/lib/holistix", env, "gateway-image.sha256")
    record.write_text(f"{tag} {sha256}\n")
    print(f"loaded {tag}")


# -- metrics ---------------------------------------------------------------------------------------------

# the allocator's own rule for a free gateway (proc_organizations_start_gateway, platform contract 1.10)
GATEWAYS_QUERY = (
    "SELECT count(*), count(*) FILTER (WHERE g.ready), count(*) FILTER (WHERE g.ready AND NOT EXISTS "
    "(SELECT 1 FROM organizations_gateways o WHERE o.gateway_id = g.gateway_id AND o.ended_at IS NULL)) "
    "FROM gateways g"
)


def gateway_rows(database: str) -> tuple[int, int, int]:
    """(registered, ready, free) gateways, as Ganymede's allocator sees them."""
    done = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            " ",
            "-d",
            database,
        ],
        input=GATEWAYS_QUERY + ";\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        fail(f"reading the gateways from {database} failed: {done.stderr.strip()[-300:]}")
    registered_rows, ready, free = (int(value) for value in done.stdout.split())
    return registered_rows, ready, free


def metrics_text(env: str, size: int, running: int, unhealthy_count: int, rows: tuple[int, int, int]) -> str:
    label = f'{{environment="{env}"}}'
    samples = {
        "size": ("Gateways the pool should have (gateway_pool_size).", size),
        "running_containers": ("Pool containers running.", running),
        "unhealthy_containers": ("Pool containers whose Docker health check fails.", unhealthy_count),
        "registered_gateways": ("Gateways registered in the database.", rows[0]),
        "ready_gateways": ("Registered gateways that reported ready.", rows[1]),
        "free_gateways": ("Ready gateways no organisation holds (what the allocator can give).", rows[2]),
        "last_update_timestamp_seconds": ("When these metrics were taken.", int(time.time())),
    }
    lines = []
    for name, (help_text, value) in samples.items():
        metric = f"holistix_gateway_pool_{name}"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge", f"{metric}{label} {value}"]
    return "\n".join(lines) + "\n"


def write_metrics(env: str) -> None:
    """Written whole, then renamed: node_exporter never reads half a file."""
    wanted = plan(env)
    present = actual(env)
    text = metrics_text(
        env,
        wanted["size"],
        sum(1 for container in present.values() if container["running"]),
        sum(1 for container in present.values() if container["unhealthy"]),
        gateway_rows(wanted["database"]),
    )
    directory = Path(wanted["metrics_dir"])
    temporary = directory / f".holistix_gateway_pool_{env}.prom.new"
    temporary.write_text(text)
    temporary.chmod(0o644)
    os.replace(temporary, directory / f"holistix_gateway_pool_{env}.prom")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "image-state":
        print(image_state(*sys.argv[2:]))
        return
    if len(sys.argv) == 6 and sys.argv[1] == "load-image":
        load_image(*sys.argv[2:])
        return
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "converge", "start", "stop", "metrics"):
        fail("usage: holistix-gateway-pool check|converge|start|stop|metrics ENV")
    action, env = sys.argv[1:]
    if action == "metrics":
        write_metrics(env)
    elif action == "check":
        steps = actions(desired(plan(env)), actual(env), registered(env))
        print(json.dumps({"pending": [f"{step} {name}" for step, name in steps]}))
    elif action == "converge":
        converge(env)
    else:
        names = sorted(actual(env), key=_index)
        if names:
            docker(action, *names)


if __name__ == "__main__":
    main()
