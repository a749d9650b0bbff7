"""The staging harness itself: two fresh VPSs at once, on both suites, that reach each other,
reboot, and leave this machine exactly as it was when the last one is destroyed.

It runs on a bridge and state directory of its own, so hosts of a demo or another test are
never counted as "the last one".
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import STAGING_HOST

pytestmark = pytest.mark.destructive

BRIDGE, NET = "hxself0", "10.78.0"
ENV = {
    **os.environ,
    "STAGING_STATE": "/var/lib/machines/.staging-selftest",
    "STAGING_CACHE": "/var/lib/machines/.staging/cache",
    "STAGING_BRIDGE": BRIDGE,
    "STAGING_NET": NET,
}
HOSTS = {"hxt-a": "trixie", "hxt-b": "bookworm"}


def harness(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(STAGING_HOST), *args], capture_output=True, text=True, env=ENV)
    if check:
        assert done.returncode == 0, f"staging-host {' '.join(args)}: {done.stderr}"
    return done


def this_machine() -> dict:
    """What the harness must never change in this machine's own namespaces."""

    def read(path: str) -> str:
        return Path(path).read_text() if Path(path).exists() else "<absent>"

    # staging hosts of other harness users (a demo, the converge tests) may come and go meanwhile:
    # their bridges, veths and netns are left out; everything else of this machine is compared
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout.splitlines()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()
    link_names = [line.split(":", 2)[1].strip().split("@")[0] for line in links]
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    return {
        "routes": [r for r in routes if " dev hx" not in r or BRIDGE in r],
        "links": sorted(
            n
            for n in link_names
            if not n.startswith("hx") or n.startswith(("hxv-hxt-", BRIDGE)) or n.endswith(BRIDGE[:8])
        ),
        "ip_forward": read("/proc/sys/net/ipv4/ip_forward"),
        "netfilter_tables": read("/proc/net/ip_tables_names"),
        "resolv.conf": read("/etc/resolv.conf"),
        "nsswitch.conf": read("/etc/nsswitch.conf"),
        "netns": [n for n in netns if not n.startswith(("hx-", "hxp-")) or n.startswith(("hx-hxt-", f"hxp-{BRIDGE}-"))],
    }


@pytest.fixture(scope="module")
def two_hosts():
    for name in HOSTS:
        harness("destroy", name, check=False)
    before = this_machine()
    for name, suite in HOSTS.items():
        harness("create", name, "--suite", suite)
    env = dict(line.split("=", 1) for line in harness("env", "hxt-a").stdout.split())
    yield {name: harness("ip", name).stdout.strip() for name in HOSTS}, env, before
    for name in HOSTS:
        harness("destroy", name, check=False)


def test_both_suites_boot_systemd_to_running(two_hosts):
    for name, suite in HOSTS.items():
        assert harness("exec", name, "systemctl", "is-system-running").stdout.strip() == "running", name
        os_release = harness("exec", name, "cat", "/etc/os-release").stdout
        assert f"VERSION_CODENAME={suite}" in os_release


def test_fresh_host_lets_only_root_in_with_the_provider_key(two_hosts):
    addresses, env, _ = two_hosts
    ssh = ["ssh", "-F", env["STAGING_SSH_CONFIG"], "-o", f"IdentityFile={env['STAGING_PROVIDER_KEY']}"]
    assert subprocess.run([*ssh, f"root@{addresses['hxt-a']}", "true"], capture_output=True).returncode == 0
    assert subprocess.run([*ssh, f"deploy@{addresses['hxt-a']}", "true"], capture_output=True).returncode != 0
    effective = harness("exec", "hxt-a", "sshd", "-T").stdout
    assert "passwordauthentication yes" in effective  # the cloud-init drop-in base must override


