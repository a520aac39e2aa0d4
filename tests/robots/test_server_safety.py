"""Safety enforced by a real robot server, checked on the arm's measured state, on each backend.

Every test runs twice: on the `sim` backend (the MuJoCo Panda behind a server thread, its
physics following the wall clock) and on the `franka` backend (`serl robot-server --backend
franka` through franky and libfranka, against franky-sim; tests/robots/franky_sim.py). Commands
go to the server over its socket, as any client could send them; the server's counters and
the arm's measured state afterwards show what it did with them. Both arms move in real time,
so the tests wait in commands or for a condition, never for a fixed time to pass.

One server per backend serves the module (franky-sim takes seconds to start on two cores):
each test starts from a reset to home and compares counters before and after.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from robots.client import RobotClient, RobotServerError
from robots.safety import quat_from_rotvec, quat_mul, rotation_difference
from robots.server import RobotServer
from tests.robots.conftest import keep_target, server_config, stats
from tests.robots.franky_sim import franka_server

pytestmark = pytest.mark.timeout(90)
Server = Callable[..., RobotServer]
Client = Callable[..., RobotClient]

SAFETY = {"watchdog_stop_s": 1.0}
"""The default limits but a shorter watchdog stop, on both servers: the test waits for it."""
NEAR_M = 1e-3
"""A target counts as reached within 1 mm (franky-sim settles to 0.07 mm, the sim to less)."""


@pytest.fixture(scope="module", params=["sim", "franka"])
def endpoint(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The endpoint of a robot server of each backend, with the `SAFETY` limits."""
    if request.param == "sim":
        server = RobotServer(server_config(realtime=True, **SAFETY)).start()
        try:
            yield server.endpoint
        finally:
            server.close()
    else:
        with franka_server(tmp_path_factory.mktemp("franka"), {"safety": SAFETY}) as address:
            yield address


@pytest.fixture
def client(endpoint: str) -> Iterator[RobotClient]:
    """A client of the module's server, the arm at home and not e-stopped."""
    with RobotClient(endpoint, timeout_s=10.0) as c:
        c.release_estop()  # a no-op unless an earlier test left the arm e-stopped
        c.reset("home")
        yield c


