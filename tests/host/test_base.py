"""base: the deploy user works, sudo is non-interactive, secrets exist and stay root-only."""

import pytest

from holistix_deploy.secrets import GENERATED_SECRETS


def test_system_booted_without_failed_units(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    failed = host.run("systemctl --failed --no-legend --plain").stdout
    assert state == "running", failed


def test_pyinfra_logs_in_as_the_deploy_user(host, settings):
    assert host.user().name == settings.deploy_user


def test_deploy_user_has_a_login_shell_and_private_home(host, settings):
    user = host.user(settings.deploy_user)
    assert user.shell == "/bin/bash"
    home = host.file(user.home)
    assert home.is_directory and home.user == settings.deploy_user
    assert home.mode & 0o002 == 0, "home must not be world-writable"


def test_authorized_keys_are_exactly_the_inventory_keys(host, settings):
    user = host.user(settings.deploy_user)
    keys_file = host.file(f"{user.home}/.ssh/authorized_keys")
    assert keys_file.user == settings.deploy_user and keys_file.mode == 0o600
    assert host.file(f"{user.home}/.ssh").mode == 0o700
    installed = sorted(line.strip() for line in keys_file.content_string.splitlines() if line.strip())
    assert installed == sorted(settings.deploy_authorized_keys)


def test_sudo_works_without_a_password_prompt(host):
    result = host.run("sudo -n id -un")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "root"


def test_sudoers_drop_in_is_root_only_and_valid(host):
    with host.sudo():
        drop_in = host.file("/etc/sudoers.d/90-holistix-deploy")
        assert drop_in.user == "root" and drop_in.mode == 0o440
        assert host.run("visudo -c").rc == 0
        assert not host.file("/etc/sudoers.d/.90-holistix-deploy.candidate").exists


@pytest.mark.parametrize("command", ["curl", "dig", "jq", "openssl", "rsync", "sudo", "python3", "lsof"])
def test_operator_tools_are_installed(host, command):
    assert host.exists(command)


def test_secrets_directory_is_root_only(host, settings):
    with host.sudo():
        directory = host.file(settings.secrets_dir)
        assert directory.is_directory
        assert (directory.user, directory.group, directory.mode) == ("root", "root", 0o700)


def test_deploy_user_cannot_read_secrets_without_sudo(host, settings):
    assert host.run(f"ls {settings.secrets_dir}").rc != 0


@pytest.mark.parametrize("secret", [s.name for s in GENERATED_SECRETS])
def test_generated_secret_exists_root_only(host, settings, secret):
    with host.sudo():
        secret_file = host.file(f"{settings.secrets_dir}/{secret}")
        assert secret_file.exists and secret_file.size > 0
        assert (secret_file.user, secret_file.group, secret_file.mode) == ("root", "root", 0o600)


def test_no_half_written_secret_is_left(host, settings):
    with host.sudo():
        leftovers = host.run(f"find {settings.secrets_dir} -name '*.new'").stdout.split()
    assert leftovers == []


def test_session_keys_are_32_random_bytes(host, settings):
    # only booleans reach an assertion: pytest prints the values of a failing one
    with host.sudo():
        values = [
            host.file(f"{settings.secrets_dir}/{name}").content_string.strip()
            for name in ("session_cookie_key", "credentials_encryption_key")
        ]
    all_64_hex = all(len(v) == 64 and all(c in "0123456789abcdef" for c in v) for v in values)
    distinct = len(set(values)) == 2
    assert all_64_hex, "each key must be 32 random bytes in hex"
    assert distinct, "two secrets must never share a value"


def test_jwt_key_pair_is_rsa_4096_and_matches(host, settings):
    with host.sudo():
        private = host.check_output(
            f"openssl pkey -in {settings.secrets_dir}/jwt_private_key.pem -noout -text | head -1"
        )
        derived = host.check_output(f"openssl pkey -in {settings.secrets_dir}/jwt_private_key.pem -pubout")
        stored = host.file(f"{settings.secrets_dir}/jwt_public_key.pem").content_string.strip()
    assert "4096 bit" in private
    assert derived.strip() == stored


# -- SSH -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd_effective(host) -> dict[str, str]:
    """sshd's effective configuration (sshd -T), what sshd really does, drop-ins included."""
    with host.sudo():
        output = host.check_output("sshd -T -C user=deploy,host=client,addr=192.0.2.1")
    return dict(line.split(" ", 1) for line in output.splitlines() if " " in line)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("passwordauthentication", "no"),
        ("kbdinteractiveauthentication", "no"),
        ("permitemptypasswords", "no"),
        ("pubkeyauthentication", "yes"),
        ("authenticationmethods", "publickey"),
        ("maxauthtries", "3"),
        ("logingracetime", "20"),
        ("x11forwarding", "no"),
        ("allowagentforwarding", "no"),
        ("allowtcpforwarding", "no"),
        ("permittunnel", "no"),
        ("permituserenvironment", "no"),
    ],
)
def test_sshd_is_hardened(sshd_effective, keyword, value):
    assert sshd_effective[keyword] == value


