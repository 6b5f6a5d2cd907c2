"""The templates shipped in the package: found without a folder, overridden by one."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier import builtin_templates
from notifier.config import ConfigError, parse_config
from notifier.templates import FALLBACK_TEXT, Renderer, template_context
from notifier.testing import config_for_tests, make_payload
from tests.channel_support import notification

SEED_TEMPLATES = ("critical_alert.txt", "performance_alert.html", "performance_alert.json")


def config_text(templates_dir: Path, template: str) -> str:
    return f"""
templates_dir: "{templates_dir}"
channels:
  console: {{type: log, template: {template}}}
default_channels: [console]
"""


@pytest.mark.parametrize("name", SEED_TEMPLATES)
def test_a_config_names_a_built_in_template_without_a_folder_holding_it(
    tmp_path: Path, name: str
) -> None:
    empty = tmp_path / "templates"
    empty.mkdir()
    loaded = parse_config(config_text(empty, name), tmp_path / "notifier.yaml", {})
    context = template_context(notification(loaded, "console", make_payload()), "log")

    fallbacks: list[str] = []
    renderer = Renderer(loaded.templates_dir, on_fallback=lambda _ch, tpl: fallbacks.append(tpl))
    rendered = renderer.render_file(name, context, FALLBACK_TEXT)

    assert fallbacks == []
    assert "TestAlert" in rendered.text


def test_a_file_in_templates_dir_overrides_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "critical_alert.txt").write_text("ours: {{ common_labels.alertname }}")
    loaded = parse_config(
        config_text(tmp_path, "critical_alert.txt"), tmp_path / "notifier.yaml", {}
    )
    context = template_context(notification(loaded, "console", make_payload()), "log")

    rendered = Renderer(loaded.templates_dir).render_file("critical_alert.txt", context, "")

    assert rendered.text == "ours: TestAlert"


def test_a_template_neither_in_the_folder_nor_built_in_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_text(tmp_path, "nope.txt"), tmp_path / "notifier.yaml", {})
    assert caught.value.problems == [
        f"channels.console.template: template 'nope.txt' not found in {tmp_path}"
        " nor among the built-in templates"
    ]


@pytest.mark.parametrize("name", ["__init__.py", "../config.py", "sub/x.txt", ".hidden", ""])
def test_only_plain_template_names_reach_the_package(name: str) -> None:
    assert builtin_templates.source(name) is None
    assert not builtin_templates.exists(name)


def test_config_for_tests_renders_the_built_in_templates() -> None:
    loaded = config_for_tests(
        {"sms": {"template": "critical_alert.txt"}}, [{"name": "all", "channels": ["sms"]}]
    )
    context = template_context(notification(loaded, "sms", make_payload()), "log")

    rendered = Renderer(loaded.templates_dir).render_file("critical_alert.txt", context, "")

    assert rendered.text.startswith("[FIRING] TestAlert critical")
