"""The package's layering, read from its source: no import circle, the private core
imports nothing above it, and no module touches another module's private attributes."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "kryten_sync"

# Private names of other libraries the package uses on purpose, each for a reason
# written where it is used.
THIRD_PARTY_PRIVATE = {
    "_flush_pending",  # nats-py: push SUBs before the PING of a flush (connection.py)
    "_id",  # nats-py: a subscription's sid, to count slow-consumer drops per source
    "_register_atexit",  # threading: close clients before executors shut down (exit.py)
}
# A module's own marker on an object it creates and reads back itself.
OWN_MARKERS = {"_kryten_problems"}  # config.py: problems of a nested model's error
ABOVE_CORE = ("client", "service", "tools", "bridge", "kv", "state", "sending", "testing")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (type-checking imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m not in (name, "kryten_sync")}


def test_no_import_circle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = [*trail[trail.index(target) :], target] if target in trail else [target]
                raise AssertionError(f"import circle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_core_imports_nothing_above_it() -> None:
    modules = _modules()
    for name, path in modules.items():
        if not name.startswith("kryten_sync._core"):
            continue
        upward = sorted(
            target for target in _imports(name, path, modules) if target.split(".")[1] in ABOVE_CORE
        )
        assert not upward, f"{name} imports {upward}"


def test_no_module_touches_another_modules_private_attributes() -> None:
    offences = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if attr in THIRD_PARTY_PRIVATE | OWN_MARKERS:
                continue
            offences.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{attr}")
    assert not offences, "private attributes used from outside:\n" + "\n".join(offences)
