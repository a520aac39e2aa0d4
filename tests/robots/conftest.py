"""Fixtures: a sim-backed robot server on a loopback thread, and clients that are closed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from robots.client import RobotClient
from robots.config import RobotServerConfig, SafetyConfig, SimBackendConfig
from robots.server import RobotServer


def server_config(realtime: bool = False, **safety: Any) -> RobotServerConfig:
    """A loopback server config on a free port with some safety limits changed."""
    return RobotServerConfig(
        endpoint="tcp://127.0.0.1:0",
        safety=dataclasses.replace(SafetyConfig(), **safety),
        sim=SimBackendConfig(realtime=realtime, camera_height=64, camera_width=64),
    )


@pytest.fixture
def make_server() -> Iterator[Callable[..., RobotServer]]:
    servers: list[RobotServer] = []

    def make(realtime: bool = False, **safety: Any) -> RobotServer:
        server = RobotServer(server_config(realtime, **safety)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., RobotClient]]:
    clients: list[RobotClient] = []

    def make(endpoint: str, **kwargs: Any) -> RobotClient:
        client = RobotClient(endpoint, **({"timeout_s": 10.0} | kwargs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
