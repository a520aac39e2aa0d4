"""Scripted experts for the Panda tasks: the demonstrations and offline data of the learners.

An expert reads the simulator's true state (so it works with state or pixel observations)
and returns an action in [-1, 1] in the task's own action layout. Each is a small state
machine over waypoints, moving the TCP towards the current waypoint with a proportional step
``clip((waypoint - tcp) / action_scale_m, -1, 1)``:

* Reach: straight to the target.
* PickCube: above the cube (6 cm) with the gripper open -> down to grasp height -> close and
  wait for the fingers to settle -> lift 15 cm.
* PegInsert: above the hole (tip 2 cm over the fixture) -> hover 3 mm over it until aligned
  within 0.2 mm -> down slowly while holding the alignment; caught on the rim for 3 steps ->
  back to the hover and realign.

`make_expert(env)` picks the expert of a (possibly wrapped) task env; `run_expert` measures a
success rate over seeded episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from sim.tasks import PandaEnv, PandaPegInsertEnv, PandaPickCubeEnv, PandaReachEnv
from sim.tasks.peg_insert import HOLE_DEPTH_M
from sim.tasks.pick_cube import CUBE_HALF_M


class Expert:
    """Base: a callable policy ``expert(obs) -> action`` bound to one env; `reset` per episode."""

    def __init__(self, env: gym.Env) -> None:
        self.env: PandaEnv = env.unwrapped  # type: ignore[assignment]
        self.reset()

    def reset(self) -> None:
        """Forget the episode's phase; call after every env.reset."""

    def __call__(self, obs: Any) -> np.ndarray:
        raise NotImplementedError

    def _move(self, waypoint: np.ndarray, gain: float = 1.0) -> np.ndarray:
        scale = self.env.controller.cfg.action_scale_m
        return np.clip(gain * (waypoint - self.env.tcp_pos()) / scale, -1.0, 1.0)

    def _rotate_home(self) -> np.ndarray:
        """Rotation action turning the hand back to the home orientation (hand down)."""
        ctl = self.env.controller
        local = np.empty(3)
        mujoco.mju_subQuat(local, self.env.home_quat, ctl.ee_quat())  # in the hand's frame
        world = self.env.data.site_xmat[ctl.site_id].reshape(3, 3) @ local
        return np.clip(world / ctl.cfg.action_scale_rad, -1.0, 1.0)

    def _action(self, move: np.ndarray, gripper: float | None = None) -> np.ndarray:
        """The env's action layout: move, then zero rotation if controlled, then gripper."""
        parts = [move]
        if self.env.control_rotation:
            parts.append(self._rotate_home())
        if gripper is not None:
            parts.append([gripper])
        return np.concatenate(parts).astype(np.float32)


class ReachExpert(Expert):
    def __call__(self, obs: Any) -> np.ndarray:
        env: PandaReachEnv = self.env  # type: ignore[assignment]
        return self._action(self._move(env.target_pos()))


class PickCubeExpert(Expert):
    HOVER_M = 0.06
    """Height of the approach waypoint above the cube centre."""
    GRASP_BELOW_CENTRE_M = 0.005
    """TCP goes this far below the cube centre, so the pads cover most of the cube's side."""
    CLOSE_STEPS = 4
    """Control steps to wait with the gripper closing before lifting (0.4 s)."""
    LIFT_M = 0.15

    def reset(self) -> None:
        self.phase = "approach"
        self.closing = 0

    def __call__(self, obs: Any) -> np.ndarray:
        env: PandaPickCubeEnv = self.env  # type: ignore[assignment]
        cube, tcp = env.cube_pos(), env.tcp_pos()
        grasp = cube - np.array([0.0, 0.0, self.GRASP_BELOW_CENTRE_M])
        hover = cube + np.array([0.0, 0.0, self.HOVER_M])
        xy_err = float(np.linalg.norm((cube - tcp)[:2]))
        if self.phase == "approach":
            if xy_err < 0.01 and abs(tcp[2] - hover[2]) < 0.03:
                self.phase = "descend"
        if self.phase == "descend":
            if xy_err > 0.02:
                self.phase = "approach"
            elif abs(tcp[2] - grasp[2]) < 0.006:
                self.phase = "close"
        if self.phase == "close":
            self.closing += 1
            if self.closing > self.CLOSE_STEPS:
                self.phase = "lift"
        if self.phase == "lift" and xy_err > 0.03:  # dropped it: start over
            self.phase, self.closing = "approach", 0

        if self.phase == "approach":
            move, grip = self._move(hover), -1.0
        elif self.phase == "descend":
            move, grip = self._move(grasp), -1.0
        elif self.phase == "close":
            move, grip = self._move(grasp), 1.0
        else:
            target = grasp.copy()
            target[2] = CUBE_HALF_M + self.LIFT_M
            move, grip = self._move(target), 1.0
        return self._action(move, grip)


