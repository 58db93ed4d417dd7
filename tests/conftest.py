from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._nats import NatsServer


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    """A fresh nats-server (JetStream on) for one test."""
    with NatsServer(jetstream=True) as server:
        yield server


@pytest.fixture(scope="module")
def shared_server() -> Iterator[NatsServer]:
    """One nats-server for a whole module, for tests that leave no state behind."""
    with NatsServer(jetstream=True) as server:
        yield server
