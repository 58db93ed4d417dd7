"""kryten-py 0.17.5's recorded KrytenClient API against kryten_sync's: every member
exists, every documented call binds, and docs/compat.md is the table generated from it."""

from __future__ import annotations

import importlib.util
import inspect
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kryten_sync import KrytenClient

ROOT = Path(__file__).resolve().parent.parent


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compat_table", ROOT / "scripts" / "compat_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_table"] = module
    spec.loader.exec_module(module)
    return module


compat = _load_script()
API = compat.client_api()
MEMBERS: dict[str, Any] = API["members"]
METHODS = sorted(n for n, m in MEMBERS.items() if m["kind"] != "property")
PROPERTIES = sorted(n for n, m in MEMBERS.items() if m["kind"] == "property")


@pytest.fixture(scope="module")
def client() -> KrytenClient:
    return compat.sample_client()  # type: ignore[no-any-return]


def test_the_recorded_api_is_kryten_py_0_17_5() -> None:
    api = compat.load_api()
    assert (api["distribution"], api["version"]) == ("kryten-py", "0.17.5")
    assert len(METHODS) == 97 and PROPERTIES == ["channels", "is_connected", "lifecycle"]


@pytest.mark.parametrize("name", METHODS)
def test_every_documented_call_binds(client: KrytenClient, name: str) -> None:
    method = getattr(client, name)
    assert callable(method)
    assert not inspect.iscoroutinefunction(method), f"{name} must be a plain blocking method"
    signature = inspect.signature(method)
    forms = list(compat.calls(MEMBERS[name]["parameters"]))
    assert [f[0] for f in forms] == ["positional", "keyword", "required"]
    for form, args, kwargs in forms:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            pytest.fail(f"{name}{signature}: kryten-py's {form} call {args} {kwargs}: {exc}")


def test_the_binding_check_catches_a_mismatch() -> None:
    # The check itself: kryten-py's unban(channel, ban_id) against a signature that
    # requires a name must fail, and one with a renamed parameter too.
    params = MEMBERS["unban"]["parameters"]

    def needs_name(channel: str, ban_id: int, name: str, *, domain: str | None = None) -> None: ...

    def renamed(chan: str, ban_id: int, *, domain: str | None = None) -> None: ...

    for fn in (needs_name, renamed):
        results = [compat.binds(inspect.signature(fn), a, k) for _, a, k in compat.calls(params)]
        assert not all(results), fn


def test_the_constructor_binds() -> None:
    signature = inspect.signature(KrytenClient)
    for _, args, kwargs in compat.calls(API["constructor"]["parameters"]):
        signature.bind(*args, **kwargs)


@pytest.mark.parametrize("name", PROPERTIES)
def test_every_property_exists(client: KrytenClient, name: str) -> None:
    assert isinstance(inspect.getattr_static(KrytenClient, name), property)
    getattr(client, name)  # readable before connect, as in kryten-py


def test_instance_attributes_and_sync_context_manager(client: KrytenClient) -> None:
    for name in API["instance_attributes"]:  # config, logger
        assert hasattr(client, name)
    assert set(API["special_methods"]) == {"__aenter__", "__aexit__"}  # async-only
    assert callable(KrytenClient.__enter__) and callable(KrytenClient.__exit__)


def test_every_row_has_a_status(client: KrytenClient) -> None:
    rows = compat.rows(client)
    assert len(rows) == 1 + len(MEMBERS)
    assert {r.status for r in rows} <= {"same", "extended", "differs"}
    assert all(r.calls == r.total for r in rows)
    # Every note names a real member, and every "differs" row says why.
    assert set(compat.NOTES) <= set(MEMBERS)
    assert all(r.note for r in rows if r.status == "differs")


def test_committed_compat_table_is_the_generated_one(client: KrytenClient) -> None:
    out = io.StringIO()
    compat.main(out.write)
    committed = (ROOT / "docs" / "compat.md").read_text(encoding="utf-8")
    assert committed == out.getvalue(), (
        "regenerate: python scripts/compat_table.py > docs/compat.md"
    )


def test_readme_links_the_compat_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## From the async original") :]
    section = section[: section.index("\n## ", 1)]
    assert "docs/compat.md" in section
    assert "|---|" not in section  # the table lives in docs/compat.md only
