#!/usr/bin/python3
"""holistix-release: install, switch (health-gated), roll back and prune platform releases.

    holistix-release check   ENV                        JSON: current release, installed ones and their sha256
    holistix-release install ENV VERSION SHA256 SOURCE   verify (sha256 first), unpack, record
    holistix-release switch  ENV VERSION                 point `current` at VERSION, restart, health gate
    holistix-release restart ENV                         restart the current release, health gate
    holistix-release prune   ENV KEEP                    remove all but the KEEP newest releases

Installed by holistix-deploy's ganymede module (files/ganymede/holistix_release.py). Runs as root.

Layout: /opt/holistix/ENV/releases/VERSION/ (root-owned, read-only to the service) and the
symlink /opt/holistix/ENV/current, switched atomically (rename of a new link over the old).
SOURCE is an http(s) URL or a file already on this host; nothing is unpacked before its
sha256 matches. The health gate, its port, path and timeout come from
/opt/holistix/ENV/release-gate.json (written by the module): after a restart Ganymede must
answer an HTTP request on 127.0.0.1 (any status below 500) within the timeout. When it does
not, `switch` puts the previous release back, restarts it, and fails saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

STAMP = ".holistix-release"
VERSION_RULE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
# what a platform build holds (README, "Releases"); the frontend and database/ are checked too
REQUIRED_MEMBERS = (
    "dist/packages/app-ganymede/main.js",
    "dist/packages/app-ganymede-cmds/main.js",
    "packages/app-frontend/dist/index.html",
)


def fail(message: str, code: int = 1):
    print(f"holistix-release: {message}", file=sys.stderr)
    raise SystemExit(code)


def base(env: str) -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", env):
        fail(f"bad environment name {env!r}")
    return Path("/opt/holistix") / env


def version_dir(env: str, version: str) -> Path:
    if not VERSION_RULE.fullmatch(version) or version in ("current", "releases"):
        fail(f"bad release version {version!r}")
    return base(env) / "releases" / version


def installed(env: str) -> dict[str, dict]:
    releases = base(env) / "releases"
    found = {}
    for stamp in sorted(releases.glob(f"*/{STAMP}")) if releases.is_dir() else []:
        try:
            found[stamp.parent.name] = json.loads(stamp.read_text())
        except ValueError:
            continue
    return found


def current(env: str) -> str | None:
    link = base(env) / "current"
    return Path(os.readlink(link)).name if link.is_symlink() else None


def check(env: str) -> None:
    releases = installed(env)
    print(
        json.dumps(
            {
                "current": current(env),
                "releases": {v: {"sha256": r["sha256"], "installed": r["installed"]} for v, r in releases.items()},
            },
            sort_keys=True,
        )
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(source: str, into: Path) -> Path:
    if re.match(r"https?://", source):
        target = into / "release.tar.gz"
        try:
            with urllib.request.urlopen(source, timeout=60) as response, target.open("wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as error:
            fail(f"cannot download {source}: {error}")
        return target
    path = Path(source)
    if not path.is_file():
        fail(f"release file {source} is not on this host")
    return path


def safe_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = []
    for member in archive.getmembers():
        name = member.name.removeprefix("./")
        if name.startswith("/") or ".." in Path(name).parts:
            fail(f"the tarball holds an unsafe path {member.name!r}")
        if not (member.isfile() or member.isdir() or member.issym()):
            fail(f"the tarball holds {member.name!r}, which is neither a file, a directory nor a link")
        if member.issym() and (member.linkname.startswith("/") or ".." in Path(member.linkname).parts):
            fail(f"the tarball's link {member.name!r} points outside the release")
        members.append(member)
    return members


def install(env: str, version: str, sha256: str, source: str) -> None:
    target = version_dir(env, version)
    releases = installed(env)
    if version in releases:
        if releases[version]["sha256"] != sha256:
            fail(
                f"release {version} is installed with sha256 {releases[version]['sha256']}, not {sha256}: "
                "a version is never replaced; give the new build a new version"
            )
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".incoming-") as scratch:
        tarball = fetch(source, Path(scratch))
        actual = sha256_of(tarball)
        if actual != sha256:
            fail(
                f"release {version}: the sha256 of {source} is {actual}, but ganymede_release.sha256 is {sha256}; "
                "refused before unpacking, nothing changed",
                code=3,
            )
        unpacked = Path(scratch) / "unpacked"
        unpacked.mkdir()
        # Python's "data" filter where it exists (3.12, and Debian 12's 3.11 security updates)
        extract_filter = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            with tarfile.open(tarball) as archive:
                archive.extractall(unpacked, members=safe_members(archive), numeric_owner=True, **extract_filter)
        except (tarfile.TarError, OSError) as error:
            fail(f"release {version}: cannot unpack {source}: {error}; nothing changed")
        missing = [member for member in REQUIRED_MEMBERS if not (unpacked / member).is_file()]
        if not (unpacked / "database").is_dir():
            missing.append("database/")
        if missing:
            fail(f"release {version} is not a platform build: it lacks {', '.join(missing)}; nothing changed")
        # root owns it and the service only reads it: a compromised Ganymede cannot change its code
        for path in [unpacked, *unpacked.rglob("*")]:
            if not path.is_symlink():
                os.chown(path, 0, 0)
                os.chmod(path, 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        stamp = {"version": version, "sha256": sha256, "installed": time.time()}
        (unpacked / STAMP).write_text(json.dumps(stamp) + "\n")
        os.chmod(unpacked / STAMP, 0o644)
        unpacked.rename(target)
    target.parent.chmod(0o755)
    print(f"installed release {version}")


def gate() -> dict:
    return json.loads(Path("/opt/holistix", ENVIRONMENT, "release-gate.json").read_text())


def answers(settings: dict) -> bool:
    url = f"http://127.0.0.1:{settings['port']}{settings['path']}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (urllib.error.URLError, OSError):
        return False


def restart_and_wait(unit: str, settings: dict) -> bool:
    subprocess.run(["systemctl", "restart", unit], check=False)
    deadline = time.monotonic() + settings["timeout"]
    while time.monotonic() < deadline:
        if answers(settings):
            return True
        time.sleep(0.5)
    return False


def point_current_at(env: str, version: str) -> None:
    link, new = base(env) / "current", base(env) / ".current.new"
    if new.is_symlink() or new.exists():
        new.unlink()
    new.symlink_to(f"releases/{version}")
    new.rename(link)  # rename(2) over the old link: there is never a moment without one


def switch(env: str, version: str) -> None:
    if not (version_dir(env, version) / STAMP).is_file():
        fail(f"release {version} is not installed (installed: {', '.join(installed(env)) or 'none'})")
    settings, previous = gate(), current(env)
    unit = settings["unit"]
    point_current_at(env, version)
    if restart_and_wait(unit, settings):
        print(f"switched to release {version}" + (f" (from {previous})" if previous else ""))
        return
    problem = (
        f"release {version} did not answer on 127.0.0.1:{settings['port']}{settings['path']} within "
        f"{settings['timeout']} s (see: journalctl -u {unit})"
    )
    if previous and previous != version:
        point_current_at(env, previous)
        if restart_and_wait(unit, settings):
            fail(f"{problem}; rolled back to release {previous}, which answers")
        fail(f"{problem}; rolled back to release {previous}, which does NOT answer either")
    subprocess.run(["systemctl", "stop", unit], check=False)
    (base(env) / "current").unlink()
    fail(f"{problem}; there is no earlier release to go back to, so the service is stopped")


def restart(env: str) -> None:
    settings = gate()
    if current(env) is None:
        fail("no release is current yet")
    if not restart_and_wait(settings["unit"], settings):
        fail(
            f"release {current(env)} did not answer on 127.0.0.1:{settings['port']}{settings['path']} within "
            f"{settings['timeout']} s after a restart for a changed configuration (see: journalctl -u {settings['unit']})"
        )
    print(f"restarted release {current(env)}")


def prune(env: str, keep: int) -> None:
    releases = installed(env)
    protected = {current(env)}
    newest_first = sorted(releases, key=lambda v: releases[v]["installed"], reverse=True)
    for version in newest_first[keep:]:
        if version not in protected:
            shutil.rmtree(version_dir(env, version))
            print(f"removed release {version}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        fail(__doc__.strip().splitlines()[2])
    command, ENVIRONMENT, *arguments = sys.argv[1:]
    base(ENVIRONMENT)
    actions = {
        "check": (check, 0),
        "install": (install, 3),
        "switch": (switch, 1),
        "restart": (restart, 0),
        "prune": (lambda env, keep: prune(env, int(keep)), 1),
    }
    if command not in actions or len(arguments) != actions[command][1]:
        fail(f"usage: {__doc__.strip().splitlines()[2].strip()} (and install/switch/restart/prune)")
    actions[command][0](ENVIRONMENT, *arguments)
