#!/usr/bin/python3
"""holistix-release: install, switch (health-gated), roll back and prune platform releases.

    holistix-release check   ENV [KEEP]                 JSON: current, previous, installed releases, whether
                                                         the running service has the current configuration,
                                                         and (with KEEP) what prune would remove
    holistix-release install ENV VERSION SHA256 SOURCE   verify (sha256 first), unpack, record
    holistix-release switch  ENV VERSION                 point `current` at VERSION, restart, health gate
    holistix-release restart ENV                         restart the current release, health gate
    holistix-release prune   ENV KEEP                    keep the current, the previous and the newest
                                                         healthy releases, KEEP in all
    holistix-release wait    ENV                         return once the current release answers

Installed by holistix-deploy's ganymede module (files/ganymede/holistix_release.py). Runs as
root; one at a time per environment (a lock).

Layout: /opt/holistix/ENV/releases/VERSION/ (root-owned, read-only to the service) and the
symlink /opt/holistix/ENV/current, switched atomically (rename of a new link over the old);
/opt/holistix/ENV/previous names the release before it. SOURCE is an http(s) URL or a file
already on this host; nothing is unpacked before its sha256 matches. The health gate comes
from /opt/holistix/ENV/release-gate.json (written by the module): after a restart Ganymede
must answer on 127.0.0.1 (any status below 500) within the timeout, and the same process must
still answer STEADY_SECONDS later. When it does not, `switch` marks the release failed, puts
the previous one back, restarts it, and fails saying so. After every successful start the
digest of what the service read (gate's config_files) is recorded, so a configuration change
a failed run left behind is still applied by the next run.
"""

from __future__ import annotations

import fcntl
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
from contextlib import contextmanager
from pathlib import Path

