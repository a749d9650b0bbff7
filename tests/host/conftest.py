"""Testinfra suites that check a converged host from the operator's side.

    pytest tests/host --hosts=ssh://deploy@HOST --ssh-config=SSH_CONFIG [--inventory inventories/prod.py]

The inventory (default inventories/local.py) gives the settings the host was converged
with; the host is matched by its ssh_hostname (or inventory name).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from holistix_deploy.settings import Settings, validate_data

ROOT = Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        default=os.environ.get("HOLISTIX_INVENTORY", str(ROOT / "inventories" / "local.py")),
        help="pyinfra inventory the host was converged from (its settings are what the suites expect)",
    )


def _inventory_data(inventory_path: str, address: str) -> dict:
    """The merged data of one inventory host, as pyinfra resolves it (group_data included)."""
    listing = subprocess.run(
        [sys.executable, "-m", "pyinfra", inventory_path, "debug-inventory", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for inventory_host in json.loads(listing.stdout):
        data = inventory_host["data"]
        if address in (inventory_host["name"], data.get("ssh_hostname")):
            return data
    raise pytest.UsageError(f"host {address} is not in the inventory {inventory_path}")


@pytest.fixture(scope="module")
def settings(request, host) -> Settings:
    """The validated settings of the host under test, read from the inventory."""
    address = host.backend.hostname
    data = _inventory_data(request.config.getoption("--inventory"), address)
    return validate_data(data, environ={}, host_name=address)
