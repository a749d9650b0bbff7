"""Shared by the unit tests: the problems bad settings give, and the helper scripts the modules
install on hosts (files/...), loaded as modules."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from holistix_deploy.settings import SettingsError, validate_data

ROOT = Path(__file__).resolve().parents[2]


def problems_for(data: dict, environ: dict | None = None) -> list[str]:
    """The lines a run with this inventory data (and these HOLISTIX_* variables) is refused with."""
    with pytest.raises(SettingsError) as refused:
        validate_data(data, {} if environ is None else environ, host_name="vps1")
    return refused.value.problems


def host_script(relative: str) -> ModuleType:
    """files/<relative>, the script a module installs on the host, as a module."""
    path = ROOT / "files" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
