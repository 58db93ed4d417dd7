"""Health and Prometheus metrics over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .client import KrytenClient


class MetricsServer:
    """Serves ``/health`` and ``/metrics`` when configured."""

    def __init__(self, client: KrytenClient) -> None:
        self._client = client
