"""Argument checks shared by the package, run in the caller's thread before any work.

Each check returns the value unchanged when it is acceptable and otherwise raises
:class:`~kryten_sync.errors.KrytenValidationError` worded ``"{where}: {name} {problem}"``,
e.g. ``"send_chat: message must not be empty"``: ``where`` is the public function or
method the caller called, ``name`` its argument.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from .errors import KrytenValidationError


def fail(where: str, name: str, problem: str, *, cause: BaseException | None = None) -> NoReturn:
    """Raise ``KrytenValidationError("{where}: {name} {problem}")``, caused by ``cause``."""
    error = KrytenValidationError(f"{where}: {name} {problem}")
    if cause is None:
        raise error
    raise error from cause


def type_name(value: object) -> str:
    """The name of ``value``'s type, as the messages show it (``str``, ``NoneType``)."""
    return type(value).__name__


def require_text(
    where: str,
    name: str,
    value: object,
    *,
    allow_empty: bool = False,
    max_chars: int | None = None,
) -> str:
    """A str; unless ``allow_empty``, one with a non-blank character; at most ``max_chars``."""
    if not isinstance(value, str):
        fail(where, name, f"must be a str, got {type_name(value)}")
    if not allow_empty and not value.strip():
        fail(where, name, "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        fail(where, name, f"must be at most {max_chars} characters, got {len(value)}")
    return value


def require_bool(where: str, name: str, value: object) -> bool:
    """A bool (not merely something truthy)."""
    if not isinstance(value, bool):
        fail(where, name, f"must be a bool, got {type_name(value)}")
    return value


def require_int(
    where: str,
    name: str,
    value: object,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """An int (a bool is not one here) within ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(where, name, f"must be an int, got {type_name(value)}")
    if minimum is not None and value < minimum:
        fail(where, name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        fail(where, name, f"must be <= {maximum}, got {value}")
    return value


def require_number(
    where: str,
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    finite: bool = True,
) -> float:
    """An int or float (a bool is not one here), returned unchanged: an int stays an int.

    NaN is always refused, infinities unless ``finite`` is false. ``minimum`` is the
    smallest value allowed, or the bound to stay above with ``exclusive_minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(where, name, f"must be a number, got {type_name(value)}")
    if math.isnan(value) or (finite and math.isinf(value)):
        fail(where, name, f"must be finite, got {value}")
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        if minimum == 0:
            wanted = "must be positive" if exclusive_minimum else "must not be negative"
        else:
            wanted = f"must be {'>' if exclusive_minimum else '>='} {minimum}"
        fail(where, name, f"{wanted}, got {value}")
    return value


def require_seconds(where: str, name: str, value: object) -> float:
    """A duration in seconds: a finite number >= 0, returned unchanged."""
    return require_number(where, name, value, minimum=0)


def require_mapping(where: str, name: str, value: object) -> Mapping[str, Any]:
    """A mapping whose keys are all str (what a JSON object can hold)."""
    if not isinstance(value, Mapping):
        fail(where, name, f"must be a dict, got {type_name(value)}")
    for key in value:
        if not isinstance(key, str):
            fail(where, name, f"keys must be str, got {type_name(key)} key {key!r}")
    return value


def json_copy(where: str, name: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``value`` as a JSON reader will see it; refuses what JSON cannot hold."""
    try:
        copied: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        fail(where, name, f"is not JSON-serialisable: {exc}", cause=exc)
    return copied


__all__ = [
    "fail",
    "json_copy",
    "require_bool",
    "require_int",
    "require_mapping",
    "require_number",
    "require_seconds",
    "require_text",
    "type_name",
]
