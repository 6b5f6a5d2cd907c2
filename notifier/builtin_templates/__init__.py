"""The templates shipped inside the package: the seed's email, Slack and SMS templates.

They are package data, read with ``importlib.resources``, so an installed notifier (a
wheel, the Docker image) has them without a checkout. A config names them like any
other template; a file of the same name in its ``templates_dir`` wins, as Alertmanager's
own templates sit beside its built-in ``default.tmpl``. This is the only copy: the
repository's configs use them from here. The last-resort fallbacks of
``notifier.templates`` are not here on purpose: they must render with no file at all.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def _resource(name: str) -> Traversable | None:
    # Only plain names: a built-in is never reached through a path (``../``, ``a/b``).
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == "__init__.py":
        return None
    resource = files(__name__).joinpath(name)
    return resource if resource.is_file() else None


def exists(name: str) -> bool:
    """Whether a built-in template called ``name`` ships with the package."""
    return _resource(name) is not None


def source(name: str) -> str | None:
    """The text of built-in template ``name``, or None when there is none."""
    resource = _resource(name)
    return None if resource is None else resource.read_text(encoding="utf-8")
