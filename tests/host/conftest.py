"""Testinfra suites that check a converged host from the operator's side.

    pytest tests/host --hosts=ssh://deploy@HOST --ssh-config=SSH_CONFIG [--inventory inventories/prod.py]

The inventory (default inventories/local.py) gives the settings the host was converged
with; the host is matched by its ssh_hostname (or inventory name).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from holistix_deploy.settings import Settings, inventory_hosts, validate_data

ROOT = Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        default=os.environ.get("HOLISTIX_INVENTORY", str(ROOT / "inventories" / "local.py")),
        help="pyinfra inventory the host was converged from (its settings are what the suites expect)",
    )


def _inventory_data(inventory_path: str, address: str) -> dict:
    for name, data in inventory_hosts(inventory_path):
        if address in (name, data.get("ssh_hostname")):
            return data
    raise pytest.UsageError(f"host {address} is not in the inventory {inventory_path}")


@pytest.fixture(scope="module")
def settings(request, host) -> Settings:
    """The validated settings of the host under test, read from the inventory."""
    address = host.backend.hostname
    data = _inventory_data(request.config.getoption("--inventory"), address)
    return validate_data(data, environ={}, host_name=address)
