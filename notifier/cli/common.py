"""Pieces every ``notifier`` command shares: the ``--config`` option, argument parsing, exits."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from notifier.config import ConfigError, LoadedConfig, load_config

F = TypeVar("F", bound=Callable[..., Any])


def _default_config() -> str:
    return os.environ.get("NOTIFIER_CONFIG", "config/notifier.yaml")


def config_option(command: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        default=_default_config,
        show_default="$NOTIFIER_CONFIG or config/notifier.yaml",
        help="Path to the YAML config.",
    )(command)


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """``("a=b", "c=d")`` -> ``{"a": "b", "c": "d"}``; a malformed one is a usage error."""
    pairs = {}
    for value in values:
        name, sep, content = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=what)
        pairs[name] = content
    return pairs


def fail(message: str) -> NoReturn:
    """Print ``message`` to stderr and exit 1: the check failed."""
    click.echo(message, err=True)
    sys.exit(1)


def load_or_exit(path: Path, *, placeholders: bool = False) -> LoadedConfig:
    try:
        return load_config(path, os.environ, placeholders=placeholders)
    except ConfigError as exc:
        fail(str(exc))
