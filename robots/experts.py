"""Scripted experts of `robot:` tasks, for `serl record-demos --env robot:<task> --device expert`.

`serl record-demos` finds `make_expert` here by the env's prefix (`serl.teleop.commands`). Only
``goal`` (reach) tasks have one: it reads the TCP position from the observation and steps
straight at the goal, ``clip((goal_pos_m - tcp) / action_scale_m, -1, 1)`` per control step,
the rotation and gripper entries of the action left at 0 (no turn; the gripper keeps its
state). Each step is a delta from the measured pose, so the arm's lag behind its target (a
few mm on a Franka at 10 Hz) is corrected at the next step and the approach does not
overshoot. It reads nothing but the observation, so it drives franky-sim and a real arm alike.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from robots.env import RobotEnv


class ReachExpert:
    """A proportional step towards the goal of a ``goal`` task; see the module docstring."""

    def __init__(self, env: RobotEnv) -> None:
        cfg = env.cfg
        self.goal_m = np.asarray(cfg.goal_pos_m, dtype=np.float64)
        self.action_scale_m = cfg.action_scale_m
        self.action_dim = env.action_space.shape[0]

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        tcp = np.asarray(obs["state"][:3], dtype=np.float64)
        action = np.zeros(self.action_dim, dtype=np.float32)
        action[:3] = np.clip((self.goal_m - tcp) / self.action_scale_m, -1.0, 1.0)
        return action


def make_expert(env: gym.Env) -> ReachExpert:
    """The expert of a (possibly wrapped) `robot:` task env."""
    robot_env = env.unwrapped
    if not isinstance(robot_env, RobotEnv):
        raise ValueError(f"robots.experts drives robot: task envs, not {robot_env}")
    if robot_env.cfg.reward != "goal":
        raise ValueError(
            f"the robot task's reward is {robot_env.cfg.reward!r}: scripted experts exist only "
            "for 'goal' (reach) tasks; record this task with a person at a device "
            "(--device spacemouse, keyboard or gamepad) or pass --policy MODULE:FACTORY"
        )
    return ReachExpert(robot_env)
