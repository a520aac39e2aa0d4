"""Fixtures: a sim-backed robot server on a loopback thread, and clients that are closed;
helpers that drive any robot server through its client."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from robots.client import MoveResult, RobotClient
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


def stats(client: RobotClient) -> dict[str, int]:
    """The server's counters (rejections, clamps, watchdog, ...)."""
    return client.info()["stats"]


def keep_target(
    client: RobotClient,
    pos: np.ndarray | list[float],
    quat: np.ndarray | None = None,
    *,
    reached: Callable[[MoveResult], bool] | None = None,
    timeout_s: float = 10.0,
) -> tuple[MoveResult, int]:
    """Send `move_to(pos, quat)` at 10 Hz until `reached(result)` (or at least 5 times);
    returns (last result, commands sent). Arms that move in real time (the realtime sim,
    franky-sim, a real arm) get there later on a busy machine: tests wait in commands, not
    in a fixed time."""
    deadline, sent = time.monotonic() + timeout_s, 0
    while True:
        time.sleep(0.1)
        result = client.move_to(pos, quat)
        sent += 1
        if sent >= 5 and (reached is None or reached(result)):
            return result, sent
        if time.monotonic() > deadline:
            return result, sent
