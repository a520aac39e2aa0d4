"""The UR backend's logic, driven through fakes of ur_rtde generated from the installed module.

`FakeRTDE` (tests/robots/ur_rtde_api.py) stands in for ``rtde_control``, ``rtde_receive`` and
``rtde_io``: each method checks its arguments against the real pybind11 overloads, records the
call and answers as scripted. `Arm` scripts a still UR whose asynchronous moves take
`move_s` and end at their target, with the async-operation status as ur_rtde's control script
reports it (operation id in bits 24-30, bit 15 set while running), built with the real
`rtde_control.AsyncOperationStatus`. Nothing here has run against an arm or URSim.
"""

from __future__ import annotations

import datetime
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import rtde_control
import rtde_io
import rtde_receive

from robots.backends import ur
from robots.backends.base import BackendError
from robots.backends.ur import URBackend
from robots.client import RobotClient
from robots.config import (
    ComplianceProfile,
    ConfigError,
    RobotServerConfig,
    URBackendConfig,
    default_profiles,
)
from robots.server import RobotServer
from tests.robots.ur_rtde_api import CONTROL, IO, RECEIVE, FakeRTDE

pytestmark = pytest.mark.timeout(60)

IP = "10.0.0.2"
TCP_POSE = [0.45, 0.05, 0.3, 0.0, 0.0, math.pi / 2]
"""x, y, z (m) and a rotation vector: 90 degrees about z."""
HOME_Q = [0.0, -1.571, 1.571, -1.571, -1.571, 0.0]


class Arm:
    """A UR as the fakes' answers: a still TCP pose and joints, and asynchronous moveJs that
    run for `move_s` and end at their target (`reaches=False`: short of it; `endless`: until
    stopJ)."""

    def __init__(self, fake: FakeRTDE, move_s: float = 0.05) -> None:
        self.q = list(HOME_Q)
        self.move_s = move_s
        self.reaches = True
        self.endless = False
        self.op_id = 0
        self.target: list[float] | None = None
        self.until = 0.0
        fake.answers[(RECEIVE, "getActualTCPPose")] = lambda _: list(TCP_POSE)
        fake.answers[(RECEIVE, "getActualQ")] = lambda _: list(self.q)
        fake.answers[(CONTROL, "moveJ")] = self.move_j
        fake.answers[(CONTROL, "stopJ")] = self.stop_j
        fake.answers[(CONTROL, "getAsyncOperationProgressEx")] = self.status
        fake.answers[(CONTROL, "waitPeriod")] = paced_wait

    def move_j(self, _: Any, q: list[float], *args: Any, **kwargs: Any) -> bool:
        self.op_id += 1
        self.target, self.until = list(q), time.monotonic() + self.move_s
        return True

    def stop_j(self, *_: Any) -> None:
        self.endless, self.reaches, self.until = False, False, 0.0

    def status(self, _: Any) -> rtde_control.AsyncOperationStatus:
        running = self.target is not None and (self.endless or time.monotonic() < self.until)
        if not running and self.target is not None:
            if self.reaches:
                self.q = self.target
            self.target = None
        return rtde_control.AsyncOperationStatus((self.op_id << 24) | (0x8000 if running else 0))


def paced_wait(instance: Any, start: Any) -> None:
    """waitPeriod as ur_rtde does it: sleep until `start` plus one period of the frequency the
    control interface was opened with (500 Hz, an e-Series, when not given)."""
    args, kwargs = instance.init_args
    frequency = args[1] if len(args) > 1 else kwargs.get("frequency", -1.0)
    period_s = 1.0 / (frequency if frequency > 0 else 500.0)
    time.sleep(max(0.0, start.total_seconds() + period_s - time.monotonic()))


def wait_until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRTDE:
    real = {"rtde_control": rtde_control, "rtde_receive": rtde_receive, "rtde_io": rtde_io}
    fake = FakeRTDE(real)
    monkeypatch.setattr(ur, "import_driver", lambda module, package, backend: fake.modules[module])
    return fake


@pytest.fixture
def arm(fake: FakeRTDE) -> Arm:
    return Arm(fake)


@pytest.fixture
def make_backend(fake: FakeRTDE, arm: Arm) -> Iterator[Callable[..., URBackend]]:
    backends: list[URBackend] = []

    def make(**cfg: Any) -> URBackend:
        backend = URBackend(URBackendConfig(robot_ip=IP, **cfg))
        backends.append(backend)
        return backend

    yield make
    for backend in backends:
        backend.close()


def servo_targets(fake: FakeRTDE) -> list[list[float]]:
    return [c.args[0] for c in fake.called(CONTROL, "servoL")]


