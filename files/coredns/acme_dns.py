#!/usr/bin/python3
"""holistix-acme-dns: DNS-01 challenge records in this host's CoreDNS.

    holistix-acme-dns add _acme-challenge.<name under DOMAIN> <value>
    holistix-acme-dns remove _acme-challenge.<name under DOMAIN> <value>
    holistix-acme-dns list

Every challenge name is a zone of its own, a file db.<name> beside the domain's zone: the domain's
zone, which the coredns module renders, is never edited here, so the two never race. A name can
hold several values at once (DOMAIN and *.DOMAIN share _acme-challenge.DOMAIN). The file is
checked by named-checkzone before it is swapped in. add and remove return only once CoreDNS
serves the change authoritatively on 127.0.0.1; they fail after the configured timeout.

Installed and configured (/etc/coredns/holistix-acme-dns.json) by the coredns module; called by
the letsencrypt module's certbot hooks.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time

CONFIG = "/etc/coredns/holistix-acme-dns.json"
# ACME puts base64url(sha256(key authorization)) in the record: 43 characters
VALUE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
TXT_LINE = re.compile(r'^@\s+\d+\s+IN\s+TXT\s+"([^"]*)"$')
SOA_LINE = re.compile(r"^@\s+\d+\s+IN\s+SOA\s+\S+\s+\S+\s+(\d+)\s")


class Refused(Exception):
    pass


def _challenge_name(name: str, domain: str) -> str:
    name = name.lower().rstrip(".")
    if not name.startswith("_acme-challenge.") or not (name.endswith("." + domain)):
        raise Refused(f"{name!r}: not a challenge name under {domain} (_acme-challenge.<name>.{domain})")
    if not re.fullmatch(r"[a-z0-9_.-]+", name) or ".." in name:
        raise Refused(f"{name!r}: only letters, digits, '.', '-' and '_' are allowed in a challenge name")
    return name


def _zone_path(config: dict, name: str) -> str:
    return os.path.join(config["zones_dir"], "db." + name)


def _read(path: str) -> tuple[int, list[str]]:
    """(serial, values) of a challenge zone file this helper wrote; (0, []) when absent."""
    try:
        with open(path) as zone:
            lines = zone.read().splitlines()
    except FileNotFoundError:
        return 0, []
    serial = next((int(m[1]) for m in map(SOA_LINE.match, lines) if m), 0)
    return serial, [m[1] for m in map(TXT_LINE.match, lines) if m]


def _write(config: dict, name: str, serial: int, values: list[str]) -> None:
    path = _zone_path(config, name)
    if not values:
        if os.path.exists(path):
            os.remove(path)
        return
    ttl = config["ttl"]
    text = (
        f"; Managed by holistix-acme-dns (DNS-01 challenges). Removed when the last value goes.\n"
        f"$ORIGIN {name}.\n$TTL {ttl}\n"
        f"@ {ttl} IN SOA {config['nameserver']} {config['mailbox']} {serial} 3600 900 1209600 {ttl}\n"
        f"@ {ttl} IN NS {config['nameserver']}\n" + "".join(f'@ {ttl} IN TXT "{value}"\n' for value in values)
    )
    # a name the zone loader ignores (it loads only db.*), in the same directory for an atomic rename
    candidate = os.path.join(config["zones_dir"], f".candidate.{name}")
    with open(candidate, "w") as handle:
        handle.write(text)
    os.chmod(candidate, 0o644)
    check = subprocess.run(
        ["named-checkzone", "-q", "-k", "fail", "-n", "fail", "-i", "full", name, candidate],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        os.remove(candidate)
        raise Refused(f"named-checkzone rejected the challenge zone {name}: {check.stdout}{check.stderr}".strip())
    os.rename(candidate, path)


def _served_values(name: str) -> list[str] | None:
    """TXT values CoreDNS answers authoritatively for name; None when it does not answer."""
    answer = subprocess.run(
        ["dig", "+norec", "+time=1", "+tries=1", "-t", "TXT", name, "@127.0.0.1"],
        capture_output=True,
        text=True,
    )
    if answer.returncode != 0 or " aa" not in answer.stdout.split("flags:", 1)[-1].split(";", 1)[0]:
        return None
    return re.findall(rf'^{re.escape(name)}\.\s+\d+\s+IN\s+TXT\s+"([^"]*)"', answer.stdout, re.M)


def _wait(config: dict, name: str, value: str, present: bool) -> float:
    started = time.monotonic()
    while True:
        values = _served_values(name)
        if values is not None and (value in values) == present:
            return time.monotonic() - started
        if time.monotonic() - started > config["timeout_seconds"]:
            state = "served" if present else "gone"
            raise Refused(
                f"CoreDNS still does not show {name} TXT {value!r} as {state} after {config['timeout_seconds']} s"
            )
        time.sleep(0.2)


def change(config: dict, action: str, name: str, value: str) -> str:
    name = _challenge_name(name, config["domain"])
    if not VALUE.fullmatch(value):
        raise Refused("the value must be an ACME key authorization digest (base64url, 1-255 characters)")
    with open(os.path.join(config["zones_dir"], ".holistix-acme-dns.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        serial, values = _read(_zone_path(config, name))
        wanted = values + [value] if action == "add" and value not in values else values
        if action == "remove":
            wanted = [v for v in values if v != value]
        if wanted != values:
            _write(config, name, max(serial + 1, int(time.time())), wanted)
    seconds = _wait(config, name, value, present=action == "add")
    return f"{name} TXT {value}: {'served' if action == 'add' else 'removed'} after {seconds:.1f} s"


def listing(config: dict) -> str:
    lines = []
    for entry in sorted(os.listdir(config["zones_dir"])):
        if entry.startswith("db._acme-challenge."):
            _, values = _read(os.path.join(config["zones_dir"], entry))
            lines += [f"{entry[3:]} TXT {value}" for value in values]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    with open(CONFIG) as handle:
        config = json.load(handle)
    try:
        if len(argv) == 3 and argv[0] in ("add", "remove"):
            print(change(config, argv[0], argv[1], argv[2]))
        elif argv == ["list"]:
            print(listing(config))
        else:
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
    except Refused as error:
        print(f"holistix-acme-dns: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