STAMP = ".holistix-release"
# after its first answer, a release must still answer, with the same process, this much later
STEADY_SECONDS = 3
# how long `wait` waits for Ganymede (at boot it starts with everything else)
WAIT_SECONDS = 240
VERSION_RULE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")
# what a platform build holds (README, "Releases"); the frontend and database/ are checked too
REQUIRED_MEMBERS = (
    "dist/packages/app-ganymede/main.js",
    "dist/packages/app-ganymede-cmds/main.js",
    "packages/app-frontend/dist/index.html",
    "builds/gateway.tar.gz",
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


def gate_file(env: str) -> Path:
    return base(env) / "release-gate.json"


def gate(env: str) -> dict:
    return json.loads(gate_file(env).read_text())


def _digest_file(env: str) -> Path:
    return Path("/var/lib/holistix", env, "ganymede.applied")


def config_digest(settings: dict) -> str:
    """sha256 over what the service reads when it starts (environment file, unit, preload, CA
    bundle): kept on the host (root only), never printed."""
    digest = hashlib.sha256()
    for name in settings["config_files"]:
        path = Path(name)
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<absent>") + b"\0")
    return digest.hexdigest()


def config_applied(env: str, settings: dict) -> bool:
    stamp = _digest_file(env)
    return stamp.is_file() and stamp.read_text().strip() == config_digest(settings)


def _record_config(env: str, settings: dict) -> None:
    stamp = _digest_file(env)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(f"{stamp}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(config_digest(settings) + "\n")
    os.rename(f"{stamp}.new", stamp)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(settings: dict) -> bool:
    """One answer below 500 from 127.0.0.1 (never through a proxy from the environment)."""
    url = f"http://127.0.0.1:{settings['port']}{settings['path']}"
    try:
        with _NO_PROXY.open(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as error:
        return error.code < 500
    except (urllib.error.URLError, OSError):
        return False


def _process(unit: str) -> tuple[str, str]:
    shown = subprocess.run(
        ["systemctl", "show", "-p", "MainPID", "-p", "NRestarts", "--value", unit], capture_output=True, text=True
    )
    return tuple(shown.stdout.split()[:2]) if shown.returncode == 0 else ("", "")


def restart_and_wait(unit: str, settings: dict) -> bool:
    """Restart, then healthy = answering, and still the same process answering STEADY_SECONDS later."""
    subprocess.run(["systemctl", "daemon-reload"], check=False)
    subprocess.run(["systemctl", "restart", unit], check=False)
    deadline = time.monotonic() + settings["timeout"]
    while time.monotonic() < deadline:
        if answers(settings):
            process = _process(unit)
            time.sleep(STEADY_SECONDS)
            if answers(settings) and _process(unit) == process and process[0] not in ("", "0"):
                return True
        time.sleep(0.5)
    return False


def point_current_at(env: str, version: str) -> None:
    link, new = base(env) / "current", base(env) / f".current.{os.getpid()}"
    if new.is_symlink() or new.exists():
        new.unlink()
    new.symlink_to(f"releases/{version}")
    new.rename(link)  # rename(2) over the old link: there is never a moment without one


def _mark(env: str, version: str, **fields) -> None:
    stamp = version_dir(env, version) / STAMP
    record = json.loads(stamp.read_text()) | fields
    stamp.write_text(json.dumps(record) + "\n")


def _previous(env: str) -> str | None:
    marker = base(env) / "previous"
    return marker.read_text().strip() if marker.is_file() else None


def _remember_previous(env: str, version: str | None) -> None:
    if version:
        (base(env) / "previous.new").write_text(version + "\n")
        os.rename(base(env) / "previous.new", base(env) / "previous")


def switch(env: str, version: str) -> None:
    releases = installed(env)
    if version not in releases:
        fail(f"release {version} is not installed (installed: {', '.join(releases) or 'none'})")
    settings, previous = gate(env), current(env)
    unit = settings["unit"]
    if previous == version:  # nothing to switch: only a restart, and nothing is ever unlinked
        return restart(env)
    point_current_at(env, version)
    if restart_and_wait(unit, settings):
        _mark(env, version, failed=False)
        _remember_previous(env, previous)
        _record_config(env, settings)
        print(f"switched to release {version}" + (f" (from {previous})" if previous else ""))
        return None
    _mark(env, version, failed=True)
    problem = (
        f"release {version} did not answer on 127.0.0.1:{settings['port']}{settings['path']} within "
        f"{settings['timeout']} s (see: journalctl -u {unit})"
    )
    if previous and previous in installed(env):
        point_current_at(env, previous)
        if restart_and_wait(unit, settings):
            _record_config(env, settings)
            fail(f"{problem}; rolled back to release {previous}, which answers")
        fail(f"{problem}; rolled back to release {previous}, which does NOT answer either")
    subprocess.run(["systemctl", "stop", unit], check=False)
    (base(env) / "current").unlink()
    fail(f"{problem}; there is no earlier release to go back to, so the service is stopped")


def restart(env: str) -> None:
    settings = gate(env)
    if current(env) is None:
        fail("no release is current yet")
    if not restart_and_wait(settings["unit"], settings):
        fail(
            f"release {current(env)} did not answer on 127.0.0.1:{settings['port']}{settings['path']} within "
            f"{settings['timeout']} s after a restart for a changed configuration (see: journalctl -u {settings['unit']})"
        )
    _record_config(env, settings)
    print(f"restarted release {current(env)}")


def wait(env: str) -> None:
    """Return once the current release answers (what starts after Ganymede waits on this)."""
    settings = gate(env)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if answers(settings):
            print(f"release {current(env)} answers")
            return
        time.sleep(1)
    fail(f"Ganymede did not answer on 127.0.0.1:{settings['port']}{settings['path']} within {WAIT_SECONDS} s")


def prunable(releases: dict[str, dict], current_version: str | None, previous: str | None, keep: int) -> list[str]:
    """Releases beyond the KEEP to keep: the current one and the one before it always stay,
    then the newest that never failed their health gate."""
    kept = {version for version in (current_version, previous) if version in releases}
    healthy = [version for version in releases if not releases[version].get("failed")]
    for version in sorted(healthy, key=lambda v: releases[v]["installed"], reverse=True):
        if len(kept) >= keep:
            break
        kept.add(version)
    return sorted(version for version in releases if version not in kept)


def prune(env: str, keep: int) -> None:
    for version in prunable(installed(env), current(env), _previous(env), keep):
        shutil.rmtree(version_dir(env, version))
        print(f"removed release {version}")


def check(env: str, keep: str | None = None) -> None:
    releases, settings = installed(env), None
    if gate_file(env).is_file():
        settings = gate(env)
    state = {
        "current": current(env),
        "previous": _previous(env),
        "releases": {
            v: {"sha256": r["sha256"], "installed": r["installed"], "failed": bool(r.get("failed"))}
            for v, r in releases.items()
        },
        "config_applied": bool(settings) and config_applied(env, settings),
    }
    if keep is not None:
        state["prunable"] = prunable(releases, state["current"], state["previous"], int(keep))
    print(json.dumps(state, sort_keys=True))


@contextmanager
def locked(env: str):
    """One holistix-release at a time per environment (two runs never race on `current`)."""
    base(env).mkdir(parents=True, exist_ok=True)
    with open(base(env) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


if __name__ == "__main__":
    if len(sys.argv) < 3:
        fail(__doc__.strip().splitlines()[2])
    command, environment, *arguments = sys.argv[1:]
    base(environment)
    actions = {
        "check": (check, (0, 1)),
        "install": (install, (3,)),
        "switch": (switch, (1,)),
        "restart": (restart, (0,)),
        "prune": (lambda env, keep: prune(env, int(keep)), (1,)),
        "wait": (wait, (0,)),
    }
    if command not in actions or len(arguments) not in actions[command][1]:
        fail("usage: see the top of this file (check, install, switch, restart, prune, wait)")
    if command in ("check", "wait"):  # they change nothing: no lock, so they never wait for a switch
        actions[command][0](environment, *arguments)
    else:
        with locked(environment):
            actions[command][0](environment, *arguments)
