"""Fixtures: a loopback learner server and actor clients that are always closed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from serl.transport.client import ActorClient
from serl.transport.server import LearnerServer
from tests.transport.helpers import CONFIG_HASH, FAST_CLIENT, STATE_SPEC


@pytest.fixture
def server() -> Iterator[LearnerServer]:
    srv = LearnerServer(STATE_SPEC, CONFIG_HASH)
    yield srv
    srv.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., ActorClient]]:
    clients: list[ActorClient] = []

    def make(
        server: LearnerServer,
        actor_id: str = "a0",
        weights_endpoint: str | None = None,
        **kwargs: Any,
    ) -> ActorClient:
        options: dict[str, Any] = {"spec": STATE_SPEC, "config_hash": CONFIG_HASH, "incarnation": 0}
        options |= FAST_CLIENT
        options |= kwargs
        client = ActorClient(
            server.data_endpoint,
            weights_endpoint or server.weights_endpoint,
            actor_id=actor_id,
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout_s=0.0)
