"""What both benchmarks share: the harness, a fresh staging host converged by every module, and
how figures are printed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = str(ROOT / "scripts" / "staging-host")
PYINFRA = [sys.executable, "-m", "pyinfra", "-y", "inventories/local.py"]


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    done = run(command)
    return time.monotonic() - start, done


def fresh_converged_host(name: str, suite: str) -> dict[str, float]:
    """A new staging host ``name``, bootstrapped as root and converged as deploy by deploys/all.py:
    the seconds each step took (create, bootstrap, converge)."""
    subprocess.run([HARNESS, "destroy", name], capture_output=True)
    # the platform release and gateway image the inventory deploys (contract stand-ins; built once, cached)
    run([str(ROOT / "scripts" / "ganymede-release-artifact"), "1.0.0"])
    run([str(ROOT / "scripts" / "gateway-image-artifact")])
    create, _ = timed([HARNESS, "create", name, "--suite", suite])
    env = dict(line.split("=", 1) for line in run([HARNESS, "env", name]).stdout.split())
    root = ["--user", "root", "--key", env["STAGING_PROVIDER_KEY"]]
    bootstrap, _ = timed([*PYINFRA, "deploys/base.py", "--limit", name, *root])
    converge, _ = timed([*PYINFRA, "deploys/all.py", "--limit", name])
    return {"create": create, "bootstrap": bootstrap, "converge": converge}


def report(figures: dict) -> None:
    """One aligned line per figure, then all of them as one JSON line."""
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(figures))