def test_sshd_refuses_root_login_once_the_deploy_user_runs_pyinfra(host, sshd_effective, settings):
    # the suites log in as the deploy user, so the converge that preceded them did too
    assert host.user().name == settings.deploy_user
    assert sshd_effective["permitrootlogin"] == "no"


def test_sshd_keeps_the_key_exchange_pyinfra_speaks(sshd_effective):
    assert "curve25519-sha256@libssh.org" in sshd_effective["kexalgorithms"].split(",")


def test_cloud_init_drop_in_cannot_reenable_passwords(host):
    with host.sudo():
        drop_ins = host.check_output("ls /etc/ssh/sshd_config.d/").split()
    ours = "00-holistix-hardening.conf"
    assert ours in drop_ins
    assert sorted(d for d in drop_ins if d.endswith(".conf"))[0] == ours, "ours must be read first"


def test_ssh_host_keys_are_ed25519_and_rsa_4096(host, sshd_effective):
    assert sshd_effective["hostkeyalgorithms"].split(",") == ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
    bits = host.check_output("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub").split()[0]
    assert int(bits) >= 4096


def test_no_weak_diffie_hellman_moduli(host):
    weak = host.check_output("awk '!/^#/ && NF && $5 < 3071' /etc/ssh/moduli | wc -l")
    assert int(weak) == 0


def test_sshd_listens_on_22(host):
    assert host.socket("tcp://0.0.0.0:22").is_listening
    active = [u for u in ("ssh.service", "ssh.socket") if host.run(f"systemctl is-active {u}").rc == 0]
    assert active, "sshd runs either as a daemon or socket-activated (Ubuntu 24.04)"


def test_sshd_config_is_valid_and_no_candidate_is_left(host):
    with host.sudo():
        assert host.run("sshd -t").rc == 0
        assert host.run("ls /etc/ssh/sshd_config.d/").stdout.count(".candidate") == 0


# -- updates, time, journal --------------------------------------------------------------------


def test_unattended_upgrades_run_daily(host):
    assert host.package("unattended-upgrades").is_installed
    dump = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert 'APT::Periodic::Update-Package-Lists "1";' in dump
    assert host.service("apt-daily-upgrade.timer").is_enabled


def test_unattended_upgrades_take_security_updates_and_do_not_reboot(host, settings):
    with host.sudo():
        dry_run = host.run("unattended-upgrade --dry-run --debug")
    assert dry_run.rc == 0, dry_run.stderr
    allowed = next(line for line in (dry_run.stdout + dry_run.stderr).splitlines() if "Allowed origins are" in line)
    assert "security" in allowed.lower()
    reboot = host.check_output("apt-config dump Unattended-Upgrade::Automatic-Reboot")
    expected = "true" if settings.unattended_upgrades_reboot else "false"
    assert f'Unattended-Upgrade::Automatic-Reboot "{expected}";' in reboot


def test_time_is_kept_by_timesyncd(host):
    timesyncd = host.service("systemd-timesyncd")
    assert timesyncd.is_enabled
    container = host.run("systemd-detect-virt --container").stdout.strip()
    if container and container != "none":
        # ConditionVirtualization=!container: a container uses (and cannot set) its host's clock
        condition = host.check_output("systemctl show -p ConditionResult --value systemd-timesyncd")
        assert condition == "no", f"in a {container} container timesyncd is expected to stand down"
    else:
        assert timesyncd.is_running


def test_journal_is_persistent_and_capped(host, settings):
    effective = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "Storage=persistent" in effective
    assert f"SystemMaxUse={settings.journald_max_use}" in effective
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}").is_directory


# -- kernel parameters -----------------------------------------------------------------------

