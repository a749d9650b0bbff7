#!/usr/bin/python3
"""holistix-nginx-control: let the unprivileged, sandboxed Ganymede test and reload nginx.

    holistix-nginx-control test      what `nginx -t 2>&1` prints, and its exit status
    holistix-nginx-control reload    nginx -t, then a reload; returns once new workers run

Ganymede runs these as NGINX_TEST_COMMAND and NGINX_RELOAD_COMMAND (platform contract 1.5:
its test wants "syntax is ok" on stdout). They only talk to a root-owned systemd socket,
holistix-nginx-control.socket (group: the service's, mode 0660), whose per-connection
service runs `holistix-nginx-control serve` as root: no sudo, no setuid, and the only powers
given away are "test" and "reload". Requests are serialised with a lock.

Installed by holistix-deploy's ganymede module (files/ganymede/nginx_control.py).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

SOCKET = "/run/holistix/nginx-control.sock"
POLICY = "/etc/holistix/nginx-control.json"  # written by the ganymede module
LOCK = "/run/holistix/nginx-control.lock"
PID_FILE = "/run/nginx.pid"


def workers() -> set[str]:
    try:
        master = Path(PID_FILE).read_text().strip()
        listing = subprocess.run(["ps", "-o", "pid=", "--ppid", master], capture_output=True, text=True)
        return set(listing.stdout.split())
    except OSError:
        return set()


# -- what Ganymede may write: the organisation blocks of platform contract 1.5, nothing else -----
# nginx's master runs as root and reads these files: a directive outside this list (include,
# log_format, an access_log elsewhere, a root or alias...) would hand root to whoever controls
# Ganymede. So every block is checked, as root, before nginx is even tested.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
HEADER_VALUES = {"$http_upgrade", "upgrade", "$host", "$remote_addr", "$proxy_add_x_forwarded_for", "https"}


def tokens(text: str):
    """(token, line) of an nginx configuration file: words, quoted strings, ; { }."""
    for line_number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|([;{}])|#.*$|([^\s;{}"\'#]+)', line):
            if match[0].startswith("#"):
                continue
            token = match[1] if match[1] is not None else match[2] if match[2] is not None else match[3] or match[4]
            yield token, line_number


def statements(stream) -> list:
    """[(name, [arguments], [children] or None, line)] up to the closing brace or the end."""
    found, words, line = [], [], 0
    for token, number in stream:
        if token == ";":
            found.append((words[0], words[1:], None, line)) if words else None
            words = []
        elif token == "{":
            found.append((words[0] if words else "", words[1:], statements(stream), line))
            words = []
        elif token == "}":
            return found
        else:
            line = number if not words else line
            words.append(token)
    if words:
        found.append((words[0], words[1:], None, line))
    return found


def block_problems(name: str, text: str, policy: dict) -> list[str]:
    """Why an organisation block is refused: file:line and the directive, never a value."""
    match = re.fullmatch(f"org-({UUID})\\.conf", name)
    if not match:
        return [f"{name}: not an organisation block (org-<uuid>.conf)"]
    organisation = match[1]
    upstream = f"org-{organisation}-gw"
    logs = policy["logs_dir"]
    networks = [ipaddress.ip_network(network) for network in policy["upstream_networks"]]
    escaped_domain = policy["domain"].replace(".", "\\.")
    server_name = f"~^(.+\\.)?org-{organisation}\\.{escaped_domain}$"

    def address_allowed(value: str) -> bool:
        host, _, port = value.rpartition(":")
        try:
            return port.isdigit() and any(ipaddress.ip_address(host) in network for network in networks)
        except ValueError:
            return False

    server_rules = {
        "listen": lambda a: a == [str(policy["listen_port"]), "ssl"],
        "server_name": lambda a: a == [server_name],
        "ssl_certificate": lambda a: a == [policy["certificate"]],
        "ssl_certificate_key": lambda a: a == [policy["certificate_key"]],
        "access_log": lambda a: a == [f"{logs}/gateway-{organisation}-access.log"],
        "error_log": lambda a: a == [f"{logs}/gateway-{organisation}-error.log"],
    }
    location_rules = {
        "proxy_pass": lambda a: a == [f"http://{upstream}"],
        "proxy_http_version": lambda a: a in (["1.1"], ["1.0"]),
        "proxy_set_header": lambda a: (
            len(a) == 2 and re.fullmatch(r"[A-Za-z-]{1,40}", a[0]) is not None and a[1] in HEADER_VALUES
        ),
        "proxy_read_timeout": lambda a: len(a) == 1 and re.fullmatch(r"\d{1,6}s?", a[0]) is not None,
        "proxy_send_timeout": lambda a: len(a) == 1 and re.fullmatch(r"\d{1,6}s?", a[0]) is not None,
    }
    problems = []

    def refuse(directive: str, line: int, why: str = "is not allowed here") -> None:
        problems.append(f"{name}:{line}: {directive or '{'} {why}")

    for directive, arguments, children, line in statements(tokens(text)):
        if directive == "upstream" and arguments == [upstream] and children is not None:
            for inner, inner_arguments, grandchildren, inner_line in children:
                ok = inner == "server" and grandchildren is None and len(inner_arguments) == 1
                if not ok or not address_allowed(inner_arguments[0]):
                    refuse(inner, inner_line, "is not allowed here (upstream: server <loopback or bridge ip>:<port>)")
        elif directive == "server" and not arguments and children is not None:
            for inner, inner_arguments, grandchildren, inner_line in children:
                if inner == "location" and inner_arguments == ["/"] and grandchildren is not None:
                    for deepest, deepest_arguments, more, deepest_line in grandchildren:
                        rule = location_rules.get(deepest)
                        if more is not None or rule is None or not rule(deepest_arguments):
                            refuse(deepest, deepest_line)
                    continue
                rule = server_rules.get(inner)
                if grandchildren is not None or rule is None or not rule(inner_arguments):
                    refuse(inner, inner_line)
        else:
            refuse(directive, line)
    return problems


def gateway_problems(policy: dict) -> list[str]:
    directory = Path(policy["gateways_dir"])
    problems = []
    for path in sorted(directory.glob("*.conf")) if directory.is_dir() else []:
        if path.is_symlink() or not path.is_file():
            problems.append(f"{path.name}: not a plain file")
            continue
        problems += block_problems(path.name, path.read_text(errors="replace"), policy)
    return problems


def policy() -> dict:
    return json.loads(Path(POLICY).read_text())


def check() -> int:
    """Read-only, for the deploy: "ok", or one line per refused directive."""
    problems = gateway_problems(policy()) if Path(POLICY).is_file() else []
    print("\n".join(problems) if problems else "ok")
    return 0


def serve() -> None:
    raw = sys.stdin.readline(16)
    request = raw.strip()
    if not raw.endswith("\n") or request not in ("test", "reload"):
        print("holistix-nginx-control: unknown request\nstatus 2", flush=True)
        return
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problems = gateway_problems(policy())
        if problems:
            # nginx is not even tested: its master would read these files as root
            print("holistix-nginx-control: refused organisation blocks:\n" + "\n".join(problems), flush=True)
            print("status 1", flush=True)
            return
        test = subprocess.run(["nginx", "-t"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if request == "test" or test.returncode != 0:
            print(f"{test.stdout}status {test.returncode}", flush=True)
            return
        before = workers()
        reload = subprocess.run(
            ["systemctl", "reload", "nginx"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if reload.returncode != 0:
            print(f"{reload.stdout}status {reload.returncode}", flush=True)
            return
        # a reload is a signal: wait (up to 5 s) until workers with the new configuration run
        for _ in range(50):
            if workers() - before:
                break
            time.sleep(0.1)
        print("nginx reloaded\nstatus 0", flush=True)


def request(what: str) -> int:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(30)
            connection.connect(SOCKET)
            connection.sendall(f"{what}\n".encode())
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    except OSError as error:
        print(f"holistix-nginx-control: cannot reach {SOCKET}: {error}")
        return 1
    text, _, status = answer.decode(errors="replace").rpartition("status ")
    sys.stdout.write(text)
    return int(status) if status.strip().isdigit() else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"] and os.geteuid() == 0:
        serve()
    elif sys.argv[1:] == ["check"] and os.geteuid() == 0:
        sys.exit(check())
    elif sys.argv[1:] in (["test"], ["reload"]):
        sys.exit(request(sys.argv[1]))
    else:
        sys.exit("usage: holistix-nginx-control test|reload")
