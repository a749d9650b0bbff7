"""base: bootstrap and harden a fresh VPS.

Manages: the base packages; the deploy user (passwordless sudo through a visudo-checked
drop-in, exactly the inventory's SSH keys); the environment's secrets directory
/etc/holistix/<env>/ with the secrets the host generates and those the operator gives; SSH
hardening (a drop-in that wins over cloud-init's, root login closed once the run itself logs
in as the deploy user, every change proven by a fresh login or rolled back); unattended
security upgrades; time sync; a persistent, capped journal; kernel parameters; fail2ban.

Reads: deploy_user, deploy_authorized_keys, base_extra_packages, apt_cache_valid_seconds,
environment, ssh_extra_options, unattended_upgrades_*, journald_max_use, time_servers,
fail2ban_*, sysctl_overrides, and the HOLISTIX_* secret variables.
Reloads: sshd, systemd-journald, systemd-timesyncd, systemd-sysctl, fail2ban (on change only).

First run on a fresh host connects as root with the provider's key:
    pyinfra inventories/prod.py deploys/base.py --user root --key ~/.ssh/provider_key
Later runs connect as the deploy user (the inventory's ssh_user) and close root login.
"""

import getpass
from io import StringIO

from pyinfra import host
from pyinfra.facts.files import Directory
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from holistix_deploy import hardening
from holistix_deploy.facts import ContainerVirtualization, OpenSsh, SshHostKeyBits, WeakModuli
from holistix_deploy.operations import (
    SSHD_RELOAD,
    generated_secret,
    operator_secret,
    prove_ssh_access,
    sshd_drop_in,
    validated_file,
)
from holistix_deploy.secrets import GENERATED_SECRETS, read_operator_secrets
from holistix_deploy.settings import load_settings
from holistix_deploy.templating import render

settings = load_settings(host)

apt.packages(
    name="Ensure the base and hardening packages are installed",
    packages=[*hardening.BASE_PACKAGES, *hardening.HARDENING_PACKAGES, *settings.base_extra_packages],
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)

deploy_user = server.user(
    name=f"Ensure the deploy user {settings.deploy_user} exists with exactly the inventory's SSH keys",
    user=settings.deploy_user,
    shell="/bin/bash",
    create_home=True,
    public_keys=list(settings.deploy_authorized_keys),
    delete_keys=True,
)

sudo_rule = validated_file(
    name=f"Ensure {settings.deploy_user} has passwordless sudo (checked by visudo)",
    dest="/etc/sudoers.d/90-holistix-deploy",
    candidate="/etc/sudoers.d/.90-holistix-deploy.candidate",
    content=render("base/sudoers-deploy.j2", deploy_user=settings.deploy_user),
    validate="visudo -cq -f {path}",
    mode="0440",
)

prove_ssh_access(
    name=f"Ensure {settings.deploy_user} can still log in and sudo after a change to its keys or sudo rule",
    change=f"the keys or sudo rule of {settings.deploy_user}",
    _if=any_changed(deploy_user, sudo_rule),
)

# the home of system users that have none: it must not exist (an earlier release made it)
server.shell(
    name="Ensure /nonexistent does not exist",
    commands=["rmdir /nonexistent"],
    _if=lambda: host.get_fact(Directory, path="/nonexistent") is not None,
)

files.directory(
    name="Ensure /etc/holistix exists",
    path="/etc/holistix",
    user="root",
    group="root",
    mode="0755",
)
files.directory(
    name=f"Ensure the secrets directory {settings.secrets_dir} is root-only",
    path=settings.secrets_dir,
    user="root",
    group="root",
    mode="0700",
)

for secret in GENERATED_SECRETS:
    generated_secret(
        name=f"Ensure the generated secret {secret.name} exists",
        path=f"{settings.secrets_dir}/{secret.name}",
        command=secret.command,
        directory=settings.secrets_dir,
    )

for secret_name, value in sorted(read_operator_secrets().items()):
    operator_secret(
        name=f"Ensure the operator secret {secret_name} is stored",
        path=f"{settings.secrets_dir}/{secret_name}",
        value=value,
    )


# -- SSH ----------------------------------------------------------------------------------------
RSA_HOST_KEY = "/etc/ssh/ssh_host_rsa_key"
rsa_host_key = server.shell(
    name=f"Ensure the RSA host key has {hardening.SSH_RSA_HOST_KEY_BITS} bits",
    commands=[
        # made beside the old key and swapped in: sshd never sees a missing host key
        f"rm -f {RSA_HOST_KEY}.new {RSA_HOST_KEY}.new.pub"
        f" && ssh-keygen -q -t rsa -b {hardening.SSH_RSA_HOST_KEY_BITS} -N '' -f {RSA_HOST_KEY}.new"
        f" && mv {RSA_HOST_KEY}.new.pub {RSA_HOST_KEY}.pub && mv {RSA_HOST_KEY}.new {RSA_HOST_KEY}"
    ],
    _if=lambda: (host.get_fact(SshHostKeyBits, path=RSA_HOST_KEY) or 0) < hardening.SSH_RSA_HOST_KEY_BITS,
)
moduli = server.shell(
    name="Ensure /etc/ssh/moduli has no Diffie-Hellman groups under 3071 bits",
    commands=[
        "awk '/^#/ || $5 >= 3071' /etc/ssh/moduli > /etc/ssh/moduli.strong && mv /etc/ssh/moduli.strong /etc/ssh/moduli"
    ],
    _if=lambda: host.get_fact(WeakModuli) > 0,
)
host_key_reload = server.shell(
    name="Ensure sshd uses the new host key and moduli",
    commands=[SSHD_RELOAD],
    _if=lambda: rsa_host_key.did_change() or moduli.did_change(),
)
prove_ssh_access(
    name="Ensure SSH logins still work after sshd took the new host key and moduli",
    change="sshd's new RSA host key and moduli",
    _if=host_key_reload.did_change,
)

