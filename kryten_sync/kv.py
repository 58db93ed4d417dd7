"""JetStream key-value access and the bridge's state buckets (PROTOCOL.md section 5)."""

from __future__ import annotations


class KeyValueMixin:
    """Blocking key-value methods; mixed into the client."""

    __slots__ = ()
