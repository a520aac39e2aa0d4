"""The realtime sim behind a server, commanded faster than its 10 ms physics slices (sim only:
the property under test is how the sim backend reads time)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from robots.client import RobotClient
from robots.server import RobotServer
from tests.robots.conftest import stats

pytestmark = pytest.mark.timeout(60)


def test_realtime_sim_moves_for_commands_at_250_hz(
    make_server: Callable[..., RobotServer], make_client: Callable[..., RobotClient]
) -> None:
    """0.5 mm steps at 250 Hz (0.125 m/s, half the default speed limit) for 1 s. The speed
    limit measures dt on the backend's clock; when that was sim time, which the realtime
    thread advances in 10 ms jumps, most commands saw dt = 0, were clamped to the measured
    pose, and the arm moved 0.2 mm. Now few are clamped and the arm moves millimetres."""
    client = make_client(make_server(realtime=True).endpoint)
    client.reset("home")
    start = client.get_state()["ee_pos"].copy()
    before = stats(client).get("clamped:speed_mps", 0)
    period_s, sent = 1 / 250, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        assert client.move_delta([0.0005, 0.0, 0.0]).accepted
        sent += 1
        time.sleep(max(0.0, t0 + sent * period_s - time.monotonic()))
    moved = client.get_state()["ee_pos"] - start
    clamped = stats(client).get("clamped:speed_mps", 0) - before
    assert clamped < sent / 3, f"{clamped} of {sent} commands clamped by the speed limit"
    assert moved[0] > 0.002, f"the arm moved {moved.tolist()} m"
    assert np.abs(moved[1:]).max() < 0.001