openssh = host.get_fact(OpenSsh) or {"version": (0, 0), "kex": [], "ciphers": [], "macs": []}
connected_as = host.data.get("ssh_user") or getpass.getuser()
sshd_drop_in(
    name="Ensure the SSH hardening drop-in is in place (checked by sshd -t, proven by a fresh login)",
    dest="/etc/ssh/sshd_config.d/00-holistix-hardening.conf",
    content=render(
        "base/sshd-hardening.conf.j2",
        audit_policy=hardening.SSH_AUDIT_POLICY,
        openssh_version=".".join(map(str, openssh["version"])),
        # closing root in the run that logs in as root would end that very run's access path
        permit_root_login="prohibit-password" if connected_as == "root" else "no",
        rsa_bits=hardening.SSH_RSA_HOST_KEY_BITS,
        host_key_algorithms=hardening.SSH_HOST_KEY_ALGORITHMS,
        kex=hardening.supported(hardening.SSH_KEX, openssh["kex"]),
        ciphers=hardening.supported(hardening.SSH_CIPHERS, openssh["ciphers"]),
        macs=hardening.supported(hardening.SSH_MACS, openssh["macs"]),
        extra_options=settings.ssh_extra_options,
    ),
)

# -- updates, time, journal, kernel, fail2ban ------------------------------------------------------
upgrades_config = files.put(
    name="Ensure unattended-upgrades installs security updates daily",
    src=StringIO(
        render(
            "base/unattended-upgrades.conf.j2",
            reboot=settings.unattended_upgrades_reboot,
            reboot_time=settings.unattended_upgrades_reboot_time,
        )
    ),
    dest="/etc/apt/apt.conf.d/52holistix-unattended-upgrades",
    mode="0644",
)
systemd.service(
    name="Ensure the apt timers that run unattended-upgrades are enabled",
    service="apt-daily-upgrade.timer",
    running=True,
    enabled=True,
)

timesyncd_config = files.put(
    name="Ensure systemd-timesyncd uses the configured time servers",
    src=StringIO(render("base/timesyncd.conf.j2", servers=settings.time_servers)),
    dest="/etc/systemd/timesyncd.conf.d/60-holistix.conf",
    mode="0644",
)
systemd.service(
    name="Ensure systemd-timesyncd is enabled",
    service="systemd-timesyncd",
    running=None,
    enabled=True,
)
# Inside a container the unit's ConditionVirtualization=!container keeps it stopped: the
# container shares the host's clock, which it cannot set anyway.
systemd.service(
    name="Ensure systemd-timesyncd is running with its configuration",
    service="systemd-timesyncd",
    running=True,
    restarted=True,
    _if=lambda: (
        host.get_fact(ContainerVirtualization) is None
        and (
            timesyncd_config.did_change()
            or not host.get_fact(SystemdStatus, services=["systemd-timesyncd"]).get("systemd-timesyncd.service")
        )
    ),
)

journald_config = files.put(
    name="Ensure the journal is persistent and capped",
    src=StringIO(render("base/journald.conf.j2", max_use=settings.journald_max_use)),
    dest="/etc/systemd/journald.conf.d/60-holistix.conf",
    mode="0644",
)
systemd.service(
    name="Ensure systemd-journald runs with the persistent configuration",
    service="systemd-journald",
    running=True,
    restarted=True,
    _if=journald_config.did_change,
)

sysctl_config = files.put(
    name="Ensure the kernel hardening parameters are configured",
    src=StringIO(
        render("base/sysctl-hardening.conf.j2", settings=hardening.sysctl_settings(settings.sysctl_overrides))
    ),
    dest="/etc/sysctl.d/60-holistix-hardening.conf",
    mode="0644",
)
systemd.service(
    name="Ensure the kernel hardening parameters are applied",
    service="systemd-sysctl",
    running=None,
    restarted=True,
    _if=sysctl_config.did_change,
)

fail2ban_config = files.put(
    name="Ensure fail2ban guards sshd",
    src=StringIO(
        render(
            "base/fail2ban-sshd.local.j2",
            maxretry=settings.fail2ban_sshd_maxretry,
            ignore=[str(network) for network in settings.fail2ban_ignore_networks],
        )
    ),
    dest="/etc/fail2ban/jail.d/60-holistix-sshd.local",
    mode="0644",
)
systemd.service(
    name="Ensure fail2ban is running with the sshd jail",
    service="fail2ban",
    running=True,
    enabled=True,
    restarted=True,
    _if=fail2ban_config.did_change,
)
systemd.service(
    name="Ensure fail2ban is running and enabled",
    service="fail2ban",
    running=True,
    enabled=True,
)