def test_hosts_reach_each_other_but_not_the_outside(two_hosts):
    addresses, _, _ = two_hosts
    reach_b = harness("exec", "hxt-a", "bash", "-c", f"exec 3<>/dev/tcp/{addresses['hxt-b']}/22", check=False)
    assert reach_b.returncode == 0
    assert harness("exec", "hxt-a", "ip", "route", "show", "default").stdout.strip() == ""


def test_probe_is_an_outside_machine_on_the_bridge(two_hosts):
    addresses, _, _ = two_hosts
    probe = harness(
        "probe",
        "--addr",
        "3",
        "--",
        "bash",
        "-c",
        f"ip -4 -br addr show dev eth0; exec 3<>/dev/tcp/{addresses['hxt-a']}/22",
    )
    assert f"{NET}.3/24" in probe.stdout


def test_the_bridge_keeps_its_mac_while_probes_come_and_go(two_hosts):
    # a bridge whose MAC followed its ports would leave the hosts' ARP caches pointing $NET.1 at
    # a MAC that is gone whenever a probe came or went: timeouts to every stand-in
    address = Path(f"/sys/class/net/{BRIDGE}/address")
    before = address.read_text()
    for probe in ("4", "5", "6"):
        harness("probe", "--addr", probe, "--", "true")
    assert address.read_text() == before
    assert Path(f"/sys/class/net/{BRIDGE}/addr_assign_type").read_text().strip() == "3"  # set, not inherited


def test_apt_works_through_the_proxy_on_the_bridge(two_hosts):
    update = harness("exec", "hxt-b", "apt-get", "update", "-q", check=False)
    assert update.returncode == 0, update.stdout[-2000:] + update.stderr[-2000:]
    assert f"http://{NET}.1:3142" in harness("exec", "hxt-b", "apt-config", "dump", "Acquire::http::Proxy").stdout


def test_the_internet_stand_ins_answer_on_the_bridge(two_hosts):
    # the resolver a VPS's provider would give, and the release downloads GitHub would serve
    answer = harness("exec", "hxt-a", "getent", "ahostsv4", "outside.example.org", check=False)
    if answer.stdout.split()[:1] != ["198.51.100.53"]:  # what an operator would look at next
        run = Path("/run/holistix-staging") / BRIDGE
        context = subprocess.run(
            f"cat {run}/resolver.log; ps -o pid,args -p $(cat {run}/resolver.pid); ss -lunp 'sport = 53';"
            f" dig +time=1 +tries=1 @{NET}.1 outside.example.org A",
            shell=True,
            capture_output=True,
            text=True,
        )
        pytest.fail(f"getent rc={answer.returncode}; on this machine:\n{context.stdout}{context.stderr}")
    listing = harness("exec", "hxt-b", "curl", "-fsS", f"http://{NET}.1:8800/").stdout
    assert "coredns_" in listing and ".tgz.sha256" in listing


def test_reboot_starts_a_new_boot_with_uptime_reset(two_hosts):
    boot_before = harness("exec", "hxt-a", "cat", "/proc/sys/kernel/random/boot_id").stdout
    harness("reboot", "hxt-a")
    assert harness("exec", "hxt-a", "cat", "/proc/sys/kernel/random/boot_id").stdout != boot_before
    uptime_seconds = float(harness("exec", "hxt-a", "cat", "/proc/uptime").stdout.split()[0])
    assert uptime_seconds < 60


def test_destroying_the_last_host_leaves_this_machine_as_it_was(two_hosts):
    _, _, before = two_hosts
    for name in HOSTS:
        harness("destroy", name)
    after = this_machine()
    for name in HOSTS:
        assert not Path(f"/var/lib/machines/{name}").exists()
        assert subprocess.run(["pgrep", "-f", f"_supervise {name}"], capture_output=True).returncode == 1
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    listeners = subprocess.run(["ss", "-Hltun", f"src {NET}.1"], capture_output=True, text=True).stdout
    assert listeners.strip() == "", (
        f"a stand-in of the bridge (apt proxy, resolver, downloads) still listens: {listeners}"
    )
    assert after == before
