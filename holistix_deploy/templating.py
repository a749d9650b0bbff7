"""Render the project's Jinja2 templates (``templates/<module>/``) locally.

Strict: an undefined variable is an error, never an empty string.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template: str, **variables) -> str:
    """Render ``templates/<template>`` with ``variables``; ``managed_header`` is provided."""
    header = f"Managed by holistix-deploy (template {template}). Local edits are overwritten."
    return _ENVIRONMENT.get_template(template).render(managed_header=header, **variables)
