"""`serl bench robot-loop`: control-loop jitter and command -> motion latency of a running arm.

A client of a running `serl robot-server` (franka against franky-sim or a real arm, ur, the
sim backend with realtime physics), on the robot PC as the actor would be. Two phases:

1. **Loop.** `LOOP_STEPS` zero-delta motion commands (the arm holds where it is) paced at
   `control_hz` by `robots.env.ControlTicks`, the pacing of the `robot:` env. Jitter is
   ``|period - 1 / control_hz|`` of successive commands, seen by the client (when each was
   sent, ``jitter_*``) and by the server (the timestamp of the state it read for each reply,
   on its clock, ``server_jitter_*``); ``round_trip_*`` is command sent -> reply received.
2. **Latency.** `TRIALS` times, with the arm at rest: one step of `STEP_M` along x
   (alternately forward and back), then states read as fast as the server answers until the
   TCP is more than `MOTION_THRESHOLD_M` from where it rested. ``motion_latency_*`` is the
   time from sending the step to receiving that state: transport, the server, the driver and
   the arm's own start-up (on a Franka, the motion generator's jerk-limited start). Between
   trials the target is sent at `control_hz` until the arm rests again.

The arm moves at most `STEP_M` from where it stands: start the bench with it in free space.
Percentiles of few samples are coarse: `--quick` takes 100 periods and 20 trials, so its
p99 is close to the maximum; the full size takes 600 and 100.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from robots.client import DEFAULT_ENDPOINT, RobotClient
from robots.env import ControlTicks

logger = logging.getLogger(__name__)

LOOP_STEPS = {"smoke": 20, "quick": 100, "full": 600}
"""Control periods of the loop phase per size (600: a minute at 10 Hz)."""
TRIALS = {"smoke": 3, "quick": 20, "full": 100}
"""Latency trials per size."""
STEP_M = 0.01
"""The step of a latency trial: a 10 Hz policy step at 0.1 m/s."""
MOTION_THRESHOLD_M = 2e-4
"""Motion counts from 0.2 mm: 3x franky-sim's resting noise (0.07 mm), far above a real arm's."""
REST_SPEED_MPS = 0.005
"""The arm rests when its TCP is slower than 5 mm/s ..."""
REST_DISTANCE_M = 1e-3
"""... and within 1 mm of its target."""
REST_TIMEOUT_S = 10.0
"""Longest wait for the arm to come to rest before a trial."""
MOTION_TIMEOUT_S = 2.0
"""Longest wait for the first motion after a step (the watchdog holds after 0.3 s anyway)."""


class BenchError(RuntimeError):
    """The arm did not do what the bench needs (come to rest, move); the message says what."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help="the running robot server's endpoint"
    )
    parser.add_argument(
        "--control-hz", type=float, default=10.0, help="rate of the loop phase's commands"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="20 periods and 3 trials, for CI (figures are not measurements)",
    )


def _percentiles_ms(name: str, values_s: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(values_s, [50, 99]) * 1e3
    return {
        f"{name}_p50_ms": round(float(p50), 3),
        f"{name}_p99_ms": round(float(p99), 3),
        f"{name}_max_ms": round(max(values_s) * 1e3, 3),
    }


def measure_loop(client: RobotClient, control_hz: float, steps: int) -> dict[str, float]:
    """Phase 1 (module docstring): jitter of `steps` commands at `control_hz`."""
    period_s = 1.0 / control_hz
    ticks = ControlTicks(period_s)
    sent, round_trips, server_times = [], [], []
    for _ in range(steps + 1):
        ticks.wait()
        start = time.perf_counter()
        result = client.move_delta([0.0, 0.0, 0.0])
        round_trips.append(time.perf_counter() - start)
        sent.append(start)
        server_times.append(float(result.state["timestamp"]))
        if not result.accepted:
            raise BenchError(f"the server refused a zero step ({result.reason}); e-stopped?")
    jitter = np.abs(np.diff(sent) - period_s).tolist()
    server_jitter = np.abs(np.diff(server_times) - period_s).tolist()
    return {
        **_percentiles_ms("jitter", jitter),
        **_percentiles_ms("server_jitter", server_jitter),
        **_percentiles_ms("round_trip", round_trips[1:]),
    }


def rest_at(client: RobotClient, target: np.ndarray, ticks: ControlTicks) -> np.ndarray:
    """Send `target` at each tick until the arm rests there; where it rests."""
    deadline = time.monotonic() + REST_TIMEOUT_S
    while time.monotonic() < deadline:
        ticks.wait()
        state = client.move_to(target).state
        speed = float(np.linalg.norm(state["ee_vel"][:3]))
        if speed < REST_SPEED_MPS and np.linalg.norm(state["ee_pos"] - target) < REST_DISTANCE_M:
            return state["ee_pos"]
    raise BenchError(
        f"the arm did not come to rest within {REST_DISTANCE_M * 1e3:g} mm of "
        f"{np.round(target, 4).tolist()} in {REST_TIMEOUT_S:g} s; is it free to move?"
    )


def measure_latency(client: RobotClient, control_hz: float, trials: int) -> dict[str, float]:
    """Phase 2 (module docstring): command -> motion latency over `trials` steps."""
    ticks = ControlTicks(1.0 / control_hz)
    origin = client.get_state()["ee_pos"]  # where the arm stands: it steps from here and back
    targets = [origin, origin + [STEP_M, 0.0, 0.0]]
    rest = rest_at(client, origin, ticks)
    latencies = []
    for trial in range(trials):
        target = targets[(trial + 1) % 2]
        ticks.wait()  # a period after the last command: the speed limit leaves the step whole
        start = time.perf_counter()
        state = client.move_to(target).state
        while np.linalg.norm(state["ee_pos"] - rest) <= MOTION_THRESHOLD_M:
            if time.perf_counter() - start > MOTION_TIMEOUT_S:
                raise BenchError(
                    f"the arm did not move {MOTION_THRESHOLD_M * 1e3:g} mm within "
                    f"{MOTION_TIMEOUT_S:g} s of a {STEP_M * 1e3:g} mm step; does the server's "
                    "arm move in real time (sim: realtime = true), and is it not e-stopped?"
                )
            state = client.get_state()
        latencies.append(time.perf_counter() - start)
        rest = rest_at(client, target, ticks)
    return _percentiles_ms("motion_latency", latencies)


def run(
    quick: bool = False,
    device: str = "cpu",
    endpoint: str = DEFAULT_ENDPOINT,
    control_hz: float = 10.0,
    smoke: bool = False,
) -> dict[str, float | str | bool]:
    """Both phases against the server at `endpoint` (`device` is unused)."""
    if not control_hz > 0:
        raise ValueError(f"--control-hz {control_hz} must be > 0")
    size = "smoke" if smoke else "quick" if quick else "full"
    with RobotClient(endpoint, timeout_s=5.0) as client:
        backend = str(client.info()["backend"])
        logger.info("robot-loop bench: %s backend at %s, %s size", backend, endpoint, size)
        figures: dict[str, float | str | bool] = {"smoke": True} if smoke else {}
        figures |= {
            "backend": backend,
            "control_hz": control_hz,
            "loop_periods": LOOP_STEPS[size],
            "motion_trials": TRIALS[size],
            "motion_threshold_mm": MOTION_THRESHOLD_M * 1e3,
        }
        figures |= measure_loop(client, control_hz, LOOP_STEPS[size])
        figures |= measure_latency(client, control_hz, TRIALS[size])
    return figures
