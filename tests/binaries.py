"""Find an external binary a test needs: skip locally when it is missing, fail under CI.

A missing tool must not hide a broken test suite on the build server, so with
``CI=true`` in the environment a missing binary is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require_binary(name: str, package: str | None = None) -> str:
    """Return the path of ``name`` on ``PATH``; skip (or fail when ``CI=true``) if absent.

    ``package`` names the Debian package that provides it, for the message.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name!r} not found on PATH"
    if package is not None:
        message += f" (install the Debian package {package!r})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true, so this is a failure", pytrace=False)
    pytest.skip(message)
