"""PandaPickCube: grasp a cube and lift it, in the style of SERL's PandaPickCube.

Action ``[dx, dy, dz, gripper]``. A 4 cm cube of 100 g (a free body) starts at a random
position in a 15 x 30 cm area and a random yaw in [-45, 45] degrees. Success: the cube's
centre is `lift_height_m` (10 cm) above its resting height; the episode then terminates.
Reward: sparse ``1[success]`` by default; ``reward_type="dense"`` gives
``0.3 exp(-10 |tcp - cube|) + 0.7 clip(lift / lift_height_m, 0, 1)`` (a reach term and a lift
term, as in SERL's franka_sim).
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from sim.tasks.base import PandaEnv

CUBE_HALF_M = 0.02
CUBE_MASS_KG = 0.1
CUBE_XY_LOW_M = np.array([0.4, -0.15])
CUBE_XY_HIGH_M = np.array([0.55, 0.15])
CUBE_MAX_YAW_RAD = math.pi / 4


class PandaPickCubeEnv(PandaEnv):
    control_gripper = True
    default_max_episode_steps = 100
    default_reward_type = "sparse"
    object_bodies = ("cube",)
    workspace_low = (0.3, -0.3, 0.005)
    workspace_high = (0.7, 0.3, 0.45)
    lift_height_m: float = 0.1

    def task_xml(self) -> str:
        h = CUBE_HALF_M
        return f"""
<body name="cube" pos="0.5 0 {h}">
  <freejoint name="cube"/>
  <geom name="cube" type="box" size="{h} {h} {h}" mass="{CUBE_MASS_KG}" condim="4"
        friction="1 0.01 0.0001" rgba="0.85 0.2 0.15 1"/>
</body>"""

    def task_observation_spec(self) -> dict[str, int]:
        return {"cube_pos": 3, "cube_quat": 4, "cube_minus_tcp": 3}

    @property
    def _cube_qpos(self) -> int:
        return int(self.model.joint("cube").qposadr[0])

    def cube_pos(self) -> np.ndarray:
        return self.data.qpos[self._cube_qpos : self._cube_qpos + 3].copy()

    def cube_quat(self) -> np.ndarray:
        quat = self.data.qpos[self._cube_qpos + 3 : self._cube_qpos + 7].copy()
        return quat if quat[0] >= 0 else -quat

    def reset_task(self, rng: np.random.Generator) -> None:
        xy = rng.uniform(CUBE_XY_LOW_M, CUBE_XY_HIGH_M)
        yaw = rng.uniform(-CUBE_MAX_YAW_RAD, CUBE_MAX_YAW_RAD)
        quat = np.empty(4)
        mujoco.mju_axisAngle2Quat(quat, np.array([0.0, 0.0, 1.0]), yaw)
        adr = self._cube_qpos
        self.data.qpos[adr : adr + 3] = (xy[0], xy[1], CUBE_HALF_M)
        self.data.qpos[adr + 3 : adr + 7] = quat

    def task_observation(self) -> np.ndarray:
        cube = self.cube_pos()
        return np.concatenate([cube, self.cube_quat(), cube - self.tcp_pos()])

    def lift(self) -> float:
        return float(self.cube_pos()[2] - CUBE_HALF_M)

    def is_success(self) -> bool:
        return self.lift() >= self.lift_height_m

    def compute_reward(self, success: bool) -> float:
        if self.reward_type == "sparse":
            return float(success)
        reach = math.exp(-10.0 * float(np.linalg.norm(self.cube_pos() - self.tcp_pos())))
        lift = min(max(self.lift() / self.lift_height_m, 0.0), 1.0)
        return 0.3 * reach + 0.7 * lift
