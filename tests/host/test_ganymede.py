"""ganymede: the current release runs as its own user, sandboxed, on loopback only, with every
variable of the platform contract, after PostgreSQL; nginx is tested and reloaded for it
without sudo."""

from __future__ import annotations

import json
import re

from holistix_deploy import ganymede
from holistix_deploy.ganymede import PLACEHOLDER


def _main_pid(host, settings) -> str:
    with host.sudo():
        return host.check_output(f"systemctl show -p MainPID --value {settings.ganymede_unit}")


def _process_environment(host, settings) -> list[str]:
    """Names of the running process's variables (values stay on the host)."""
    script = (
        "import sys; env=dict(e.split('=',1) for e in open(f'/proc/{sys.argv[1]}/environ').read().split(chr(0)) if '=' in e);"
        "print('\\n'.join(sorted(env)))"
    )
    with host.sudo():
        names = host.check_output(f'python3 -c "{script}" {_main_pid(host, settings)}')
    return names.splitlines()


def test_the_current_release_runs_as_its_own_user_and_starts_at_boot(host, settings):
    unit = host.service(settings.ganymede_unit)
    assert unit.is_running and unit.is_enabled
    assert host.check_output(f"ps -o user= -p {_main_pid(host, settings)}") == ganymede.SERVICE_USER
    current = host.file(f"{ganymede.base_dir(settings)}/current")
    assert current.is_symlink and current.linked_to.endswith(f"/releases/{settings.ganymede_release.version}")


def test_releases_belong_to_root_and_the_service_cannot_change_them(host, settings):
    release = f"{ganymede.base_dir(settings)}/current/"
    with host.sudo():
        writable = host.run(f"find {release} ! -type l \\( -perm /022 -o ! -user root \\)")
    assert writable.rc == 0 and writable.stdout.strip() == "", writable.stdout
    denied = host.run(f"sudo -u {ganymede.SERVICE_USER} touch {release}dist/probe")
    assert denied.rc != 0


def test_the_environment_file_is_root_only_and_holds_every_required_variable(host, settings):
    with host.sudo():
        env_file = host.file(ganymede.env_file(settings))
        assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
    names = _process_environment(host, settings)
    missing = [name for name in ganymede.REQUIRED_VARIABLES if name not in names]
    assert not missing, f"the running Ganymede lacks {missing}"
    for name in ("CREDENTIALS_ENCRYPTION_KEY", "NODE_EXTRA_CA_CERTS", "DOMAIN", "ENV_NAME", "NGINX_GATEWAYS_DIR"):
        assert name in names
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in names
    with host.sudo():
        text = host.check_output(f"cat {ganymede.env_file(settings)}")
    assert "NODE_ENV='production'" in text
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in text
    # no provider was configured on this host: the README says these are placeholders
    assert f"GITLAB_CLIENT_ID='{PLACEHOLDER}'" in text


def test_multi_line_pem_values_reach_the_process_intact(host, settings):
    # compared on the host, as bytes: the key file (one trailing newline dropped) against the
    # value systemd handed to the process; only "same"/"differs" comes back
    script = (
        "import sys; pid,path,name=sys.argv[1:];"
        "env=dict(e.split('=',1) for e in open(f'/proc/{pid}/environ').read().split(chr(0)) if '=' in e);"
        "want=open(path).read().removesuffix(chr(10));"
        "print('same' if env.get(name)==want and want.count(chr(10))>10 else 'differs')"
    )
    pid = _main_pid(host, settings)
    for name, file_name in (("JWT_PRIVATE_KEY", "jwt_private_key.pem"), ("JWT_PUBLIC_KEY", "jwt_public_key.pem")):
        with host.sudo():
            verdict = host.check_output(f'python3 -c "{script}" {pid} {settings.secrets_dir}/{file_name} {name}')
        assert verdict == "same", name


