"""The README's promises that can be checked: its example test runs, its configuration
reference names every setting, and the configuration examples of docs/production.md
are valid."""

from __future__ import annotations

import re
import subprocess
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


ROOT = Path(__file__).resolve().parent.parent


def readme_block(marker: str, language: str) -> str:
    """The code block right after ``<!-- marker -->`` in the README."""
    found = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)```", README, re.DOTALL)
    assert found is not None, f"no {language} block after <!-- {marker} --> in the README"
    return found.group(1)


def test_the_quickstart_is_the_example_file() -> None:
    assert readme_block("quickstart", "python") == (ROOT / "examples" / "quickstart.py").read_text()


def test_two_set_up_commands_and_ci_runs_the_test_command() -> None:
    demo = readme_block("demo-command", "sh").strip()
    assert demo.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e")
    assert demo.endswith("&& kryten-sync demo")
    test = readme_block("test-command", "sh").strip()
    assert test.endswith("&& ruff check . && mypy --strict kryten_sync && pytest")
    # .ci/run reads the command out of the README with awk: the same text comes out.
    script = (ROOT / ".ci" / "run").read_text()
    program = re.search(r"awk '(.*?)' README\.md", script, re.DOTALL)
    assert program is not None
    extracted = subprocess.run(
        ["awk", program.group(1), "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert extracted.strip() == test
    assert 'bash -c "$test_command"' in script
    assert "for version in 3.11 3.13; do" in script


def test_classifiers_list_the_pythons_ci_tests() -> None:
    classifiers = re.findall(
        r"Programming Language :: Python :: (3\.\d+)", (ROOT / "setup.cfg").read_text()
    )
    script = (ROOT / ".ci" / "run").read_text()
    tested = re.search(r"for version in ([\d. ]+); do", script)
    assert tested is not None
    assert classifiers == tested.group(1).split()
