"""Every module, in dependency order: `pyinfra inventories/prod.py deploys/all.py`.

Each module file also runs alone (`pyinfra inventories/prod.py deploys/base.py`).
"""

from pyinfra import host, local

from holistix_deploy.settings import load_settings

load_settings(host)  # refuse bad settings before the first module prepares anything

for module in ("base", "firewall", "postgres", "coredns", "nginx", "letsencrypt"):
    local.include(f"deploys/{module}.py")
