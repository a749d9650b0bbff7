"""Every module, in dependency order: `pyinfra inventories/prod.py deploys/all.py`.

Each module file also runs alone (`pyinfra inventories/prod.py deploys/base.py`).
"""

from pyinfra import host, local

from holistix_deploy.settings import SettingsError, load_settings

MODULES = (
    "base",
    "firewall",
    "postgres",
    "coredns",
    "nginx",
    "letsencrypt",
    "ganymede",
    "gateway_pool",
    "backups",
    "monitoring",
)

# refuse bad settings, and settings a module cannot run without, before any module prepares anything
settings = load_settings(host)
missing = [problem for module in MODULES for problem in settings.missing_for(module)]
if missing:
    raise SettingsError(host.name, missing)

for module in MODULES:
    local.include(f"deploys/{module}.py")
