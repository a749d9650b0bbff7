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
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

SOCKET = "/run/holistix/nginx-control.sock"
LOCK = "/run/holistix/nginx-control.lock"
PID_FILE = "/run/nginx.pid"


def workers() -> set[str]:
    try:
        master = Path(PID_FILE).read_text().strip()
        listing = subprocess.run(["ps", "-o", "pid=", "--ppid", master], capture_output=True, text=True)
        return set(listing.stdout.split())
    except OSError:
        return set()


def serve() -> None:
    request = sys.stdin.readline().strip()
    if request not in ("test", "reload"):
        print(f"holistix-nginx-control: unknown request {request[:20]!r}\nstatus 2", flush=True)
        return
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    elif sys.argv[1:] in (["test"], ["reload"]):
        sys.exit(request(sys.argv[1]))
    else:
        sys.exit("usage: holistix-nginx-control test|reload")
