"""Record the public API of kryten-py 0.17.5 as JSON, for comparison with kryten_sync.

Recorded with (from the repository root, kryten-py installed in a separate venv)::

    python3 -m venv /tmp/kpy && /tmp/kpy/bin/pip install kryten-py==0.17.5
    /tmp/kpy/bin/python scripts/record_kryten_py_api.py > tests/data/kryten_py_0_17_5_api.json

Covers every name in ``kryten.__all__``. Classes: constructor, bases, public methods and
properties (own and inherited, ``object``, pydantic ``BaseModel``, ``ABC`` and exception
bases excluded), abstract methods, the protocols they implement (``async with`` ...) and,
for the two clients, the public attributes an instance has after ``__init__``. Pydantic
models also list their fields. Exceptions list their bases and MRO. Parameters omit
``self``/``cls``; a default that JSON cannot hold is recorded as its ``repr`` with
``default_repr: true``. Annotations are strings with ``typing.``, ``collections.abc.``
and ``builtins.`` prefixes removed. Output is sorted, so a re-run gives the same bytes.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import importlib.metadata
import inspect
import json
import re
import sys
from collections.abc import Callable
from typing import Any

import kryten
import pydantic
from pydantic_core import PydanticUndefined

EXPECTED_VERSION = "0.17.5"
COMMAND = (
    "/tmp/kpy/bin/python scripts/record_kryten_py_api.py > tests/data/kryten_py_0_17_5_api.json"
)
# Minimal valid configuration, used only to build (never connect) the two clients.
SAMPLE_CONFIG: dict[str, Any] = {
    "nats": {"servers": ["nats://127.0.0.1:4222"]},
    "channels": [{"domain": "cytu.be", "channel": "lounge"}],
}
# Special methods that tell how an object is used (``async with``, ``with``, ``for``...).
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "async-context-manager": ("__aenter__", "__aexit__"),
    "context-manager": ("__enter__", "__exit__"),
    "async-iterable": ("__aiter__",),
    "iterable": ("__iter__",),
    "callable": ("__call__",),
}
_STRIP_PREFIXES = re.compile(r"\b(?:typing|collections\.abc|builtins)\.")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fmt_annotation(annotation: Any) -> str | None:
    """Return ``annotation`` as a stable string, or None when there is none."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        if annotation.__module__ == "builtins":
            return annotation.__qualname__
        return _STRIP_PREFIXES.sub("", f"{annotation.__module__}.{annotation.__qualname__}")
    return _STRIP_PREFIXES.sub("", _ADDRESS.sub("", repr(annotation)))


def to_json_value(value: Any) -> tuple[Any, bool]:
    """Return ``(value, False)`` if JSON can hold it, else ``(repr(value), True)``."""
    if isinstance(value, enum.Enum):
        return _ADDRESS.sub("", repr(value)), True
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return _ADDRESS.sub("", repr(value)), True
    return json.loads(text), False


def first_doc_line(obj: Any) -> str | None:
    """Return the first line of ``obj``'s own docstring, or None."""
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    return doc.strip().splitlines()[0].strip()


def callable_kind(func: Any) -> str:
    """Classify a function: coroutine-function, async-generator, ...-context-manager, method."""
    wrapped = getattr(func, "__wrapped__", None)
    if wrapped is not None and inspect.isasyncgenfunction(wrapped):
        return "async-context-manager"
    if wrapped is not None and inspect.isgeneratorfunction(wrapped):
        return "context-manager"
    if inspect.iscoroutinefunction(func):
        return "coroutine-function"
    if inspect.isasyncgenfunction(func):
        return "async-generator"
    if inspect.isgeneratorfunction(func):
        return "generator"
    return "function"


def parameter_record(param: inspect.Parameter) -> dict[str, Any]:
    """Describe one parameter: name, kind, annotation and (if any) default."""
    record: dict[str, Any] = {
        "name": param.name,
        "kind": param.kind.name,
        "annotation": fmt_annotation(param.annotation),
        "has_default": param.default is not inspect.Parameter.empty,
    }
    if record["has_default"]:
        value, is_repr = to_json_value(param.default)
        record["default"] = value
        if is_repr:
            record["default_repr"] = True
    return record