class PegInsertExpert(Expert):
    APPROACH_M = 0.02
    """Height of the peg tip above the fixture's top face while approaching."""
    HOVER_M = 0.003
    """Height of the tip above the top face where the last alignment happens."""
    ALIGN_TOL_M = 0.0002
    """xy alignment needed before inserting (the clearance is 0.5 mm per side)."""
    INSERT_SPEED = 0.2
    """Largest downward action while inserting (1 cm per step): a fast descent lags sideways."""
    STUCK_STEPS = 3
    """Steps without downward progress at the rim before lifting back and realigning."""

    def reset(self) -> None:
        self.phase = "approach"
        self.stuck = 0
        self.last_z = np.inf

    def __call__(self, obs: Any) -> np.ndarray:
        env: PandaPegInsertEnv = self.env  # type: ignore[assignment]
        hole, tip = env.hole_pos(), env.tip_pos()
        top = hole[2] + HOLE_DEPTH_M
        xy_err = float(np.linalg.norm((hole - tip)[:2]))
        if self.phase == "approach" and xy_err < 0.001:
            if abs(tip[2] - (top + self.APPROACH_M)) < 0.003:
                self.phase = "hover"
        elif self.phase == "hover":
            if xy_err < self.ALIGN_TOL_M and abs(tip[2] - (top + self.HOVER_M)) < 0.001:
                self.phase, self.stuck, self.last_z = "insert", 0, tip[2]
        elif self.phase == "insert":
            progress = self.last_z - tip[2]
            self.last_z = tip[2]
            at_rim = tip[2] > top - 0.002
            self.stuck = self.stuck + 1 if (at_rim and progress < 0.0005) else 0
            if self.stuck >= self.STUCK_STEPS:
                self.phase = "hover"

        height = {"approach": top + self.APPROACH_M, "hover": top + self.HOVER_M}
        z = height.get(self.phase, hole[2])
        if self.phase == "approach" and xy_err > 0.01:
            z = max(z, tip[2])  # stay high until above the hole: never drag across the fixture
        gain = 1.0 if self.phase == "approach" else 2.0
        # Waypoints are for the tip; the controller moves the TCP, a fixed offset above it.
        waypoint = np.array([hole[0], hole[1], z]) + (env.tcp_pos() - tip)
        action = self._move(waypoint, gain)
        if self.phase == "insert":
            action[2] = max(action[2], -self.INSERT_SPEED)
        return self._action(action)


EXPERTS: dict[type[PandaEnv], type[Expert]] = {
    PandaReachEnv: ReachExpert,
    PandaPickCubeEnv: PickCubeExpert,
    PandaPegInsertEnv: PegInsertExpert,
}


def make_expert(env: gym.Env) -> Expert:
    """The scripted expert of a task env (wrappers are looked through)."""
    task = type(env.unwrapped)
    for cls, expert in EXPERTS.items():
        if issubclass(task, cls):
            return expert(env)
    raise KeyError(
        f"no scripted expert for {task.__name__}; experts exist for {[c.__name__ for c in EXPERTS]}"
    )


def run_expert(
    env: gym.Env,
    episodes: int,
    seed: int = 0,
    policy: Callable[[Any], np.ndarray] | None = None,
) -> float:
    """Success rate of the task's expert (or `policy`) over seeded episodes ``seed + i``."""
    expert = make_expert(env)
    act = policy or expert
    successes = 0
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        expert.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs))
            done = terminated or truncated
        successes += bool(info["success"])
    return successes / episodes
