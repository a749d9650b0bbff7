#!/usr/bin/python3
"""holistix-ganymede-env: compose Ganymede's environment file from the module's plan and the
secrets kept on this host, so that no secret ever passes through pyinfra.

    holistix-ganymede-env check ENV    prints "same" or "differs" (never a value)
    holistix-ganymede-env write ENV    writes what differs, atomically; prints what it wrote

Installed by holistix-deploy's ganymede module (files/ganymede/ganymede_env.py). Runs as root.

The plan, /etc/holistix/ENV/ganymede-env.json (written by the module, no secrets in it):
  values        {"NAME": "value"}: plain settings
  secret_files  {"NAME": ["file under /etc/holistix/ENV", "placeholder"]}: the file's content
                (one trailing newline dropped), or the placeholder when the file does not exist
  ca_files      files concatenated into ca_bundle (Ganymede's NODE_EXTRA_CA_CERTS)
  ca_bundle     where the bundle goes (0644: certificates are public)
  env_file      where the environment file goes (0600 root; systemd reads it before it drops
                privileges, the service user cannot)

Values are written in systemd's EnvironmentFile syntax: single-quoted (any character but a
single quote, newlines included, so a PEM arrives intact), or double-quoted with \\ " ` $
escaped when the value holds a single quote.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def quoted(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    return '"' + re.sub(r'([\\"`$])', r"\\\1", value) + '"'


def plan(env: str) -> dict:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", env):
        raise SystemExit(f"holistix-ganymede-env: bad environment name {env!r}")
    return json.loads(Path("/etc/holistix", env, "ganymede-env.json").read_text())


def compose(secrets_dir: Path, wanted: dict) -> dict[str, tuple[bytes, int]]:
    """{path: (content, mode)} of the files the plan asks for."""
    values = dict(wanted["values"])
    for name, (file_name, placeholder) in wanted["secret_files"].items():
        secret = secrets_dir / file_name
        if secret.is_file():
            values[name] = secret.read_text().removesuffix("\n")
        elif placeholder is None:
            raise SystemExit(f"holistix-ganymede-env: {secret} is missing (for {name}): run the module that makes it")
        else:
            values[name] = placeholder
    lines = ["# Written by holistix-deploy (holistix-ganymede-env): every change is overwritten.\n"]
    lines += [f"{name}={quoted(value)}\n" for name, value in sorted(values.items())]
    bundle = b"".join(Path(path).read_bytes().rstrip(b"\n") + b"\n" for path in wanted["ca_files"])
    return {wanted["env_file"]: ("".join(lines).encode(), 0o600), wanted["ca_bundle"]: (bundle, 0o644)}


def differs(path: str, content: bytes, mode: int) -> bool:
    target = Path(path)
    if not target.is_file() or target.read_bytes() != content:
        return True
    status = target.stat()
    return (status.st_mode & 0o7777) != mode or status.st_uid != 0 or status.st_gid != 0


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("check", "write"):
        raise SystemExit("usage: holistix-ganymede-env check|write ENV")
    action, env = sys.argv[1:]
    files = compose(Path("/etc/holistix", env), plan(env))
    stale = [path for path, (content, mode) in files.items() if differs(path, content, mode)]
    if action == "check":
        print("differs" if stale else "same")
        return
    for path in stale:
        content, mode = files[path]
        temporary = f"{path}.new"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        os.chown(temporary, 0, 0)
        os.chmod(temporary, mode)
        os.rename(temporary, path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
