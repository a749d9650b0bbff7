"""base: the bootstrap of a fresh VPS.

Manages: the base packages, the deploy user (passwordless sudo through a visudo-checked
drop-in, exactly the inventory's SSH keys), and the environment's secrets directory
/etc/holistix/<env>/ with the secrets the host generates and those the operator gives.

Reads: deploy_user, deploy_authorized_keys, base_extra_packages, apt_cache_valid_seconds,
environment, and the HOLISTIX_* secret variables. Reloads nothing.

First run on a fresh host connects as root with the provider's key:
    pyinfra inventories/prod.py deploys/base.py --user root
Later runs connect as the deploy user (the inventory's ssh_user).
"""

from pyinfra import host
from pyinfra.operations import apt, files, server

from holistix_deploy.operations import generated_secret, operator_secret, validated_file
from holistix_deploy.secrets import GENERATED_SECRETS, read_operator_secrets
from holistix_deploy.settings import load_settings
from holistix_deploy.templating import render

settings = load_settings(host)

# What the platform's tooling and an operator on the box expect; bind9-dnsutils is the real
# package behind the "dnsutils" name (on Debian 13 only the virtual name is left).
BASE_PACKAGES = [
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
]

apt.packages(
    name="Ensure the base packages are installed",
    packages=BASE_PACKAGES + list(settings.base_extra_packages),
    update=True,
    cache_time=settings.apt_cache_valid_seconds,
    no_recommends=True,
)

server.user(
    name=f"Ensure the deploy user {settings.deploy_user} exists with exactly the inventory's SSH keys",
    user=settings.deploy_user,
    shell="/bin/bash",
    create_home=True,
    public_keys=list(settings.deploy_authorized_keys),
    delete_keys=True,
)

validated_file(
    name=f"Ensure {settings.deploy_user} has passwordless sudo (checked by visudo)",
    dest="/etc/sudoers.d/90-holistix-deploy",
    candidate="/etc/sudoers.d/.90-holistix-deploy.candidate",
    content=render("base/sudoers-deploy.j2", deploy_user=settings.deploy_user),
    validate="visudo -cq -f {path}",
    mode="0440",
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
