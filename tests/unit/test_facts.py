"""Our facts parse what the commands really print (outputs recorded on Debian 12 and 13)."""

import pytest

from holistix_deploy.facts import ContainerVirtualization, OpenSsh, SshHostKeyBits, Ufw, WeakModuli

UFW_ACTIVE = """Status: active
Logging: on (low)
Default: deny (incoming), allow (outgoing), disabled (routed)
New profiles: skip

To                         Action      From
--                         ------      ----
22/tcp                     LIMIT IN    Anywhere                   # ssh, rate limited
---
Added user rules (see 'ufw status' for running firewall):
ufw limit 22/tcp comment 'ssh, rate limited'
ufw route allow 18081/tcp comment 'staging: public container port'
---
DEFAULT_INPUT_POLICY="DROP"
DEFAULT_OUTPUT_POLICY="ACCEPT"
DEFAULT_FORWARD_POLICY="DROP"
""".splitlines()


def test_ufw_policies_come_from_the_defaults_file_not_the_status_line():
    # `ufw status` says "disabled (routed)" when IP forwarding is off, whatever the policy
    fact = Ufw().process(UFW_ACTIVE)
    assert fact["defaults"] == {"incoming": "deny", "outgoing": "allow", "routed": "deny"}
    assert fact["active"] is True
    assert fact["rules"] == [
        "ufw limit 22/tcp comment 'ssh, rate limited'",
        "ufw route allow 18081/tcp comment 'staging: public container port'",
    ]


def test_fresh_ufw_is_inactive_without_rules():
    output = [
        "Status: inactive",
        "---",
        "Added user rules (see 'ufw status' for running firewall):",
        "(None)",
        "---",
        'DEFAULT_INPUT_POLICY="DROP"',
        'DEFAULT_OUTPUT_POLICY="ACCEPT"',
        'DEFAULT_FORWARD_POLICY="DROP"',
    ]
    fact = Ufw().process(output)
    assert fact == {
        "active": False,
        "defaults": {"incoming": "deny", "outgoing": "allow", "routed": "deny"},
        "rules": [],
    }


def test_openssh_version_and_algorithms():
    output = [
        "OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026",
        "---",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "---",
        "aes128-ctr",
        "---",
        "hmac-sha2-256",
    ]
    assert OpenSsh().process(output) == {
        "version": (9, 2),
        "kex": ["curve25519-sha256", "curve25519-sha256@libssh.org"],
        "ciphers": ["aes128-ctr"],
        "macs": ["hmac-sha2-256"],
    }


def test_openssh_fact_is_none_when_output_is_unexpected():
    assert OpenSsh().process(["ssh: command not found"]) is None


def test_host_key_bits():
    assert SshHostKeyBits().process(["3072 SHA256:abc root@host (RSA)"]) == 3072
    assert SshHostKeyBits().process([]) is None


def test_weak_moduli_count():
    assert WeakModuli().process(["12"]) == 12


def test_container_virtualization():
    assert ContainerVirtualization().process(["systemd-nspawn"]) == "systemd-nspawn"
    assert ContainerVirtualization().process(["none"]) is None


@pytest.mark.parametrize(
    ("fact_name", "binary_name", "printed", "release"),
    [
        # what the v1.52.1 release's binary prints for -version
        (
            "VictoriaLogsVersion",
            "victoria-logs",
            "echo victoria-logs-20251201-101010-tags-v1.52.1-0-gabcdef0",
            "1.52.1",
        ),
        # what the 2.13.0 release's binary prints for `jaeger version` (its log line goes to stderr)
        (
            "JaegerVersion",
            "jaeger",
            "echo 'application version: git-commit=abc, git-version=v2.13.0' >&2\n"
            'echo \'{"gitCommit":"abc","gitVersion":"v2.13.0","buildDate":"2025-12-03T00:00:00Z"}\'',
            "2.13.0",
        ),
        # what the 1.14.7 release's binary prints for -version
        ("CorednsVersion", "coredns", "echo CoreDNS-1.14.7\necho linux/amd64, go1.24.6, 2a3d5a7", "1.14.7"),
    ],
    ids=["victorialogs", "jaeger", "coredns"],
)
def test_a_release_version_is_read_from_what_the_release_binary_prints(
    tmp_path, fact_name, binary_name, printed, release
):
    import subprocess

    from holistix_deploy import facts

    fact = getattr(facts, fact_name)()
    binary = tmp_path / binary_name
    binary.write_text(f"#!/bin/sh\n{printed}\n")
    binary.chmod(0o755)
    output = subprocess.run(["sh", "-c", fact.command(str(binary))], capture_output=True, text=True).stdout
    assert fact.process(output.splitlines()) == release
    missing = subprocess.run(["sh", "-c", fact.command(str(tmp_path / "none"))], capture_output=True, text=True)
    assert fact.process(missing.stdout.splitlines()) is None


def test_a_user_files_hash_is_checked_against_the_password_file_on_the_host(tmp_path):
    """The dashboards' htpasswd line is remade only when it no longer matches the password:
    the check runs openssl with the password on stdin, as on the host."""
    import subprocess

    from holistix_deploy.facts import PasswordHashMatches

    fact = PasswordHashMatches()
    password, user_file = tmp_path / "dashboards_password", tmp_path / "dashboards.htpasswd"

    def matches() -> str:
        command = fact.command(password_file=str(password), user_file=str(user_file))
        return fact.process(subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout.splitlines())

    assert matches() == "missing"
    password.write_text("Zq8a0bcDEFghij1234567890klmnopqR")  # as generated: 32 characters, no newline
    assert matches() == "missing"
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], stdin=password.open(), capture_output=True, text=True
    )
    user_file.write_text(f"admin:{hashed.stdout}")
    assert matches() == "yes"
    password.write_text("another-password-made-after-a-deletion")
    assert matches() == "no"
