"""Fresh VPS -> bootstrap as root -> converge as deploy -> host suites -> zero-change
re-run -> reboot -> host suites again. Each step is what an operator does on day one."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.destructive

RUNS: dict[str, list] = {}


def _report(run) -> str:
    return f"rc={run.returncode}\n--- stderr (tail) ---\n{run.stderr[-4000:]}"


def test_fresh_host_offers_root_key_login_and_password_login(staging_host):
    # what a provider hands over: the cloud-init drop-in turns password login on
    effective = staging_host.exec("sshd", "-T")
    assert "passwordauthentication yes" in effective
    assert "deploy:" not in staging_host.exec("cat", "/etc/passwd")


def test_bad_settings_stop_the_run_before_any_change(staging_host):
    run = staging_host.pyinfra("--data", "gateway_pool_sise=3", "--data", "domain=Not_A_Domain", as_root=True)
    assert run.returncode != 0
    assert "gateway_pool_sise = 3: unknown setting; did you mean 'gateway_pool_size'?" in run.stderr
    assert "domain = 'Not_A_Domain'" in run.stderr
    assert "deploy:" not in staging_host.exec("cat", "/etc/passwd"), "the host was changed"


def test_bootstrap_as_root_creates_the_deploy_user(staging_host):
    run = staging_host.pyinfra("-vvv", deploy="deploys/base.py", as_root=True)
    RUNS.setdefault(staging_host.name, []).append(run)
    assert run.returncode == 0, _report(run)
    assert "deploy:" in staging_host.exec("cat", "/etc/passwd")


def test_converge_as_the_deploy_user(staging_host):
    run = staging_host.pyinfra("-vvv")
    RUNS.setdefault(staging_host.name, []).append(run)
    assert run.returncode == 0, _report(run)
    assert run.results["totals"]["error"] == 0


def test_no_secret_appears_in_anything_pyinfra_printed(staging_host):
    runs = RUNS.get(staging_host.name)
    assert runs and len(runs) == 2, "the bootstrap and converge runs must have happened"
    printed = "\n".join(run.stdout + run.stderr for run in runs)
    secrets_dir = "/etc/holistix/staging"
    generated = {
        name: staging_host.exec("cat", f"{secrets_dir}/{name}")
        for name in ("session_cookie_key", "credentials_encryption_key", "jwt_private_key.pem")
    }
    # the operator secrets really reached the host (else the check below proves nothing)
    stored = staging_host.exec("cat", f"{secrets_dir}/smtp_password").strip()
    assert stored == staging_host.operator_secrets["HOLISTIX_SMTP_PASSWORD"]
    needles = {f"${name}": value for name, value in staging_host.operator_secrets.items()}
    for name, value in generated.items():
        # a PEM key leaks as lines; check each body line of it
        lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
        needles.update({f"{name} line {i}": line for i, line in enumerate(lines)})
    assert all(len(needle) >= 20 for needle in needles.values())
    leaked = [name for name, needle in needles.items() if needle in printed]
    assert leaked == [], f"secret values printed by pyinfra: {leaked}"


def test_host_suites_pass(staging_host):
    suites = staging_host.host_suites()
    assert suites.returncode == 0, suites.stdout[-6000:]


def test_second_converge_changes_nothing(staging_host):
    run = staging_host.pyinfra()
    assert run.returncode == 0, _report(run)
    changed = run.changed_operations(staging_host.name)
    assert changed == [], f"a second converge changed {len(changed)} operation(s): {changed}"
    assert run.results["totals"]["success"] == 0


def test_host_suites_pass_after_reboot(staging_host):
    boot_before = staging_host.exec("cat", "/proc/sys/kernel/random/boot_id")
    rebooted = staging_host.harness("reboot", staging_host.name, check=False)
    assert rebooted.returncode == 0, rebooted.stderr
    assert staging_host.exec("cat", "/proc/sys/kernel/random/boot_id") != boot_before
    suites = staging_host.host_suites()
    assert suites.returncode == 0, suites.stdout[-6000:]
