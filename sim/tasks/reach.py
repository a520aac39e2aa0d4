"""PandaReach: move the tool centre point to a random target; the easy task of the fast tests.

Action ``[dx, dy, dz]`` (3-D, no gripper). The target is a visible (non-colliding) sphere drawn
uniformly in a 25 x 40 x 25 cm box in front of the robot. Success: TCP within
`success_radius_m` (5 cm, as in FetchReach and panda-gym) of the target; the episode then
terminates. Reward: dense by default, ``-distance / 0.1 m`` (about -4 far away, -0.5 at
success), or sparse ``1[success]``.
30 control steps (3 s at 10 Hz) is ample: the target is at most about 8 full-speed steps away.
"""

from __future__ import annotations

import numpy as np

from sim.tasks.base import PandaEnv

TARGET_LOW_M = np.array([0.35, -0.2, 0.1])
TARGET_HIGH_M = np.array([0.6, 0.2, 0.35])
DENSE_SCALE_M = 0.1
"""Distance that costs 1 per step in the dense reward."""


class PandaReachEnv(PandaEnv):
    default_max_episode_steps = 30
    default_reward_type = "dense"
    workspace_low = (0.3, -0.3, 0.05)
    workspace_high = (0.7, 0.3, 0.45)
    success_radius_m: float = 0.05

    def task_xml(self) -> str:
        return """
<body name="target" mocap="true" pos="0.5 0 0.2">
  <geom name="target" type="sphere" size="0.02" rgba="0.1 0.8 0.2 0.8" contype="0"
        conaffinity="0"/>
</body>"""

    def task_observation_spec(self) -> dict[str, int]:
        return {"target_pos": 3, "target_minus_tcp": 3}

    @property
    def _mocap(self) -> int:
        return int(self.model.body("target").mocapid[0])

    def target_pos(self) -> np.ndarray:
        return self.data.mocap_pos[self._mocap].copy()

    def reset_task(self, rng: np.random.Generator) -> None:
        self.data.mocap_pos[self._mocap] = rng.uniform(TARGET_LOW_M, TARGET_HIGH_M)

    def task_observation(self) -> np.ndarray:
        target = self.target_pos()
        return np.concatenate([target, target - self.tcp_pos()])

    def distance(self) -> float:
        return float(np.linalg.norm(self.target_pos() - self.tcp_pos()))

    def is_success(self) -> bool:
        return self.distance() <= self.success_radius_m

    def compute_reward(self, success: bool) -> float:
        if self.reward_type == "sparse":
            return float(success)
        return -self.distance() / DENSE_SCALE_M