# ---------------------------------------------------------------------- connecting
def test_connection_failure_is_a_backend_error_saying_what_to_check(
    fake: FakeRTDE, arm: Arm
) -> None:
    fake.answers[(CONTROL, "__init__")] = RuntimeError("Connection refused")
    with pytest.raises(BackendError, match=f"cannot connect to the UR at {IP}: Connection ref"):
        URBackend(URBackendConfig(robot_ip=IP))
    assert len(fake.called(RECEIVE, "disconnect")) == 1  # the part that connected is closed


def test_control_interface_is_opened_at_the_servo_rate_and_io_only_with_a_gripper(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    make_backend(servo_hz=250.0)
    assert fake.called(CONTROL, "__init__")[0].args == (IP, 250.0)
    assert fake.called(RECEIVE, "__init__")[0].args == (IP,)
    assert fake.called(IO, "__init__") == []


def test_config_refuses_a_servo_rate_rtde_cannot_run_and_a_bad_output() -> None:
    with pytest.raises(ConfigError, match="servo_hz"):
        URBackendConfig(servo_hz=1000.0)
    with pytest.raises(ConfigError, match="gripper_digital_out"):
        URBackendConfig(gripper_digital_out=8)


# ---------------------------------------------------------------------- state
def test_state_has_joints_and_the_tcp_rotation_vector_as_a_quaternion(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    fake.answers[(RECEIVE, "getActualQd")] = [0.1] * 6
    fake.answers[(RECEIVE, "getActualTCPSpeed")] = [0.01, 0.0, 0.0, 0.0, 0.0, 0.2]
    state = make_backend().read_state()
    np.testing.assert_allclose(state.ee_pos, TCP_POSE[:3])
    half = math.sqrt(0.5)
    np.testing.assert_allclose(state.ee_quat, [half, 0.0, 0.0, half], atol=1e-12)
    np.testing.assert_allclose(state.q, HOME_Q)
    np.testing.assert_allclose(state.dq, [0.1] * 6)
    np.testing.assert_allclose(state.ee_vel, [0.01, 0.0, 0.0, 0.0, 0.0, 0.2])
    assert state.gripper_width == 0.0  # no gripper configured


@pytest.mark.parametrize(("output_high", "width"), [(True, 0.0), (False, 1.0)])
def test_gripper_state_is_the_configured_digital_output(
    fake: FakeRTDE, make_backend: Callable[..., URBackend], output_high: bool, width: float
) -> None:
    fake.answers[(RECEIVE, "getDigitalOutState")] = output_high
    assert make_backend(gripper_digital_out=3).read_state().gripper_width == width
    assert fake.called(RECEIVE, "getDigitalOutState")[-1].args == (3,)


def test_a_state_from_a_lost_receive_connection_is_refused_not_served_stale(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend()
    fake.answers[(RECEIVE, "isConnected")] = False
    with pytest.raises(BackendError, match="connection .* is lost"):
        backend.read_state()


# ---------------------------------------------------------------------- streaming
def test_command_pose_swaps_the_target_and_the_thread_streams_servoL_at_servo_hz(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    starts: list[datetime.timedelta] = []

    def init_period(_: Any) -> datetime.timedelta:
        starts.append(datetime.timedelta(seconds=time.monotonic()))
        return starts[-1]

    fake.answers[(CONTROL, "initPeriod")] = init_period
    backend = make_backend(servo_hz=100.0)
    half = math.sqrt(0.5)
    before = len(fake.calls)
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([half, 0.0, 0.0, half]))
    time.sleep(0.3)
    backend.command_pose(np.array([0.5, 0.01, 0.3]), np.array([half, 0.0, 0.0, half]))
    wait_until(lambda: servo_targets(fake)[-1][1] == 0.01)
    backend.stop()
    servos = fake.called(CONTROL, "servoL")
    # command_pose itself made no driver call: the servo thread did, and stop() its servoStop
    assert {c.method for c in fake.calls[before:] if c.thread == "MainThread"} == {"servoStop"}
    np.testing.assert_allclose(servos[0].args[0], [0.5, 0.0, 0.3, 0.0, 0.0, math.pi / 2])
    assert all(c.args[1:] == (0.0, 0.0, 0.01, 0.1, 300.0) for c in servos)
    gaps = np.diff([c.time_s for c in servos])
    # Paced by waitPeriod at 100 Hz (never faster; slower only on a very busy machine).
    assert 0.009 <= float(np.median(gaps)) <= 0.1
    assert len(servos) <= 0.3 * 100 + 10
    waits = [c.args[0] for c in fake.called(CONTROL, "waitPeriod")]
    assert waits == starts[: len(waits)]  # each period waited from its own initPeriod


def test_compliance_profiles_set_servoL_gain_and_lookahead(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend()
    backend.set_compliance(default_profiles()["compliant"])
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) >= 2)
    assert fake.called(CONTROL, "servoL")[-1].args[4:] == (0.2, 150.0)


@pytest.mark.parametrize(
    "profile",
    [ComplianceProfile(ur_servo_gain=50.0), ComplianceProfile(ur_lookahead_s=0.5)],
)
def test_a_profile_outside_servoL_ranges_is_refused_and_the_old_one_kept(
    fake: FakeRTDE, make_backend: Callable[..., URBackend], profile: ComplianceProfile
) -> None:
    backend = make_backend()
    with pytest.raises(BackendError, match="outside servoL's range"):
        backend.set_compliance(profile)
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) >= 1)
    assert fake.called(CONTROL, "servoL")[-1].args[4:] == (0.1, 300.0)


