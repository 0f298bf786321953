"""The docs a newcomer reads first say what the code does: every config key and every
route is in the README's tables, and the deploy files agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from proxy.app import create_app
from proxy.config import effective_config, settings_from_mapping
from tests.helpers.proxies import proxy_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _leaf_keys(mapping: dict[str, object], prefix: str = "") -> list[str]:
    keys = []
    for name, value in mapping.items():
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _table_rows(heading: str) -> str:
    """The rows of the first table under ``## heading``."""
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("| `"))


def test_every_config_key_is_in_the_readmes_configuration_table() -> None:
    settings = settings_from_mapping(proxy_config("http://127.0.0.1:1", 8080), environ={})
    rows = _table_rows("Configuration")
    missing = [key for key in _leaf_keys(effective_config(settings)) if f"| `{key}` |" not in rows]
    assert missing == []


def test_every_route_is_in_the_readmes_http_surface_table() -> None:
    settings = settings_from_mapping(proxy_config("http://127.0.0.1:1", 8080), environ={})
    rows = _table_rows("HTTP surface")
    paths = {resource.canonical for resource in create_app(settings).router.resources()}
    # /api/{tail} is documented as /api/<path>.
    missing = [path for path in paths if f" {path.replace('{tail}', '<path>')}" not in rows]
    assert missing == []


def test_the_quick_start_says_to_use_a_virtualenv() -> None:
    quick_start = README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    assert "python3 -m venv" in quick_start


def test_the_env_example_names_the_image_compose_builds() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    image = compose["services"]["proxy"]["image"]
    env_example = (ROOT / "deploy" / ".env.example").read_text()
    named = re.findall(r"docker run --rm (\S+) gen-key", env_example)
    assert named == [image]


def test_compose_checks_the_proxys_health_from_its_start() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    healthcheck = compose["services"]["proxy"]["healthcheck"]
    assert "start_period" in healthcheck
    assert healthcheck["start_interval"] == "1s"


def test_no_doc_tells_to_make_sessions_sticky() -> None:
    for doc in (README, (ROOT / "deploy" / "README.md").read_text()):
        assert "make the Ingress sticky" not in doc


def test_the_deploy_guide_is_a_guide_not_a_draft() -> None:
    assert "pasted" not in (ROOT / "deploy" / "README.md").read_text()
