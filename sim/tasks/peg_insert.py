"""PandaPegInsert: insert a square peg held in the hand into a hole with tight clearance.

Action ``[dx, dy, dz]``: as in SERL's real peg insertion the peg starts grasped and the
gripper is not commanded (here the peg is fixed in the hand, which removes in-hand slip from
the task). The peg is 25 mm square and 70 mm long; the hole is `clearance_m` (1 mm) wider,
so 0.5 mm per side, and 30 mm deep, in a fixture placed at random in a 10 x 20 cm area.
Success: the peg tip is at least 20 mm below the fixture's top face, inside the hole; the
episode then terminates. Reward: sparse ``1[success]``, or ``reward_type="dense"``:
``-distance(peg tip, hole bottom centre) / 0.1 m``.
"""

from __future__ import annotations

import numpy as np

from sim import panda
from sim.tasks.base import PandaEnv

PEG_HALF_M = 0.0125
PEG_HALF_LENGTH_M = 0.035
PEG_TIP_BELOW_TCP_M = 0.04
HOLE_DEPTH_M = 0.03
WALL_M = 0.02
INSERT_DEPTH_M = 0.02
HOLE_XY_LOW_M = np.array([0.45, -0.1])
HOLE_XY_HIGH_M = np.array([0.55, 0.1])
DENSE_SCALE_M = 0.1


class PandaPegInsertEnv(PandaEnv):
    default_max_episode_steps = 100
    default_reward_type = "sparse"
    workspace_low = (0.3, -0.3, 0.03)
    workspace_high = (0.7, 0.3, 0.45)
    clearance_m: float = 0.001

    def __init__(self, *, clearance_m: float = 0.001, **kwargs: object) -> None:
        self.clearance_m = clearance_m
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def task_xml(self) -> str:
        w = PEG_HALF_M + self.clearance_m / 2  # half-width of the hole
        t, h = WALL_M / 2, HOLE_DEPTH_M / 2
        walls = [
            ((w + t, 0, h), (t, w + WALL_M, h)),
            ((-w - t, 0, h), (t, w + WALL_M, h)),
            ((0, w + t, h), (w, t, h)),
            ((0, -w - t, h), (w, t, h)),
        ]
        geoms = "\n".join(
            f'<geom type="box" pos="{p[0]:.6g} {p[1]:.6g} {p[2]:.6g}" '
            f'size="{s[0]:.6g} {s[1]:.6g} {s[2]:.6g}" rgba="0.2 0.35 0.8 1" solref="0.004 1"/>'
            for p, s in walls
        )
        return f"""
<body name="hole" mocap="true" pos="0.5 0 0">
  {geoms}
  <site name="hole_bottom" pos="0 0 0" size="0.004" rgba="1 1 0 1" group="3"/>
</body>"""

    def hand_xml(self) -> str:
        centre = panda.TCP_FROM_FLANGE_M + PEG_TIP_BELOW_TCP_M - PEG_HALF_LENGTH_M
        tip = panda.TCP_FROM_FLANGE_M + PEG_TIP_BELOW_TCP_M
        h, length = PEG_HALF_M, PEG_HALF_LENGTH_M
        return f"""
<geom name="peg" type="box" pos="0 0 {centre:.6g}" size="{h} {h} {length}" mass="0.05"
      rgba="0.9 0.75 0.2 1" contype="1" conaffinity="1"
      solref="0.004 1"/>
<site name="peg_tip" pos="0 0 {tip:.6g}" size="0.003" rgba="1 0 0 1" group="3"/>"""

    @property
    def _tip_site(self) -> int:
        return int(self.model.site("peg_tip").id)

    @property
    def _mocap(self) -> int:
        return int(self.model.body("hole").mocapid[0])

    def task_observation_spec(self) -> dict[str, int]:
        return {"hole_pos": 3, "hole_minus_tip": 3}

    def hole_pos(self) -> np.ndarray:
        """Centre of the hole's bottom (on the table surface)."""
        return self.data.mocap_pos[self._mocap].copy()

    def tip_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._tip_site].copy()

    def reset_task(self, rng: np.random.Generator) -> None:
        xy = rng.uniform(HOLE_XY_LOW_M, HOLE_XY_HIGH_M)
        self.data.mocap_pos[self._mocap] = (xy[0], xy[1], 0.0)

    def initial_gripper(self) -> float:
        # Fingers closed on the peg: opening per finger = PEG_HALF_M.
        return 1.0 - 2.0 * PEG_HALF_M / panda.FINGER_STROKE_M

    def task_observation(self) -> np.ndarray:
        hole = self.hole_pos()
        return np.concatenate([hole, hole - self.tip_pos()])

    def is_success(self) -> bool:
        offset = self.tip_pos() - self.hole_pos()
        inside = bool(np.all(np.abs(offset[:2]) <= PEG_HALF_M + self.clearance_m))
        return inside and offset[2] <= HOLE_DEPTH_M - INSERT_DEPTH_M

    def compute_reward(self, success: bool) -> float:
        if self.reward_type == "sparse":
            return float(success)
        return -float(np.linalg.norm(self.tip_pos() - self.hole_pos())) / DENSE_SCALE_M