def render_signature(params: list[dict[str, Any]], returns: str | None) -> str:
    """Render recorded parameters as ``(a: int, *, b: str = 'x') -> str``."""
    parts: list[str] = []
    seen_star = False
    positional_only = [p for p in params if p["kind"] == "POSITIONAL_ONLY"]
    for p in params:
        kind = p["kind"]
        if kind == "KEYWORD_ONLY" and not seen_star:
            parts.append("*")
            seen_star = True
        text = p["name"]
        if kind == "VAR_POSITIONAL":
            text = "*" + text
            seen_star = True
        elif kind == "VAR_KEYWORD":
            text = "**" + text
        if p["annotation"] is not None:
            text += f": {p['annotation']}"
        if p["has_default"]:
            default = p["default"] if p.get("default_repr") else repr(p["default"])
            text += f" = {default}" if p["annotation"] is not None else f"={default}"
        parts.append(text)
        if positional_only and p is positional_only[-1]:
            parts.append("/")
    text = "(" + ", ".join(parts) + ")"
    return text if returns is None else f"{text} -> {returns}"


def signature_record(func: Callable[..., Any], *, drop_first: bool) -> dict[str, Any]:
    """Describe a callable's parameters and return annotation."""
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if (
        drop_first
        and params
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        params = params[1:]
    records = [parameter_record(p) for p in params]
    returns = fmt_annotation(sig.return_annotation)
    return {
        "parameters": records,
        "returns": returns,
        "signature": render_signature(records, returns),
    }


def member_record(owner: type, name: str, raw: Any) -> dict[str, Any] | None:
    """Describe one class attribute (method, property, ...), or None to skip it."""
    if isinstance(raw, property):
        fget = raw.fget
        return {
            "kind": "property",
            "defined_in": owner.__qualname__,
            "doc": first_doc_line(raw),
            "returns": fmt_annotation(inspect.signature(fget).return_annotation)
            if fget is not None
            else None,
            "settable": raw.fset is not None,
        }
    if isinstance(raw, staticmethod):
        func, binding, drop_first = raw.__func__, "staticmethod", False
    elif isinstance(raw, classmethod):
        func, binding, drop_first = raw.__func__, "classmethod", True
    elif inspect.isfunction(raw):
        func, binding, drop_first = raw, "instance", True
    else:
        return None
    record: dict[str, Any] = {
        "kind": "method" if callable_kind(func) == "function" else callable_kind(func),
        "binding": binding,
        "defined_in": owner.__qualname__,
        "doc": first_doc_line(func),
    }
    record.update(signature_record(func, drop_first=drop_first))
    return record


# Bases whose members are not part of kryten-py's own API.
EXCLUDED_BASES: frozenset[type] = frozenset(
    {object, pydantic.BaseModel, abc.ABC, BaseException, Exception}
)


def qualified(cls: type) -> str:
    """``module.QualName`` (just ``QualName`` for builtins)."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def class_members(cls: type) -> dict[str, Any]:
    """Public methods and properties of ``cls``, own first, then inherited."""
    validators: set[str] = set()
    decorators = getattr(cls, "__pydantic_decorators__", None)
    if decorators is not None:
        for group in ("field_validators", "model_validators", "validators", "serializers"):
            validators.update(getattr(decorators, group, {}).keys())
    members: dict[str, Any] = {}
    for owner in cls.__mro__:
        if owner in EXCLUDED_BASES:
            continue
        for name, raw in vars(owner).items():
            if name.startswith("_") or name in members or name in validators:
                continue
            record = member_record(owner, name, raw)
            if record is not None:
                members[name] = record
    return members


def abstract_members(cls: type) -> dict[str, Any]:
    """Abstract methods of ``cls`` (protected ones included: subclasses implement them)."""
    result: dict[str, Any] = {}
    for name in sorted(getattr(cls, "__abstractmethods__", ())):
        raw = inspect.getattr_static(cls, name)
        owner = next(c for c in cls.__mro__ if name in vars(c))
        record = member_record(owner, name, raw)
        if record is not None:
            result[name] = record
    return result


def protocols(cls: type) -> list[str]:
    """Protocols ``cls`` implements through special methods of its own (not pydantic's)."""
    found = []
    for label, names in PROTOCOLS.items():
        own = [c for c in cls.__mro__ if c not in EXCLUDED_BASES]
        if all(any(n in vars(c) for c in own) for n in names):
            found.append(label)
    return sorted(found)


def special_methods(cls: type) -> dict[str, Any]:
    """Signatures of the protocol special methods ``cls`` defines."""
    result: dict[str, Any] = {}
    wanted = {n for names in PROTOCOLS.values() for n in names}
    for owner in cls.__mro__:
        if owner in EXCLUDED_BASES:
            continue
        for name in sorted(wanted & set(vars(owner))):
            if name not in result:
                record = member_record(owner, name, vars(owner)[name])
                if record is not None:
                    result[name] = record
    return result


def model_fields(cls: type) -> dict[str, Any]:
    """Fields of a pydantic model: annotation, required, default, constraints."""
    fields: dict[str, Any] = {}
    for name, info in cls.model_fields.items():  # type: ignore[attr-defined]
        record: dict[str, Any] = {
            "annotation": fmt_annotation(info.annotation),
            "required": info.is_required(),
            "description": info.description,
        }
        if info.default is not PydanticUndefined:
            value, is_repr = to_json_value(info.default)
            record["default"] = value
            if is_repr:
                record["default_repr"] = True
        if info.default_factory is not None:
            record["default_factory"] = info.default_factory.__qualname__
        if info.alias is not None:
            record["alias"] = info.alias
        constraints: dict[str, Any] = {}
        for meta in info.metadata:
            if dataclasses.is_dataclass(meta) and not isinstance(meta, type):
                for f in dataclasses.fields(meta):
                    constraints[f.name] = to_json_value(getattr(meta, f.name))[0]
            else:
                constraints[type(meta).__name__] = _ADDRESS.sub("", repr(meta))
        if constraints:
            record["constraints"] = constraints
        fields[name] = record
    return fields


def model_validators(cls: type) -> dict[str, list[str]]:
    """Pydantic field validators: validator name -> fields it checks."""
    decorators = cls.__pydantic_decorators__  # type: ignore[attr-defined]
    return {name: sorted(dec.info.fields) for name, dec in decorators.field_validators.items()}


def model_config(cls: type) -> dict[str, Any]:
    """The JSON-able part of a pydantic model's ``model_config``."""
    config = dict(cls.model_config)  # type: ignore[attr-defined]
    return {key: to_json_value(value)[0] for key, value in config.items()}


def instance_attributes(cls: type) -> dict[str, str]:
    """Public attributes an instance has after ``__init__(SAMPLE_CONFIG)``: name -> type."""
    instance = cls(SAMPLE_CONFIG)
    return {
        name: qualified(type(value))
        for name, value in vars(instance).items()
        if not name.startswith("_")
    }


def class_record(cls: type) -> dict[str, Any]:
    """Describe an exported class (plain, pydantic model or exception)."""
    record: dict[str, Any] = {
        "module": cls.__module__,
        "doc": first_doc_line(cls),
        "bases": [qualified(b) for b in cls.__bases__],
    }
    if issubclass(cls, BaseException):
        record["category"] = "exception"
        record["mro"] = [qualified(c) for c in cls.__mro__]
        return record
    record["category"] = "model" if issubclass(cls, pydantic.BaseModel) else "class"
    constructor = signature_record(cls, drop_first=False)
    constructor.pop("returns")
    constructor["signature"] = render_signature(constructor["parameters"], None)
    record["constructor"] = constructor
    record["members"] = class_members(cls)
    record["protocols"] = protocols(cls)
    record["special_methods"] = special_methods(cls)
    if inspect.isabstract(cls):
        record["abstract"] = True
        record["abstract_methods"] = abstract_members(cls)
    if record["category"] == "model":
        record["fields"] = model_fields(cls)
        record["validators"] = model_validators(cls)
        record["model_config"] = model_config(cls)
    if cls.__name__ in ("KrytenClient", "MockKrytenClient"):
        record["instance_attributes"] = instance_attributes(cls)
    return record


def function_record(func: Callable[..., Any]) -> dict[str, Any]:
    """Describe an exported module-level function."""
    record: dict[str, Any] = {
        "category": "function",
        "kind": callable_kind(func),
        "module": func.__module__,
        "doc": first_doc_line(func),
    }
    record.update(signature_record(func, drop_first=False))
    return record


def record_api() -> dict[str, Any]:
    """Introspect the installed ``kryten`` package."""
    version = importlib.metadata.version("kryten-py")
    if version != EXPECTED_VERSION:
        raise SystemExit(f"kryten-py {EXPECTED_VERSION} expected, {version} is installed")
    names: dict[str, Any] = {}
    for name in sorted(kryten.__all__):
        obj = getattr(kryten, name)
        if inspect.isclass(obj):
            names[name] = class_record(obj)
        elif callable(obj):
            names[name] = function_record(obj)
        else:
            value, is_repr = to_json_value(obj)
            names[name] = {"category": "value", "value": value, "value_repr": is_repr}
    return {
        "distribution": "kryten-py",
        "version": version,
        "package": "kryten",
        "recorded_with": COMMAND,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "exports": sorted(kryten.__all__),
        "names": names,
    }


def main() -> None:
    """Print the recorded API as sorted, indented JSON."""
    json.dump(record_api(), sys.stdout, indent=2, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
