"""The README's promises that can be checked: its example test runs, its configuration
reference names every setting, and the configuration examples of docs/production.md
are valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from kryten_sync.config import (
    ChannelConfig,
    CommandsConfig,
    EventsConfig,
    KrytenConfig,
    MetricsConfig,
    NatsConfig,
    ServiceConfig,
)

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PRODUCTION = (ROOT / "docs" / "production.md").read_text()


def test_fake_bridge_example_runs() -> None:
    block = re.search(r"<!-- fake-bridge-example -->\s*```python\n(.*?)```", README, re.DOTALL)
    assert block is not None, "the FakeBridge example is missing from the README"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    namespace["test_bot_greets_newcomers"]()  # type: ignore[operator]


def test_configuration_reference_names_every_setting() -> None:
    section = README[README.index("## Configuration") : README.index("## Command line")]
    prefixes: list[tuple[str, type[BaseModel]]] = [
        ("", KrytenConfig),
        ("nats.", NatsConfig),
        ("channels[].", ChannelConfig),
        ("service.", ServiceConfig),
        ("metrics.", MetricsConfig),
        ("events.", EventsConfig),
        ("commands.", CommandsConfig),
    ]
    # documented field by field
    sections = {"nats", "channels", "service", "metrics", "events", "commands"}
    missing = [
        prefix + name
        for prefix, model in prefixes
        for name in model.model_fields
        if not (model is KrytenConfig and name in sections) and f"`{prefix}{name}`" not in section
    ]
    assert missing == []


def test_production_config_examples_are_valid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocks = re.findall(r"<!-- production-config -->\s*```yaml\n(.*?)```", PRODUCTION, re.DOTALL)
    assert len(blocks) >= 3
    monkeypatch.setenv("NATS_PASSWORD", "from-the-environment")
    for index, block in enumerate(blocks):
        path = tmp_path / f"example{index}.yaml"
        path.write_text(block)
        KrytenConfig.from_yaml(path)  # ${VAR} substituted as for a real file
