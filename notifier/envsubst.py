"""``${VAR}`` / ``${VAR:-default}`` interpolation and ``*_file`` secrets on the raw YAML tree.

Runs before validation, so every problem carries the key path where it was found
(``channels.ops-email.password``). The environment is passed in: nothing here reads
``os.environ`` by itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
FILE_SUFFIX = "_file"


def key_path(parts: tuple[str | int, ...]) -> str:
    """``("routes", 1, "matchers", 0)`` -> ``routes[1].matchers[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _substitute(
    text: str, env: Mapping[str, str], path: tuple[str | int, ...], errors: list[str] | None
) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if not value:  # unset or empty: a secret left blank is a mistake, not a value
            if default is not None:
                return default
            if errors is None:  # placeholders wanted: the shape matters, not the secret
                return f"<{name}>"
            errors.append(f"{key_path(path)}: environment variable {name} is not set")
            return ""
        return value

    return _REFERENCE.sub(replace, text)


def _read_secret_file(
    file_name: Any, base_dir: Path, path: tuple[str | int, ...], errors: list[str]
) -> str | None:
    if not isinstance(file_name, str):
        errors.append(f"{key_path(path)}: must be a file path")
        return None
    secret_path = Path(file_name)
    if not secret_path.is_absolute():
        secret_path = base_dir / secret_path
    try:
        return secret_path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        errors.append(f"{key_path(path)}: cannot read secret file {file_name}: {exc.strerror}")
        return None


def interpolate(
    tree: Any,
    env: Mapping[str, str],
    base_dir: Path,
    errors: list[str],
    path: tuple[str | int, ...] = (),
    *,
    placeholders: bool = False,
) -> Any:
    """A copy of ``tree`` with references substituted and ``X_file`` keys read into ``X``.

    Problems are appended to ``errors``; the walk goes on so all are reported at once.
    With ``placeholders``, an unset variable reads as ``<NAME>`` instead of an error
    (for commands that need the config's shape but not its secrets, e.g. ``routes test``).
    """
    if isinstance(tree, str):
        return _substitute(tree, env, path, None if placeholders else errors)
    if isinstance(tree, list):
        return [
            interpolate(item, env, base_dir, errors, (*path, i), placeholders=placeholders)
            for i, item in enumerate(tree)
        ]
    if not isinstance(tree, dict):
        return tree
    result: dict[Any, Any] = {}
    for key, value in tree.items():
        child = (*path, str(key))
        if isinstance(key, str) and key.endswith(FILE_SUFFIX) and key != FILE_SUFFIX:
            twin = key[: -len(FILE_SUFFIX)]
            if twin in tree:
                errors.append(f"{key_path(child)}: set either {twin} or {key}, not both")
                continue
            file_name = interpolate(value, env, base_dir, errors, child, placeholders=placeholders)
            secret = (
                f"<{key}>"
                if placeholders
                else _read_secret_file(file_name, base_dir, child, errors)
            )
            if secret is not None:
                result[twin] = secret
            continue
        result[key] = interpolate(value, env, base_dir, errors, child, placeholders=placeholders)
    return result
