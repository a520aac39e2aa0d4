"""Safety enforced by a real robot server (sim backend, loopback ZeroMQ), checked on the state.

Commands go straight to the server over its socket, as any client could send them; the
server's counters and the arm's measured state afterwards show what it did with them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from robots.client import RobotClient, RobotServerError
from robots.safety import quat_from_rotvec, quat_mul, rotation_difference
from robots.server import RobotServer

pytestmark = pytest.mark.timeout(60)

Server = Callable[..., RobotServer]
Client = Callable[..., RobotClient]


def stats(client: RobotClient) -> dict[str, int]:
    return client.info()["stats"]


def test_nan_command_is_rejected_counted_and_the_arm_holds(
    make_server: Server, make_client: Client
) -> None:
    client = make_client(make_server().endpoint)
    before = client.get_state()["ee_pos"]
    for dpos, drot, grip in [
        ([np.nan, 0, 0], None, None),
        ([0.01, 0, 0], [0, np.inf, 0], None),
        ([0.01, 0, 0], None, float("nan")),
    ]:
        result = client.move_delta(dpos, drot, grip)
        assert not result.accepted and result.reason == "nonfinite"
    after = client.get_state()["ee_pos"]
    np.testing.assert_allclose(after, before, atol=1e-3)
    assert stats(client)["rejected:nonfinite"] == 3


def test_rotations_whose_norm_overflows_are_rejected_and_the_arm_holds(
    make_server: Server, make_client: Client
) -> None:
    client = make_client(make_server().endpoint)
    before = client.get_state()["ee_pos"]
    huge = 1e308  # finite, but the norm of two of them is Inf
    for result in (
        client.move_delta([0.01, 0.0, 0.0], [huge, huge, 0.0]),
        client.move_to(before, [huge, huge, 0.0, 0.0]),
    ):
        assert not result.accepted and result.reason == "nonfinite"
        assert result.state["held"]
    np.testing.assert_allclose(client.get_state()["ee_pos"], before, atol=1e-3)
    counters = stats(client)
    assert counters["rejected:nonfinite"] == 2 and "refused:internal_error" not in counters


def test_a_motion_command_that_fails_inside_the_server_leaves_the_arm_holding(
    make_server: Server, make_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server()
    client = make_client(server.endpoint)
    assert client.move_delta([0.01, 0.0, 0.0]).accepted
    holds = []
    monkeypatch.setattr(server.backend, "hold", lambda: holds.append(True))

    def broken(pos: np.ndarray, quat: np.ndarray) -> None:
        raise ZeroDivisionError("a bug in a driver")

    monkeypatch.setattr(server.backend, "command_pose", broken)
    with pytest.raises(RobotServerError, match="internal_error"):
        client.move_delta([0.01, 0.0, 0.0])
    assert holds == [True]
    assert client.get_state()["held"]


def test_target_outside_the_box_is_clamped_into_it(
    make_server: Server, make_client: Client
) -> None:
    server = make_server(max_step_m=1.0, max_speed_mps=100.0)
    client = make_client(server.endpoint)
    high_z = server.cfg.safety.workspace_high_m[2]
    for _ in range(15):
        result = client.move_to([0.5, 0.0, 2.0])
    assert "workspace" in result.clamped
    z = result.state["ee_pos"][2]
    assert z == pytest.approx(high_z, abs=0.01)  # settled on the box's top face, not at 2 m
    assert stats(client)["clamped:workspace"] == 15


def test_too_large_step_is_clamped_to_max_step(make_server: Server, make_client: Client) -> None:
    server = make_server(max_step_m=0.02)
    client = make_client(server.endpoint)
    start = client.get_state()["ee_pos"]
    result = client.move_delta([0.2, 0.0, 0.0])
    assert result.accepted and result.clamped == ("step_m",)
    for _ in range(5):  # hold the clamped target: re-send a zero step from where the arm is
        result = client.move_to(start + [0.02, 0.0, 0.0])
    moved = result.state["ee_pos"] - start
    assert moved[0] == pytest.approx(0.02, abs=0.004)
    assert stats(client)["clamped:step_m"] == 1


def test_rotation_across_plus_minus_pi_is_a_small_step_not_a_spin(
    make_server: Server, make_client: Client
) -> None:
    # The hand points down (roll = pi): 0.05 rad more about x crosses to roll = -pi + 0.05.
    client = make_client(make_server(max_step_rad=0.1).endpoint)
    state = client.get_state()
    target = quat_mul(quat_from_rotvec([0.05, 0.0, 0.0]), state["ee_quat"])
    for _ in range(6):
        result = client.move_to(state["ee_pos"], target)
        assert result.accepted and "step_rad" not in result.clamped
    error = rotation_difference(result.state["ee_quat"], target)
    assert np.linalg.norm(error) < 0.02
    assert stats(client).get("clamped:step_rad", 0) == 0


def test_large_rotation_is_clamped_to_max_step_rad(
    make_server: Server, make_client: Client
) -> None:
    client = make_client(make_server(max_step_rad=0.1).endpoint)
    start = client.get_state()
    result = client.move_delta([0.0, 0.0, 0.0], [0.0, 0.0, 2.5])
    assert result.clamped == ("step_rad",)
    for _ in range(5):
        result = client.move_delta([0.0, 0.0, 0.0])  # keep position; orientation target held
    turned = np.linalg.norm(rotation_difference(start["ee_quat"], result.state["ee_quat"]))
    assert turned < 0.13


def test_watchdog_holds_within_its_timeout_when_commands_stop(
    make_server: Server, make_client: Client
) -> None:
    server = make_server(realtime=True, watchdog_timeout_s=0.3, watchdog_stop_s=0.8)
    client = make_client(server.endpoint)
    for _ in range(3):
        time.sleep(0.1)
        assert not client.move_delta([0.01, 0.0, 0.0]).state["held"]
        last_command = time.monotonic()
    while not client.get_state()["held"]:
        assert time.monotonic() - last_command < 1.5, "the watchdog did not hold within 1.5 s"
        time.sleep(0.02)
    held_after = time.monotonic() - last_command
    assert held_after >= 0.25  # not before its timeout
    time.sleep(1.0)
    counters = stats(client)
    assert counters["watchdog:hold"] == 1 and counters["watchdog:stop"] == 1
    assert not client.move_delta([0.0, 0.0, 0.01]).state["held"]  # a new command resumes


def test_estop_works_while_another_client_streams_commands(
    make_server: Server, make_client: Client
) -> None:
    server = make_server(realtime=True)
    streamer, button = make_client(server.endpoint), make_client(server.endpoint)
    results: list[bool] = []
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            results.append(streamer.move_delta([0.0, 0.005, 0.0]).accepted)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        button.estop()
        estop_s = time.monotonic() - started
        accepted_before = sum(results)
        time.sleep(0.3)
        position = button.get_state()["ee_pos"]
        time.sleep(0.3)
        state = button.get_state()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert accepted_before > 0 and estop_s < 1.0
    assert state["estopped"]
    assert not any(results[-5:])  # the streamer's commands are refused now
    np.testing.assert_allclose(state["ee_pos"], position, atol=2e-3)  # and the arm stays
    assert stats(button)["rejected:estopped"] >= 5
    button.release_estop()
    assert streamer.move_delta([0.0, 0.0, 0.005]).accepted


def test_only_a_client_that_set_the_estop_can_release_it(
    make_server: Server, make_client: Client
) -> None:
    endpoint = make_server().endpoint
    button, other = make_client(endpoint), make_client(endpoint)
    button.estop()
    with pytest.raises(RobotServerError, match="estop_owner"):
        other.release_estop()
    assert other.get_state()["estopped"]
    assert not other.move_delta([0.0, 0.0, 0.005]).accepted
    button.release_estop()
    assert other.move_delta([0.0, 0.0, 0.005]).accepted
    counters = stats(other)
    assert counters["refused:estop_owner"] == 1 and counters["estop_releases"] == 1


def test_every_client_that_pressed_the_estop_must_release_it(
    make_server: Server, make_client: Client
) -> None:
    endpoint = make_server().endpoint
    first, second = make_client(endpoint), make_client(endpoint)
    first.estop()
    second.estop()
    with pytest.raises(RobotServerError, match="estop_held"):
        first.release_estop()
    assert first.get_state()["estopped"]
    second.release_estop()
    assert not first.get_state()["estopped"]


def test_the_robot_pc_releases_an_estop_whoever_set_it(
    make_server: Server, make_client: Client
) -> None:
    server = make_server()
    gone = make_client(server.endpoint)
    gone.estop()
    gone.close()  # the client that pressed it is gone
    server.release_estop_locally()
    client = make_client(server.endpoint)
    deadline = time.monotonic() + 5.0
    while client.get_state()["estopped"]:
        assert time.monotonic() < deadline, "the local release did not happen"
        time.sleep(0.01)
    assert client.move_delta([0.0, 0.0, 0.005]).accepted


@pytest.mark.parametrize(
    "dq",
    [
        [0, -0.8, 0, 0, 0, 0, 0],  # TCP (0.273, 0, 0.714): above the box
        [0.9, 0, 0, 0, 0, 0, 0],  # (0.288, 0.363, 0.403): beside it
        [0, 0, 0, 0, 0, -1.2, 0],  # (0.211, 0, 0.455): behind it
    ],
)
def test_a_reset_to_a_joint_vector_outside_the_workspace_is_refused_and_the_arm_stays(
    make_server: Server, make_client: Client, dq: list[float]
) -> None:
    server = make_server()
    client = make_client(server.endpoint)
    home = client.reset("home")["q"]
    before = client.get_state()["ee_pos"]
    with pytest.raises(RobotServerError, match=r"bad_pose.*outside the workspace box"):
        client.reset(home + np.array(dq))  # inside the joint limits, outside the box
    np.testing.assert_allclose(client.get_state()["ee_pos"], before, atol=1e-6)
    assert stats(client)["rejected:reset_pose"] == 1
    inside = client.reset(home + np.array([0, 0.9, 0, 0.6, 0, 0, 0]))  # TCP (0.627, 0, 0.161)
    assert np.all(inside["ee_pos"] >= server.safety.low) and np.all(
        inside["ee_pos"] <= server.safety.high
    )


def test_a_backend_without_kinematics_takes_only_named_poses(
    make_server: Server, make_client: Client
) -> None:
    server = make_server()
    server.backend.tcp_position = lambda q: None  # as a backend with no kinematic model
    client = make_client(server.endpoint)
    home = client.reset("home")["q"]
    with pytest.raises(RobotServerError, match="cannot check a joint vector.*named pose"):
        client.reset(home)