def test_the_unit_is_sandboxed_below_2_without_memory_deny_write_execute(host, settings):
    with host.sudo():
        report = host.check_output(f"systemd-analyze security --no-pager {settings.ganymede_unit}")
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)[1])
    assert exposure <= 2.0, report
    unit = host.file("/etc/systemd/system/ganymede@.service").content_string
    assert not re.search(r"^MemoryDenyWriteExecute=yes", unit, re.M)
    with host.sudo():
        shown = host.check_output(
            f"systemctl show -p Restart,RestartUSec,MemoryMax,TasksMax,CPUQuotaPerSecUSec,User {settings.ganymede_unit}"
        )
    values = dict(line.split("=", 1) for line in shown.splitlines())
    assert values["Restart"] == "on-failure" and values["RestartUSec"] == "5s"
    assert values["User"] == ganymede.SERVICE_USER
    assert values["MemoryMax"] != "infinity" and values["TasksMax"] == str(settings.ganymede_tasks_max)
    quota = re.fullmatch(r"([0-9.]+)(s|ms)", values["CPUQuotaPerSecUSec"])
    assert quota, values["CPUQuotaPerSecUSec"]
    seconds = float(quota[1]) / (1000 if quota[2] == "ms" else 1)
    assert round(seconds * 100) == settings.ganymede_cpu_quota_percent  # CPU-seconds per second, in %


def test_ganymede_listens_on_loopback_only(host, settings):
    listeners = host.socket.get_listening_sockets()
    assert f"tcp://127.0.0.1:{settings.ganymede_port}" in listeners
    assert not [s for s in listeners if s.endswith(f":{settings.ganymede_port}") and "127.0.0.1" not in s]
    # the host's public address is a local one too: Ganymede must not answer there either
    refused = host.run(f"curl -sS -m 3 -o /dev/null http://{settings.public_ipv4}:{settings.ganymede_port}/")
    assert refused.rc != 0


def test_ganymede_started_after_postgresql(host, settings):
    with host.sudo():
        order = host.check_output(f"systemctl show -p After -p Requires {settings.ganymede_unit}")
        cluster = host.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | cut -d' ' -f1")
        started = {
            unit: int(host.check_output(f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}"))
            for unit in (cluster, settings.ganymede_unit)
        }
    assert cluster in order
    assert started[cluster] < started[settings.ganymede_unit]


def test_org_data_and_organisation_blocks_are_writable_by_ganymede_only(host, settings):
    org_data = host.file(settings.org_data_dir)
    assert (org_data.user, org_data.mode) == (ganymede.SERVICE_USER, 0o750)
    blocks = host.file(settings.nginx_gateways_dir)
    assert blocks.user == ganymede.SERVICE_USER and blocks.mode == 0o755


def test_nginx_is_tested_and_reloaded_through_the_socket_not_sudo(host, settings):
    socket = host.file("/run/holistix/nginx-control.sock")
    assert socket.is_socket and (socket.user, socket.group, socket.mode) == ("root", ganymede.SERVICE_USER, 0o660)
    assert host.service(ganymede.NGINX_CONTROL_SOCKET_UNIT).is_enabled
    assert not host.file(f"/etc/sudoers.d/{ganymede.SERVICE_USER}").exists
    # as the service's user, the way Ganymede runs NGINX_TEST_COMMAND: "syntax is ok" on stdout
    test = host.run(f"sudo -u {ganymede.SERVICE_USER} {ganymede.NGINX_CONTROL} test 2>/dev/null")
    assert test.rc == 0 and "syntax is ok" in test.stdout
    # anyone else is refused by the socket's permissions
    refused = host.run(f"sudo -u nobody {ganymede.NGINX_CONTROL} test")
    assert refused.rc != 0 and "Permission denied" in refused.stdout


def test_the_health_gate_knows_the_unit_port_and_timeout(host, settings):
    gate = json.loads(host.file(ganymede.gate_file(settings)).content_string)
    assert gate == {
        "unit": settings.ganymede_unit,
        "port": settings.ganymede_port,
        "path": settings.ganymede_health_path,
        "timeout": settings.ganymede_health_timeout_seconds,
        "config_files": [
            ganymede.env_file(settings),
            ganymede.UNIT_FILE,
            ganymede.LOOPBACK_PRELOAD,
            ganymede.ca_bundle(settings),
        ],
    }
    # the running service was started with the configuration on disk
    with host.sudo():
        state = json.loads(host.check_output(f"{ganymede.RELEASE_HELPER} check {settings.environment}"))
    assert state["config_applied"] is True and state["current"] == settings.ganymede_release.version
    answer = host.run(
        f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{settings.ganymede_port}{gate['path']}"
    )
    assert answer.stdout.isdigit() and int(answer.stdout) < 500
