#!/usr/bin/python3
"""holistix-pg-role-password: keep a role's SCRAM password equal to a password file.

    holistix-pg-role-password check ROLE FILE   # prints match, mismatch or missing-role
    holistix-pg-role-password apply ROLE FILE   # sets the password from FILE

Installed by holistix-deploy's postgres module. The password never appears in a command line
or in a query: the check recomputes the stored SCRAM key from the file, and apply sends a
SCRAM-SHA-256 verifier (not the password) to psql on standard input.
"""

import base64
import hashlib
import hmac
import os
import re
import subprocess
import sys

ITERATIONS = 4096


def psql(sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
        input=sql,
        capture_output=True,
        text=True,
    )


def quote_ident(name: str) -> str:
    if not re.match(r"^[a-z_][a-z0-9_]*$", name):
        raise SystemExit(f"refusing role name {name!r}")
    return f'"{name}"'


def keys(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client_key).digest(), server_key


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("check", "apply"):
        print(__doc__, file=sys.stderr)
        return 64
    mode, role, path = argv
    with open(path, "rb") as file:
        password = file.read().rstrip(b"\n")
    quote_ident(role)  # refuses anything but a plain lower-case name before it reaches SQL
    if mode == "check":
        result = psql(f"SELECT coalesce(rolpassword, 'none') FROM pg_authid WHERE rolname = '{role}';")
        if result.returncode != 0:
            raise SystemExit(result.stderr.strip())
        stored_verifier = result.stdout.strip()
        if not stored_verifier:
            print("missing-role")
            return 0
        match = re.match(r"^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$", stored_verifier)
        if not match:
            print("mismatch")  # no password, or an md5 one: set a SCRAM one
            return 0
        stored, _ = keys(password, base64.b64decode(match[2]), int(match[1]))
        print("match" if hmac.compare_digest(stored, base64.b64decode(match[3])) else "mismatch")
        return 0
    salt = os.urandom(16)
    stored, server = keys(password, salt, ITERATIONS)
    verifier = (
        f"SCRAM-SHA-256${ITERATIONS}:{base64.b64encode(salt).decode()}"
        f"${base64.b64encode(stored).decode()}:{base64.b64encode(server).decode()}"
    )
    result = psql(f"ALTER ROLE {quote_ident(role)} PASSWORD '{verifier}';")
    if result.returncode != 0:
        raise SystemExit(result.stderr.strip())
    print("applied")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