def increase(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def near(goal: np.ndarray) -> Callable:
    """A `keep_target` condition: the TCP within `NEAR_M` of `goal`."""
    return lambda result: np.linalg.norm(result.state["ee_pos"] - goal) < NEAR_M


def turned_to(goal: np.ndarray, tolerance_rad: float = 5e-3) -> Callable:
    """A `keep_target` condition: the TCP's orientation within `tolerance_rad` of `goal`."""
    return lambda r: np.linalg.norm(rotation_difference(r.state["ee_quat"], goal)) < tolerance_rad


def assert_stays(client: RobotClient, seconds: float = 0.3, atol_m: float = 1e-3) -> None:
    """The arm does not move over `seconds` (observed, not waited for)."""
    position = client.get_state()["ee_pos"]
    time.sleep(seconds)
    np.testing.assert_allclose(client.get_state()["ee_pos"], position, atol=atol_m)


def test_nan_command_is_rejected_counted_and_the_arm_holds(client: RobotClient) -> None:
    before_stats = stats(client)
    before = client.get_state()["ee_pos"]
    for dpos, drot, grip in [
        ([np.nan, 0, 0], None, None),
        ([0.01, 0, 0], [0, np.inf, 0], None),
        ([0.01, 0, 0], None, float("nan")),
    ]:
        result = client.move_delta(dpos, drot, grip)
        assert not result.accepted and result.reason == "nonfinite"
    time.sleep(0.3)  # an accepted 1 cm step would have moved the arm by now
    np.testing.assert_allclose(client.get_state()["ee_pos"], before, atol=1e-3)
    assert increase(before_stats, stats(client), "rejected:nonfinite") == 3


def test_target_outside_the_box_is_clamped_onto_its_face(client: RobotClient) -> None:
    high_z = client.info()["safety"]["workspace_high_m"][2]
    before = stats(client)
    # 2 cm steps (max_step_m) up to the box's top face, asked for until the arm is there
    x = client.get_state()["ee_pos"][0]
    result, sent = keep_target(
        client, [x, 0.0, 2.0], reached=lambda r: abs(r.state["ee_pos"][2] - high_z) < NEAR_M
    )
    assert result.accepted and "workspace" in result.clamped
    assert result.state["ee_pos"][2] == pytest.approx(high_z, abs=2e-3)  # on the face, not at 2 m
    assert increase(before, stats(client), "clamped:workspace") == sent  # every command clamped


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


def test_too_large_step_is_clamped_to_max_step(client: RobotClient) -> None:
    max_step_m = client.info()["safety"]["max_step_m"]
    start = client.get_state()["ee_pos"]
    before = stats(client)
    result = client.move_delta([0.2, 0.0, 0.0])
    assert result.accepted and result.clamped == ("step_m",)
    goal = start + [max_step_m, 0.0, 0.0]  # keep the clamped target until it is reached
    result, _ = keep_target(client, goal, reached=near(goal))
    moved = result.state["ee_pos"] - start
    assert moved[0] == pytest.approx(max_step_m, abs=2e-3)  # 2 cm of the 20 asked
    assert increase(before, stats(client), "clamped:step_m") == 1


def test_fast_steps_are_clamped_by_the_speed_limit(client: RobotClient) -> None:
    safety = client.info()["safety"]
    before = stats(client)
    start = client.move_delta([0.0, 0.0, 0.0]).state["ee_pos"]
    result = client.move_delta([0.0, safety["max_step_m"], 0.0])  # at once, not 0.1 s later
    assert result.accepted and "speed_mps" in result.clamped
    assert increase(before, stats(client), "clamped:speed_mps") == 1
    for _ in range(3):  # zero steps: the arm goes no further than the clamped step
        time.sleep(0.1)
        state = client.move_delta([0.0, 0.0, 0.0]).state
    assert state["ee_pos"][1] - start[1] < 0.5 * safety["max_step_m"]


def test_rotation_across_plus_minus_pi_is_a_small_step_not_a_spin(client: RobotClient) -> None:
    # The hand points down (roll = pi): 0.05 rad more about x crosses to roll = -pi + 0.05.
    before = stats(client)
    state = client.get_state()
    target = quat_mul(quat_from_rotvec([0.05, 0.0, 0.0]), state["ee_quat"])
    result, _ = keep_target(client, state["ee_pos"], target, reached=turned_to(target))
    assert result.accepted and "step_rad" not in result.clamped
    assert np.linalg.norm(rotation_difference(result.state["ee_quat"], target)) < 0.01
    assert increase(before, stats(client), "clamped:step_rad") == 0


def test_large_rotation_is_clamped_to_max_step_rad(client: RobotClient) -> None:
    max_step_rad = client.info()["safety"]["max_step_rad"]
    start = client.get_state()
    result = client.move_delta([0.0, 0.0, 0.0], [0.0, 0.0, 2.5])
    assert result.accepted and result.clamped == ("step_rad",)
    clamped = quat_mul(quat_from_rotvec([0.0, 0.0, max_step_rad]), start["ee_quat"])
    # keep the clamped target (zero deltas would re-aim at the measured pose) until reached
    result, _ = keep_target(client, start["ee_pos"], clamped, reached=turned_to(clamped))
    assert result.accepted and result.clamped == ()
    turned = np.linalg.norm(rotation_difference(start["ee_quat"], result.state["ee_quat"]))
    assert turned == pytest.approx(max_step_rad, abs=0.01)  # 0.1 rad of the 2.5 asked


def wait_for_count(client: RobotClient, key: str, count: int, timeout_s: float) -> float:
    """Poll the server's counter `key` until it reaches `count`; when it did (monotonic s)."""
    deadline = time.monotonic() + timeout_s
    while stats(client).get(key, 0) < count:
        assert time.monotonic() < deadline, f"{key} did not reach {count} within {timeout_s} s"
        time.sleep(0.02)
    return time.monotonic()


def wait_for_rest(client: RobotClient, timeout_s: float) -> None:
    """Poll the state until the TCP is slower than 2 mm/s (an arm braking to a stop)."""
    deadline = time.monotonic() + timeout_s
    while np.linalg.norm(client.get_state()["ee_vel"][:3]) >= 2e-3:
        assert time.monotonic() < deadline, f"the arm did not come to rest within {timeout_s} s"
        time.sleep(0.02)


def test_watchdog_holds_then_stops_when_commands_stop(client: RobotClient) -> None:
    safety = client.info()["safety"]
    before = stats(client)
    for _ in range(3):
        time.sleep(0.1)
        assert not client.move_delta([0.01, 0.0, 0.0]).state["held"]
        last_command = time.monotonic()
    held = wait_for_count(client, "watchdog:hold", before.get("watchdog:hold", 0) + 1, 1.5)
    assert client.get_state()["held"]
    assert held - last_command >= 0.9 * safety["watchdog_timeout_s"]  # not before its timeout
    stopped = wait_for_count(client, "watchdog:stop", before.get("watchdog:stop", 0) + 1, 3.0)
    assert stopped - last_command >= 0.9 * safety["watchdog_stop_s"]
    after = stats(client)
    for key in ("watchdog:hold", "watchdog:stop"):
        assert increase(before, after, key) == 1
    assert increase(before, after, "backend_errors") == 0
    assert_stays(client, atol_m=5e-4)
    result = client.move_delta([0.0, 0.0, 0.01])  # a new command resumes
    assert result.accepted and not result.state["held"]


def test_estop_works_while_another_client_streams_commands(
    client: RobotClient, endpoint: str
) -> None:
    results: list[bool] = []
    streaming = threading.Event()
    stop = threading.Event()

    def stream() -> None:  # as fast as the server answers
        with RobotClient(endpoint, timeout_s=10.0) as streamer:
            while not stop.is_set():
                results.append(streamer.move_delta([0.0, 0.005, 0.0]).accepted)
                if sum(results) >= 10:
                    streaming.set()

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        assert streaming.wait(10.0), "the streamer's commands were not accepted"
        before = stats(client)
        started = time.monotonic()
        client.estop()
        estop_s = time.monotonic() - started
        refused = len(results)
        wait_for_count(client, "rejected:estopped", before.get("rejected:estopped", 0) + 5, 5.0)
        wait_for_rest(client, 3.0)
        assert_stays(client)
        state = client.get_state()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert estop_s < 1.0 and state["estopped"]
    assert not any(results[refused + 1 :])  # the streamer's commands are refused now
    client.release_estop()
    time.sleep(0.1)
    assert client.move_delta([0.0, 0.0, 0.005]).accepted


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
    client: RobotClient, dq: list[float]
) -> None:
    home = client.get_state()["q"]
    before = stats(client)
    with pytest.raises(RobotServerError, match=r"bad_pose.*outside the workspace box"):
        client.reset(home + np.array(dq))  # inside the joint limits, outside the box
    assert_stays(client, atol_m=5e-4)
    assert increase(before, stats(client), "rejected:reset_pose") == 1


def test_a_reset_to_a_joint_vector_inside_the_workspace_goes_there(client: RobotClient) -> None:
    safety = client.info()["safety"]
    q = client.get_state()["q"] + np.array([0, 0.9, 0, 0.6, 0, 0, 0])  # TCP (0.627, 0, 0.161)
    state = client.reset(q)
    np.testing.assert_allclose(state["q"], q, atol=0.02)
    assert np.all(state["ee_pos"] >= safety["workspace_low_m"])
    assert np.all(state["ee_pos"] <= safety["workspace_high_m"])


def test_a_backend_without_kinematics_takes_only_named_poses(
    make_server: Callable[..., RobotServer], make_client: Callable[..., RobotClient]
) -> None:
    # sim only: a backend's kinematic model is replaced in the server's own process
    server = make_server()
    server.backend.tcp_position = lambda q: None  # as a backend with no kinematic model
    client = make_client(server.endpoint)
    home = client.reset("home")["q"]
    with pytest.raises(RobotServerError, match="cannot check a joint vector.*named pose"):
        client.reset(home)
