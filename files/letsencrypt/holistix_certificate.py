#!/usr/bin/python3
"""holistix-certificate: the platform's one certificate, for DOMAIN, *.DOMAIN and the user
containers of every organisation (*.org-<uuid>.DOMAIN), issued by DNS-01.

    holistix-certificate issue [--force]          issue when the names changed or 30 days are left
    holistix-certificate add-organisation UUID    add *.org-UUID.DOMAIN, then issue
    holistix-certificate remove-organisation UUID remove it, then issue
    holistix-certificate status                   the names wanted and the names served

Ganymede writes one certificate path into every organisation block, so every name lives in
one certificate; past the CA's name limit the command refuses. Before it asks the CA, it
checks that the DNS side works (a failed validation counts against the CA's rate limits).
Installed and configured (/etc/holistix/acme/certificate.json) by the letsencrypt module;
organisations added here are kept in /etc/holistix/acme/organisations.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

CONFIG = "/etc/holistix/acme/certificate.json"
RENEW_DAYS = 30


class Refused(Exception):
    pass


def _organisations(config: dict) -> list[str]:
    """Organisations from the inventory and from this command, in a stable order."""
    listed = set(config["organisations"])
    try:
        with open(config["organisations_file"]) as handle:
            listed |= {line.strip() for line in handle if line.strip()}
    except FileNotFoundError:
        pass
    return sorted(listed)


def wanted_names(config: dict) -> list[str]:
    domain = config["domain"]
    return [domain, f"*.{domain}"] + [f"*.org-{organisation}.{domain}" for organisation in _organisations(config)]


def served_names(config: dict) -> tuple[list[str], bool]:
    """(names in the live certificate, whether it is valid for RENEW_DAYS more days)."""
    cert = f"/etc/letsencrypt/live/{config['domain']}/cert.pem"
    if not os.path.exists(cert):
        return [], False
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert], capture_output=True, text=True
    ).stdout
    fresh = subprocess.run(
        ["openssl", "x509", "-checkend", str(RENEW_DAYS * 86400), "-noout", "-in", cert], capture_output=True
    ).returncode
    return sorted(re.findall(r"DNS:([^,\s]+)", text)), fresh == 0


def _linked(config: dict) -> bool:
    live = f"/etc/letsencrypt/live/{config['domain']}"
    return all(
        os.path.realpath(f"{config['tls_dir']}/{name}") == os.path.realpath(f"{live}/{name}")
        for name in ("fullchain.pem", "privkey.pem")
    )


def _answers_authoritatively(server: str, zone: str) -> bool:
    answer = subprocess.run(
        ["dig", "+norec", "+time=2", "+tries=2", f"@{server}", zone, "SOA"], capture_output=True, text=True
    ).stdout
    return bool(re.search(r"flags: qr aa[ ;]", answer))


def check_dns(config: dict) -> None:
    if config["provider"] == "coredns":
        for server in ("127.0.0.1", config["public_address"]):
            if not _answers_authoritatively(server, config["domain"]):
                raise Refused(
                    f"the DNS server on {server} does not answer for {config['domain']} authoritatively; "
                    "not asking the CA (a failed validation counts against its rate limits). "
                    "Check: systemctl status coredns"
                )
        if not os.access(config["dns_helper"], os.X_OK):
            raise Refused(f"{config['dns_helper']} is missing: run the coredns module first")
    elif not os.path.exists(config["cloudflare"]["credentials"]):
        raise Refused(f"{config['cloudflare']['credentials']} is missing: export HOLISTIX_DNS_API_TOKEN and converge")


def _certbot_command(config: dict, names: list[str]) -> list[str]:
    command = [
        "certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
        "--email", config["email"], "--server", config["server"], "--cert-name", config["domain"],
        "--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
        "--deploy-hook", config["deploy_hook"],
        # this command decided a new certificate is needed (names, CA, method or age): certbot
        # must not keep the old one because it is "not yet due"
        "--force-renewal",
    ]  # fmt: skip
    if config["provider"] == "coredns":
        command += [
            "--manual", "--preferred-challenges", "dns",
            "--manual-auth-hook", f"{config['challenge_hook']} auth",
            "--manual-cleanup-hook", f"{config['challenge_hook']} cleanup",
        ]  # fmt: skip
    else:
        cloudflare = config["cloudflare"]
        command += [
            "--dns-cloudflare", "--dns-cloudflare-credentials", cloudflare["credentials"],
            "--dns-cloudflare-propagation-seconds", str(cloudflare["propagation_seconds"]),
        ]  # fmt: skip
    for name in names:
        command += ["-d", name]
    return command


def certbot_environment(config: dict) -> dict:
    environment = dict(os.environ)
    environment.update(config.get("environment", {}))
    return environment


def issue(config: dict, force: bool = False) -> str:
    names = wanted_names(config)
    if len(names) > config["max_names"]:
        raise Refused(
            f"{len(names)} names ({len(names) - 2} organisations): the CA puts at most {config['max_names']} names in "
            "one certificate; remove organisations with: holistix-certificate remove-organisation UUID"
        )
    served, fresh = served_names(config)
    if not force and sorted(served) == sorted(names) and fresh and _linked(config):
        return f"the certificate for {config['domain']} is up to date ({len(names)} names)"
    check_dns(config)
    run = subprocess.run(
        _certbot_command(config, names), env=certbot_environment(config), capture_output=True, text=True
    )
    if run.returncode != 0:
        raise Refused(f"certbot failed:\n{run.stdout[-2000:]}{run.stderr[-4000:]}")
    served, _ = served_names(config)
    return f"issued the certificate for {config['domain']}: {', '.join(served)}"


def _change_organisation(config: dict, organisation: str, add: bool) -> None:
    try:
        organisation = str(uuid.UUID(organisation))
    except ValueError:
        raise Refused(f"{organisation!r} is not an organisation id (a UUID)") from None
    current = set()
    if os.path.exists(config["organisations_file"]):
        with open(config["organisations_file"]) as handle:
            current = {line.strip() for line in handle if line.strip()}
    if not add and organisation in config["organisations"]:
        raise Refused(f"organisation {organisation} is listed in the inventory (acme_organisations): remove it there")
    wanted = current | {organisation} if add else current - {organisation}
    names = 2 + len(wanted | set(config["organisations"]))
    if names > config["max_names"]:
        raise Refused(
            f"adding organisation {organisation} would make {names} names; the CA puts at most "
            f"{config['max_names']} in one certificate. Remove an organisation first"
        )
    temporary = config["organisations_file"] + ".new"
    with open(temporary, "w") as handle:
        handle.write("".join(f"{line}\n" for line in sorted(wanted)))
    os.chmod(temporary, 0o644)
    os.replace(temporary, config["organisations_file"])


def main(argv: list[str]) -> int:
    with open(CONFIG) as handle:
        config = json.load(handle)
    try:
        if argv[:1] == ["issue"] and argv[1:] in ([], ["--force"]):
            print(issue(config, force=argv[1:] == ["--force"]))
        elif len(argv) == 2 and argv[0] in ("add-organisation", "remove-organisation"):
            _change_organisation(config, argv[1], add=argv[0] == "add-organisation")
            print(issue(config))
        elif argv == ["status"]:
            served, fresh = served_names(config)
            print(json.dumps({"wanted": wanted_names(config), "served": served, "fresh": fresh}, indent=2))
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
    except Refused as error:
        print(f"holistix-certificate: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
