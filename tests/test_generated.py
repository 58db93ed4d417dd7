"""Files generated from the event models are current: the typed overloads
(kryten_sync/_event_overloads.pyi) and the event reference (docs/events.md). Each fails
when a model, a name or a method signature changed without ``python
scripts/gen_events.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_events", ROOT / "scripts" / "gen_events.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_events", module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["kryten_sync/_event_overloads.pyi", "docs/events.md"])
def test_generated_file_is_current(gen: ModuleType, name: str) -> None:
    rendered = gen.outputs()[ROOT / name]
    assert (ROOT / name).read_text() == rendered, (
        f"{name} does not match the models: run python scripts/gen_events.py"
    )


def test_the_reference_lists_every_event_and_field(gen: ModuleType) -> None:
    from kryten_sync.eventnames import EVENT_NAMES

    doc = (ROOT / "docs" / "events.md").read_text()
    for name, model in EVENT_NAMES.items():
        assert f"`{name}`" in doc, name
        if model is not None:
            section = doc.split(f"### {model.__name__}\n", 1)[1].split("\n### ", 1)[0]
            for field in model.model_fields:
                if field not in gen.COMMON:
                    assert f"| `{field}` |" in section, (model.__name__, field)
    assert "hello &lt;everyone&gt;" in doc
    assert "`text` (property)" in doc


def test_the_protocol_documents_every_typed_event() -> None:
    from kryten_sync.events import TYPED_EVENTS

    text = (ROOT / "docs" / "protocol.md").read_text()
    table = text.split("| CyTube event | model | where the fields come from |", 1)[1]
    rows = [line for line in table.split("\n\n", 1)[0].splitlines() if line.startswith("| `")]
    documented = {
        row.split("|")[1].strip(" `"): row.split("|")[2].split()[0].rstrip(",") for row in rows
    }
    assert documented == {name: model.__name__ for name, model in TYPED_EVENTS.items()}
