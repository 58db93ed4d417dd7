"""Service lifecycle: startup, heartbeat, shutdown, discovery (PROTOCOL.md section 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import KrytenClient


class ServiceLifecycle:
    """Announces the client as a Kryten service when ``config.service`` is set."""

    def __init__(self, client: KrytenClient) -> None:
        self._client = client
