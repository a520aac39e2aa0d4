"""The Panda tasks; `sim.registration` maps ids such as ``PandaPickCube-v0`` to them."""

from sim.tasks.base import PandaEnv
from sim.tasks.peg_insert import PandaPegInsertEnv
from sim.tasks.pick_cube import PandaPickCubeEnv
from sim.tasks.reach import PandaReachEnv

__all__ = ["PandaEnv", "PandaPegInsertEnv", "PandaPickCubeEnv", "PandaReachEnv"]