from holistix_deploy.hardening import SYSCTL_BASELINE  # noqa: E402


@pytest.mark.parametrize("key", [k.lstrip("-") for k in SYSCTL_BASELINE])
def test_kernel_parameter_is_hardened(host, settings, key):
    from holistix_deploy.hardening import sysctl_settings

    wanted = {k.lstrip("-"): v for k, v in sysctl_settings(settings.sysctl_overrides).items()}[key]
    written = host.file("/etc/sysctl.d/60-holistix-hardening.conf").content_string
    assert any(line.lstrip("-").split(" = ") == [key, wanted] for line in written.splitlines())
    path = "/proc/sys/" + key.replace(".", "/")
    in_container = host.run("systemd-detect-virt --container").rc == 0
    if not host.file(path).exists:
        # optional keys ("-") may be absent from a kernel; nspawn also hides a few (kernel.sysrq)
        assert SYSCTL_BASELINE.get(f"-{key}") is not None or in_container, f"{key} is missing from this kernel"
        return
    with host.sudo():
        writable = host.run(f"test -w {path}").rc == 0
    if writable:
        assert str(host.sysctl(key)) == wanted
    else:
        # only a container's /proc/sys is read-only outside net.*: there the file is what we can check
        assert in_container, f"{key} is read-only on a VM"


# -- fail2ban and exposure ---------------------------------------------------------------------


def test_fail2ban_guards_sshd(host, settings):
    assert host.service("fail2ban").is_running and host.service("fail2ban").is_enabled
    with host.sudo():
        status = host.check_output("fail2ban-client status sshd")
        maxretry = host.check_output("fail2ban-client get sshd maxretry")
    assert "Journal matches:" in status and "_SYSTEMD_UNIT=ssh" in status
    assert int(maxretry) == settings.fail2ban_sshd_maxretry


# what may listen beyond loopback, and which programs may own it: sshd (or systemd holding
# Ubuntu's ssh.socket), CoreDNS (the domain's name server, the Docker bridge's resolver) and nginx
OUTSIDE_LISTENERS = {
    ("22", "tcp"): ("sshd", "systemd"),
    ("80", "tcp"): ("nginx",),
    ("443", "tcp"): ("nginx",),
    ("53", "tcp"): ("coredns",),
    ("53", "udp"): ("coredns",),
}


def _gateway_listeners(settings) -> dict[tuple[str, str], tuple[str, ...]]:
    """The gateway pool's: each gateway's VPN port (public, by Docker's proxy), and on the bridge
    address only, their HTTP ports and the build server."""
    if settings.gateway_image is None:
        return {}
    ports = range(settings.gateway_pool_size)
    expected = {(str(settings.gateway_vpn_port_base + i), "udp"): ("docker-proxy",) for i in ports}
    bridge = str(settings.docker_bridge_cidr.ip)
    expected |= {(f"{bridge}:{settings.gateway_http_port_base + i}", "tcp"): ("docker-proxy",) for i in ports}
    expected[(f"{bridge}:{settings.gateway_build_server_port}", "tcp")] = ("python3",)
    return expected


def _monitoring_listeners(settings) -> dict[tuple[str, str], tuple[str, ...]]:
    """Jaeger's OTLP receivers, on the bridge address only (for the gateways)."""
    from holistix_deploy import monitoring

    return {
        (address, "tcp"): ("jaeger",)
        for component in monitoring.COMPONENTS
        for address in monitoring.listen_addresses(component, settings)
        if not address.startswith("127.")
    }


def test_no_unneeded_service_listens_outside_loopback(host, settings):
    with host.sudo():
        listening = host.check_output("ss -Htulnp").splitlines()
    allowed = OUTSIDE_LISTENERS | _gateway_listeners(settings) | _monitoring_listeners(settings)
    unexpected = []
    for line in listening:
        fields = line.split()
        protocol, local, owner = fields[0], fields[4], " ".join(fields[6:])
        address, port = local.rsplit(":", 1)
        if address.strip("[]") in ("127.0.0.1", "::1") or address.startswith("127.") or "%lo" in address:
            continue
        programs = allowed.get((port, protocol), ()) or allowed.get((f"{address}:{port}", protocol), ())
        if not any(f'(("{program}"' in owner for program in programs):
            unexpected.append(f"{port}/{protocol} {owner}")
    assert unexpected == [], f"unexpected listeners: {unexpected}"
