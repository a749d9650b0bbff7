"""Hardening policy shared by the base module and its tests: what "hardened" means here.

Sources: ssh-audit 3.9.0's built-in policy "Hardened Ubuntu Server 24.04 LTS (version 2)"
(ssh_audit/builtin_policies.py) and dev-sec linux-baseline's sysctl controls.
"""

from __future__ import annotations

# Operator tools; bind9-dnsutils is the real package behind "dnsutils" (virtual on Debian 13).
BASE_PACKAGES = (
    "acl",
    "bind9-dnsutils",
    "ca-certificates",
    "curl",
    "gnupg",
    "jq",
    "lsof",
    "openssl",
    "psmisc",
    "python3",
    "rsync",
    "sudo",
    "unzip",
)
HARDENING_PACKAGES = (
    "openssh-server",
    "unattended-upgrades",
    "systemd-timesyncd",
    "fail2ban",
    "python3-systemd",
    "iptables",
)

# ssh-audit compares these lists in order; we keep the policy's order and drop only names the
# installed OpenSSH does not know (sshd refuses unknown names). curve25519-sha256@libssh.org is
# the one key exchange paramiko (pyinfra) speaks, and the policy keeps it.
SSH_KEX = (
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
)
SSH_CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-gcm@openssh.com",
    "aes128-ctr",
)
SSH_MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com")
SSH_HOST_KEY_ALGORITHMS = ("ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256")
SSH_RSA_HOST_KEY_BITS = 4096
SSH_AUDIT_POLICY = "Hardened Ubuntu Server 24.04 LTS (version 2)"


def supported(policy: tuple[str, ...], available: list[str]) -> list[str]:
    """The policy's algorithms this OpenSSH build knows, in the policy's order."""
    return [name for name in policy if name in available]


# Kernel parameters (dev-sec linux-baseline sysctl-02..35). IP forwarding is left alone: Docker
# needs it on. A leading "-" tells systemd-sysctl to skip a key the kernel lacks (Yama, BPF).
SYSCTL_BASELINE = {
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.default.rp_filter": "1",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv4.conf.default.accept_source_route": "0",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.secure_redirects": "0",
    "net.ipv4.conf.default.secure_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.default.send_redirects": "0",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.conf.default.log_martians": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv4.icmp_ignore_bogus_error_responses": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.tcp_rfc1337": "1",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
    "net.ipv6.conf.all.accept_source_route": "0",
    "net.ipv6.conf.default.accept_source_route": "0",
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.sysrq": "0",
    "kernel.randomize_va_space": "2",
    "-kernel.yama.ptrace_scope": "2",
    "-kernel.kexec_load_disabled": "1",
    "-kernel.unprivileged_bpf_disabled": "1",
    "-net.core.bpf_jit_harden": "2",
    "fs.suid_dumpable": "0",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
    "fs.protected_fifos": "2",
    "fs.protected_regular": "2",
}


def sysctl_settings(overrides: dict[str, str]) -> dict[str, str]:
    """Baseline merged with the operator's overrides (an override replaces "-key" and "key")."""
    merged = dict(SYSCTL_BASELINE)
    for key, value in overrides.items():
        merged.pop(f"-{key}", None)
        merged[key] = str(value)
    return merged
