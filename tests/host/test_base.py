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
    with host.sudo():
        for name in ("session_cookie_key", "credentials_encryption_key"):
            value = host.file(f"{settings.secrets_dir}/{name}").content_string.strip()
            assert len(value) == 64 and int(value, 16) > 0, name
        keys = {
            host.file(f"{settings.secrets_dir}/{n}").content_string
            for n in ("session_cookie_key", "credentials_encryption_key")
        }
    assert len(keys) == 2, "two secrets must never share a value"


def test_jwt_key_pair_is_rsa_4096_and_matches(host, settings):
    with host.sudo():
        private = host.check_output(
            f"openssl pkey -in {settings.secrets_dir}/jwt_private_key.pem -noout -text | head -1"
        )
        derived = host.check_output(f"openssl pkey -in {settings.secrets_dir}/jwt_private_key.pem -pubout")
        stored = host.file(f"{settings.secrets_dir}/jwt_public_key.pem").content_string.strip()
    assert "4096 bit" in private
    assert derived.strip() == stored