@pytest.mark.parametrize("failure", [False, RuntimeError("RTDE control script is not running")])
def test_a_failing_servoL_stops_the_stream_and_the_next_command_reports_it(
    fake: FakeRTDE, make_backend: Callable[..., URBackend], failure: Any
) -> None:
    backend = make_backend()
    fake.answers[(CONTROL, "servoL")] = failure
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(fake.called(CONTROL, "servoStop")) == 1)
    sent = len(servo_targets(fake))
    time.sleep(0.05)
    assert len(servo_targets(fake)) == sent == 1  # stopped after the failure
    with pytest.raises(BackendError, match="servoL .*(refused|failed).*the servo stream stopped"):
        backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    del fake.answers[(CONTROL, "servoL")]
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) > sent)  # reported once, then streams again


def test_hold_streams_the_measured_pose(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    make_backend().hold()
    wait_until(lambda: len(servo_targets(fake)) >= 1)
    np.testing.assert_allclose(servo_targets(fake)[0], TCP_POSE, atol=1e-12)


# ---------------------------------------------------------------------- gripper
def test_gripper_commands_set_the_configured_output_beyond_half(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend(gripper_digital_out=3)
    for command in (1.0, 0.2, -0.7):
        backend.command_gripper(command)
    assert [c.args for c in fake.called(IO, "setStandardDigitalOut")] == [(3, True), (3, False)]
    fake.answers[(IO, "setStandardDigitalOut")] = False
    with pytest.raises(BackendError, match="setStandardDigitalOut was refused"):
        backend.command_gripper(1.0)


# ---------------------------------------------------------------------- resets
def test_reset_ends_the_stream_then_runs_an_asynchronous_moveJ_and_waits_for_it(
    fake: FakeRTDE, arm: Arm, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend(reset_speed_radps=0.4, reset_accel_radps2=0.8)
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) >= 1)
    target = [0.1, -1.5, 1.5, -1.5, -1.5, 0.1]
    started = time.monotonic()
    backend.reset_joints(np.array(target))
    assert time.monotonic() - started >= arm.move_s
    assert arm.q == target
    calls = fake.methods_called(CONTROL)
    assert calls.index("servoStop") < calls.index("moveJ")
    assert fake.called(CONTROL, "moveJ")[0].args == (target, 0.4, 0.8, True)


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({(CONTROL, "moveJ"): False}, "moveJ was refused"),
        ({(CONTROL, "isProgramRunning"): False}, "control script stopped during the reset"),
        ({(CONTROL, "moveJ"): RuntimeError("lost")}, "moveJ failed: RuntimeError: lost"),
    ],
)
def test_a_reset_the_controller_refuses_or_abandons_is_a_backend_error(
    fake: FakeRTDE,
    arm: Arm,
    make_backend: Callable[..., URBackend],
    script: dict,
    message: str,
) -> None:
    backend = make_backend()
    fake.answers |= script
    with pytest.raises(BackendError, match=message):
        backend.reset_joints(np.array([0.1, -1.5, 1.5, -1.5, -1.5, 0.1]))


def test_a_reset_that_ends_short_of_its_target_is_a_backend_error(
    arm: Arm, make_backend: Callable[..., URBackend]
) -> None:
    arm.reaches = False
    with pytest.raises(BackendError, match="ended 0.100 rad from its target"):
        make_backend().reset_joints(np.array([0.1, -1.571, 1.571, -1.571, -1.571, 0.0]))


