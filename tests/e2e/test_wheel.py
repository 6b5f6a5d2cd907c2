"""The package stands alone: the wheel, installed in a fresh venv, runs the image's way.

The wheel is built from exactly what the Dockerfile's build stage copies (pyproject.toml,
README.md, notifier/), installed into a new venv, and run from a folder outside the
checkout with the Dockerfile's ``ENV`` (its paths moved under a temporary root, its
listen address on 127.0.0.1): ``check-config``, ``serve`` and ``fire``. The config is
the seed's ``config/notifier.yaml`` as the image installs it, with its four channels
pointed at the local stand-ins and no templates folder at all, so every template the
notification is rendered with must come from the installed package.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.channel_support import free_port
from tests.processes import TOKEN, Process, scrape, wait_until
from tests.stand_ins import EMAIL, SLACK, SMS, WEBHOOK, stand_ins

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile's build stage copies before `pip install .`.
BUILD_INPUTS = ("pyproject.toml", "README.md", "notifier")
# The image's folders, and where this test puts them.
IMAGE_ROOTS = ("/etc/notifier", "/var/lib/notifier")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def dockerfile_env() -> dict[str, str]:
    """The ``ENV`` values of the Dockerfile's final stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("FROM "):
            env = {}  # only the last stage's values reach the running image
        elif line.startswith("ENV "):
            for pair in line.removeprefix("ENV ").split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def clean_env(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """Ours without anything that points into the checkout or configures notifier."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NOTIFIER_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, **extra}


def run(argv: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def venv_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh venv with the built wheel (and its dependencies) in it."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    env = clean_env()
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(root / "dist"), str(source)],
        root,
        env,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (root / "dist").glob("notifier-*.whl")

    shipped = set(zipfile.ZipFile(wheel).namelist())
    data_files = {
        path.relative_to(source).as_posix()
        for path in (source / "notifier").rglob("*")
        if path.is_file() and path.suffix != ".py"
    }
    assert data_files, "the package has data files (its built-in templates)"
    assert data_files <= shipped, f"not in the wheel: {sorted(data_files - shipped)}"

    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], root, env)
    assert made.returncode == 0, made.stdout + made.stderr
    installed = run([str(venv / "bin/pip"), "install", "--quiet", str(wheel)], root, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    located = run(
        [str(venv / "bin/python"), "-c", "import notifier; print(notifier.__file__)"], root, env
    )
    assert Path(located.stdout.strip()).is_relative_to(venv), located
    return venv / "bin"


def image_layout(root: Path, port: int) -> dict[str, str]:
    """The Dockerfile's environment with its folders under ``root``, listening on ``port``."""
    env = dockerfile_env()
    assert {"NOTIFIER_CONFIG", "NOTIFIER_LISTEN", "NOTIFIER_STORAGE_URL"} <= set(env), env
    assert env["NOTIFIER_LISTEN"].rpartition(":")[2].isdigit(), env["NOTIFIER_LISTEN"]
    for name, value in env.items():
        for image_root in IMAGE_ROOTS:
            value = value.replace(image_root, f"{root}{image_root}")
        env[name] = value
    # The image listens on every interface; a test talks to 127.0.0.1 only.
    env["NOTIFIER_LISTEN"] = f"127.0.0.1:{port}"
    for image_root in IMAGE_ROOTS:
        Path(f"{root}{image_root}").mkdir(parents=True, exist_ok=True)
    return env


def seed_config_for(local: dict[str, dict[str, Any]]) -> str:
    """``config/notifier.yaml`` with each channel's endpoint swapped for its stand-in."""
    config = yaml.safe_load((ROOT / "config/notifier.yaml").read_text())
    assert set(config["channels"]) == {EMAIL, SLACK, SMS, WEBHOOK}
    for name, channel in config["channels"].items():
        channel.update(local[name])
    # The SMTP stand-in speaks plain SMTP without AUTH.
    for key in ("username", "password"):
        config["channels"][EMAIL].pop(key)
    return yaml.safe_dump(config, sort_keys=False)


def write_image_config(path: Path, text: str) -> None:
    """Where the image's COPY puts the config; no templates folder beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    assert not (path.parent.parent / "templates").exists()


def sqlite_file(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


async def cli(venv_bin: Path, *args: str, cwd: Path, env: Mapping[str, str]) -> tuple[int, str]:
    """Run the installed ``notifier`` without blocking the stand-ins in this event loop."""
    process = await asyncio.create_subprocess_exec(
        str(venv_bin / "notifier"),
        *args,
        cwd=cwd,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_installed_wheel_serves_the_seed_config_the_image_way(
    venv_bin: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "elsewhere"  # outside the checkout: nothing of it is importable
    workdir.mkdir()
    port = free_port()
    env = clean_env(image_layout(tmp_path / "image", port))
    async with stand_ins() as local:
        write_image_config(Path(env["NOTIFIER_CONFIG"]), seed_config_for(local.channels()))
        env |= {"NOTIFIER_TOKEN": TOKEN, "WEBHOOK_SECRET": "wheel-hmac-secret"}

        code, output = await cli(venv_bin, "check-config", cwd=workdir, env=env)
        assert code == 0, output

        server = Process(
            "notifier (wheel)", [str(venv_bin / "notifier"), "serve"], workdir / "serve.log", env
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await server.wait_http_ok(f"{url}/-/ready", timeout=30)
            code, output = await cli(
                venv_bin,
                "fire",
                "--severity=critical",
                "--alertname=WheelCheck",
                f"--url={url}/api/v1/alerts",
                cwd=workdir,
                env=env,
            )
            assert code == 0, output

            every_channel = {EMAIL: 1, SLACK: 1, SMS: 1, WEBHOOK: 1}
            await wait_until(lambda: local.counts() == every_channel, "one message per channel", 30)
            metrics = await scrape(f"{url}/metrics")
            # The console's templates and static files come from the installed package.
            async with aiohttp.ClientSession() as session:
                for path in ("/ui/login", "/ui/static/console.css", "/ui/static/console.js"):
                    async with session.get(url + path) as answer:
                        assert answer.status == 200, (path, await answer.text())
        finally:
            server.kill()
            server.dump_log()

    # Each channel rendered its seed template, found in the installed package.
    assert metrics.total("notifier_template_fallbacks_total") == 0
    sms = local.twilio.delivered[0].body
    assert sms.startswith("[FIRING] WheelCheck critical"), sms  # critical_alert.txt
    (post,) = local.slack_posts()
    assert post.body["blocks"][0]["type"] == "header"  # performance_alert.json
    _, mail, _ = local.mailbox.messages[0]
    html = mail.get_body(("html",))
    assert html is not None and "WheelCheck" in html.get_content()  # performance_alert.html
    assert local.sink.requests[0].json()["commonLabels"]["alertname"] == "WheelCheck"
    assert sqlite_file(env["NOTIFIER_STORAGE_URL"]).is_file()  # where the image keeps it
