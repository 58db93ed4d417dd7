"""Read-only dict access to pydantic models, for code written against plain dicts.

kryten-py returns the bridge's JSON objects as dicts; kryten-sync returns typed models
that also answer ``model["uid"]``, ``model.get("title")``, ``"uid" in model`` and
``keys()``/``values()``/``items()`` by the JSON keys (aliases), extra keys included.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_KEYS: dict[type[BaseModel], dict[str, str]] = {}  # per class: JSON key -> field name


class MappingAccess(BaseModel):
    """A pydantic model readable like the dict it was validated from."""

    @classmethod
    def _keys_of_class(cls) -> dict[str, str]:
        keys = _KEYS.get(cls)
        if keys is None:
            keys = {(f.alias or name): name for name, f in cls.model_fields.items()}
            _KEYS[cls] = keys
        return keys

    def __getitem__(self, key: str) -> Any:
        name = self._keys_of_class().get(key)
        if name is not None:
            return getattr(self, name)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]``, or ``default`` when there is no such key."""
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._keys_of_class() or key in (self.model_extra or {})

    def keys(self) -> list[str]:
        """The JSON keys: every field (by alias), then the extra keys."""
        return [*self._keys_of_class(), *(self.model_extra or {})]

    def values(self) -> list[Any]:
        return [self[key] for key in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(key, self[key]) for key in self.keys()]


__all__ = ["MappingAccess"]