# ---------------------------------------------------------------------- e-stop
def test_estop_while_streaming_ends_servo_mode_stops_the_script_and_refuses_motion(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend()
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) >= 1)
    backend.estop()
    sent = len(servo_targets(fake))
    calls = fake.methods_called(CONTROL)
    assert calls.index("servoStop") < calls.index("stopScript")
    with pytest.raises(BackendError, match="e-stopped"):
        backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    with pytest.raises(BackendError, match="e-stopped"):
        backend.reset_joints(np.array(HOME_Q))
    time.sleep(0.05)
    assert len(servo_targets(fake)) == sent and fake.called(CONTROL, "moveJ") == []
    backend.release_estop()
    assert len(fake.called(CONTROL, "reuploadScript")) == 1
    wait_until(lambda: len(servo_targets(fake)) > sent)  # holding the measured pose
    np.testing.assert_allclose(servo_targets(fake)[-1], TCP_POSE, atol=1e-12)


def test_estop_during_a_reset_stops_the_move_and_the_script_and_fails_the_reset(
    fake: FakeRTDE, arm: Arm, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend()
    arm.endless = True
    failures: list[BaseException] = []

    def reset() -> None:
        try:
            backend.reset_joints(np.array([0.5, -1.5, 1.5, -1.5, -1.5, 0.1]))
        except BackendError as exc:
            failures.append(exc)

    thread = threading.Thread(target=reset)
    thread.start()
    wait_until(lambda: len(fake.called(CONTROL, "moveJ")) == 1)
    started = time.monotonic()
    backend.estop()
    assert time.monotonic() - started < 0.5
    thread.join(timeout=2.0)
    assert [str(f) for f in failures] == ["the reset was stopped by the e-stop"]
    calls = fake.methods_called(CONTROL)
    assert calls.index("moveJ") < calls.index("stopJ") < calls.index("stopScript")
    assert arm.q == HOME_Q


def test_estop_goes_on_to_stop_the_script_when_servoStop_fails(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend()
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) >= 1)
    fake.answers[(CONTROL, "servoStop")] = RuntimeError("lost")
    backend.estop()  # does not raise
    assert len(fake.called(CONTROL, "stopScript")) == 1


def test_release_after_a_lost_control_connection_opens_a_new_interface_at_servo_hz(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend(servo_hz=125.0)
    backend.estop()
    fake.answers[(CONTROL, "isConnected")] = False
    fake.answers[(RECEIVE, "isConnected")] = lambda _: len(fake.called(RECEIVE, "reconnect")) > 0
    backend.release_estop()
    assert len(fake.called(RECEIVE, "reconnect")) == 1
    assert len(fake.called(CONTROL, "disconnect")) == 1
    assert [c.args for c in fake.called(CONTROL, "__init__")] == [(IP, 125.0), (IP, 125.0)]
    assert fake.called(CONTROL, "reuploadScript") == []  # the new interface uploads it


# ---------------------------------------------------------------------- shutdown
def test_close_stops_the_stream_and_the_script_and_disconnects_all_three(
    fake: FakeRTDE, make_backend: Callable[..., URBackend]
) -> None:
    backend = make_backend(gripper_digital_out=0)
    backend.command_pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))
    wait_until(lambda: len(servo_targets(fake)) >= 1)
    backend.close()
    assert not backend._thread.is_alive()
    calls = fake.methods_called(CONTROL)
    assert calls.index("servoStop") < calls.index("stopScript") < calls.index("disconnect")
    for interface in (CONTROL, RECEIVE, IO):
        assert len(fake.called(interface, "disconnect")) == 1, interface


# ---------------------------------------------------------------------- through the server
def test_robot_server_with_the_ur_backend_serves_state_a_step_and_a_reset(
    fake: FakeRTDE, arm: Arm
) -> None:
    cfg = RobotServerConfig(
        backend="ur", endpoint="tcp://127.0.0.1:0", ur=URBackendConfig(robot_ip=IP)
    )
    with RobotServer(cfg).start() as server, RobotClient(server.endpoint, timeout_s=10) as client:
        state = client.get_state()
        np.testing.assert_allclose(state["ee_pos"], TCP_POSE[:3])
        result = client.move_delta(np.array([0.01, 0.0, 0.0]))
        assert result.accepted and result.clamped == ()
        wait_until(lambda: len(servo_targets(fake)) >= 1)
        np.testing.assert_allclose(servo_targets(fake)[-1][:3], [0.46, 0.05, 0.3], atol=1e-9)
        assert client.info()["backend"] == "ur"
        client.reset("home")
        assert fake.called(CONTROL, "moveJ")[-1].args[0] == HOME_Q
    assert len(fake.called(CONTROL, "stopScript")) == 1  # closing the server closed the backend
