"""House rules that keep the deploy safe to run: checked on the source, no host needed."""

import ast
import re
from pathlib import Path

import pytest

from holistix_deploy import docs

ROOT = Path(__file__).resolve().parents[2]
DEPLOYS = sorted(p for p in (ROOT / "deploys").glob("*.py") if p.name != "all.py")


def _our_operations() -> set[str]:
    from holistix_deploy import operations

    return {name for name, value in vars(operations).items() if hasattr(value, "_inner")}


# pyinfra's operation modules, and every operation of our own (found, not listed by hand)
OPERATION_MODULES = {
    "apt",
    "files",
    "server",
    "systemd",
    "postgres",
    "docker",
    "crontab",
    "pip",
    "git",
    "iptables",
    "python",
} | _our_operations()


def _operation_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id in OPERATION_MODULES
            ):
                yield node, f"{func.value.id}.{func.attr}"
            elif isinstance(func, ast.Name) and func.id in OPERATION_MODULES:
                yield node, func.id


def test_readme_settings_table_and_group_data_defaults_are_current():
    assert docs.main(["--check"]) == 0, "run: python -m holistix_deploy.docs"


def test_group_data_all_holds_exactly_the_schema_defaults():
    namespace: dict = {}
    exec((ROOT / "group_data" / "all.py").read_text(), namespace)
    values = {k: v for k, v in namespace.items() if not k.startswith("__")}
    from holistix_deploy.settings import Settings

    defaults = {k: docs.plain_default(f) for k, f in Settings.model_fields.items() if not f.is_required()}
    assert values == defaults


@pytest.mark.parametrize("deploy_file", DEPLOYS, ids=lambda p: p.name)
def test_every_operation_has_a_name(deploy_file):
    tree = ast.parse(deploy_file.read_text())
    unnamed = [
        f"{label} (line {call.lineno})"
        for call, label in _operation_calls(tree)
        if not any(keyword.arg == "name" for keyword in call.keywords)
    ]
    assert unnamed == [], "pass name= (unnamed operations print their arguments, secrets included)"


@pytest.mark.parametrize("deploy_file", DEPLOYS, ids=lambda p: p.name)
def test_settings_are_validated_before_the_first_operation(deploy_file):
    tree = ast.parse(deploy_file.read_text())
    load_line = min(
        (
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "load_settings"
        ),
        default=None,
    )
    first_operation = min((call.lineno for call, _ in _operation_calls(tree)), default=None)
    assert load_line is not None, "call load_settings(host) at the top"
    assert first_operation is None or load_line < first_operation


def test_all_py_runs_every_module_once():
    all_py = (ROOT / "deploys" / "all.py").read_text()
    included = re.findall(r'"(\w+)"', all_py.split("MODULES = ", 1)[1].split(")", 1)[0])
    assert "for module in MODULES:" in all_py
    assert sorted(included) == sorted(p.stem for p in DEPLOYS)
    assert included[0] == "base", "base bootstraps the host: it runs first"


@pytest.mark.parametrize("template", sorted((ROOT / "templates").rglob("*.j2")), ids=lambda p: p.name)
def test_every_template_says_it_is_managed(template):
    assert "{{ managed_header }}" in template.read_text().splitlines()[0]


@pytest.mark.parametrize("inventory", ["prod.py", "staging.py"])
def test_example_inventories_are_valid_settings(inventory):
    from holistix_deploy.settings import inventory_hosts, validate_data

    for name, data in inventory_hosts(f"inventories/{inventory}"):
        settings = validate_data(data, environ={}, host_name=name)
        assert settings.domain.endswith("example.com")  # documentation names only
