"""The e2e loop on a real booted staging host (scripts/staging-host; needs root).

One fresh host per Debian suite in E2E_SUITES (default "trixie bookworm"), destroyed at the
end (E2E_KEEP=1 keeps it for a look). The tests in a module run in order, like a runbook.
`make e2e` (scripts/e2e) runs each suite, and the harness's self-test, in a pytest process of
its own: side by side, each in order; what they share is locked (the harness, the artifacts).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGING_HOST = ROOT / "scripts" / "staging-host"
SUITES = os.environ.get("E2E_SUITES", "trixie bookworm").split()


@contextmanager
def machine_lock(name: str):
    """One holder at a time on this machine: the suites' processes build the same artifacts."""
    with open(f"/run/lock/holistix-e2e-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@dataclass
class PyinfraRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def results(self) -> dict:
        return json.loads(self.stdout)["results"]

    def changed_operations(self, host_name: str) -> list[str]:
        return [op["name"] for op in self.results["operations"] if host_name in op.get("success", [])]


@dataclass
class StagingHost:
    name: str
    suite: str
    address: str = ""
    env: dict = field(default_factory=dict)
    operator_secrets: dict = field(default_factory=dict)

    def harness(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(STAGING_HOST), *args], capture_output=True, text=True, check=check)

    def exec(self, *command: str) -> str:
        """Run a command inside the host without SSH (as root): for reading what tests check."""
        return self.harness("exec", self.name, *command).stdout

    harness_path = STAGING_HOST

    def pyinfra(
        self,
        *args: str,
        deploy: str = "deploys/all.py",
        as_root: bool = False,
        from_probe: int | None = None,
        cwd: Path = ROOT,
    ) -> PyinfraRun:
        """Run pyinfra on this host; from_probe=N runs it from the probe address $NET.N, like an
        operator on another machine (each source address has its own SSH rate-limit budget);
        cwd is the project checkout to run (a modified copy, for instance)."""
        command = [sys.executable, "-m", "pyinfra", "-y", "--json", "inventories/local.py", deploy]
        command += ["--limit", self.name, *args]
        if from_probe is not None:
            command = [str(STAGING_HOST), "probe", "--addr", str(from_probe), "--", *command]
        if as_root:
            command += ["--user", "root", "--key", self.env["STAGING_PROVIDER_KEY"]]
        env = {**os.environ, **self.operator_secrets}
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
        return PyinfraRun(done.returncode, done.stdout, done.stderr)

    def settings(self):
        """The validated settings the inventory gives this host."""
        from holistix_deploy.settings import inventory_hosts, validate_data

        data = dict(inventory_hosts("inventories/local.py"))[self.name]
        return validate_data(data, environ={}, host_name=self.name)

    def probe(self, *command: str, addr: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
        """Run a command on a bare machine on the bridge ($NET.addr): the outside world."""
        return subprocess.run(
            [str(STAGING_HOST), "probe", "--addr", str(addr), "--", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ssh_from_probe(self, user: str, key: str, *command: str, addr: int = 2) -> subprocess.CompletedProcess:
        """One login attempt with exactly one key, from the probe's own address (no shared
        connection, no other keys: each extra key offered would count as a failure)."""
        return self.probe(
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={self.env['STAGING_KNOWN_HOSTS']}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            key,
            "-v",
            f"{user}@{self.address}",
            *command,
            addr=addr,
            timeout=60,
        )

    def host_suites(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/host",
                f"--hosts=ssh://deploy@{self.address}",
                f"--ssh-config={self.env['STAGING_SSH_CONFIG']}",
                "--inventory=inventories/local.py",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )


@pytest.fixture(scope="session")
def platform_releases():
    """The stand-in platform releases the inventory and the tests deploy (built once, cached)."""
    with machine_lock("platform-releases"):
        for version, health in (("1.0.0", []), ("2.0.0", []), ("3.0.0", ["--unhealthy"])):
            built = subprocess.run(
                [str(ROOT / "scripts" / "ganymede-release-artifact"), version, *health], capture_output=True, text=True
            )
            assert built.returncode == 0, built.stderr
        image = subprocess.run([str(ROOT / "scripts" / "gateway-image-artifact")], capture_output=True, text=True)
        assert image.returncode == 0, image.stderr


@pytest.fixture(scope="session", autouse=True)
def retention_drill():
    """The retention drill's repository (tests/e2e/retention.py), made in the background from the
    start of the session: a future of its tarball in the artifacts directory."""
    from concurrent.futures import ThreadPoolExecutor

    from . import retention

    artifacts = Path(os.environ.get("HOLISTIX_ARTIFACTS", "/var/cache/holistix-deploy/artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)

    def build():
        with machine_lock("retention-drill"):
            return retention.build(artifacts / "retention-drill-holistix-staging.tar", "holistix-staging")

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(build)


@pytest.fixture(scope="module", params=SUITES)
def staging_host(request, platform_releases):
    if os.geteuid() != 0:
        pytest.fail("the e2e tests boot staging hosts with systemd-nspawn and need root")
    host = StagingHost(name=f"e2e-{request.param[:4]}", suite=request.param)
    host.harness("destroy", host.name, check=False)  # a host left by an interrupted run
    created = host.harness("create", host.name, "--suite", request.param, check=False)
    assert created.returncode == 0, created.stderr
    for line in host.harness("env", host.name).stdout.splitlines():
        key, _, value = line.partition("=")
        host.env[key] = value
    host.address = host.env["STAGING_HOST"]
    # values no one could guess, so finding one in pyinfra's output can only mean a leak
    host.operator_secrets = {
        "HOLISTIX_SMTP_PASSWORD": "smtp-" + secrets.token_urlsafe(24),
        "HOLISTIX_DNS_API_TOKEN": "dns-" + secrets.token_urlsafe(24),
        "HOLISTIX_GITHUB_CLIENT_SECRET": "gh-" + secrets.token_hex(20),
    }
    yield host
    if os.environ.get("E2E_KEEP") != "1":
        host.harness("destroy", host.name, check=False)
