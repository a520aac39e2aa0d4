"""Env steps per second of the sim tasks on one core (``python -m sim.bench [--quick]``).

For each task, with state and with pixel observations (front + wrist cameras, 128 x 128),
random actions at the default 10 Hz control (50 physics steps of 2 ms per env step, the torque
law at every one), episodes reset as they end (resets included in the time). The process is
pinned to one CPU and Mesa's llvmpipe rasteriser to one thread. ``<Task>_state_steps_per_s``
and ``<Task>_pixels_steps_per_s`` (e.g. ``PandaPickCube_state_steps_per_s``) count env steps
per CPU-second of the process, which other load on a shared machine does not change;
``..._wall_steps_per_s`` are the wall-clock rates of the same run. With dm_control installed,
``dmc_cheetah_run_{state,pixels}_steps_per_s`` are the peer figures of ``dmc:cheetah-run``
(pixels at 128 x 128, one camera), and with robosuite installed
``robosuite_Lift_Panda_{state,pixels}_steps_per_s`` those of ``robosuite:Lift-Panda`` (pixels:
its two default cameras at 128 x 128). `run` has the signature of `serl.bench` modules.
`--smoke` steps every env 30 times with state and 10 times with pixels: what CI runs to catch a
broken benchmark or an adapter broken by a dm_control or robosuite release. Its figures are not
measurements.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def pin_to_one_core() -> None:
    """One CPU for this process and one llvmpipe thread (set before any GL context exists)."""
    os.environ["LP_NUM_THREADS"] = "1"
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})


def steps_per_second(env_id: str, obs_mode: str, steps: int, seed: int = 0) -> tuple[float, float]:
    """(steps per CPU-second of this process, steps per wall-clock second) of a sim task id
    (``PandaReach-v0``) or a ``dmc:`` id."""
    if env_id.startswith("dmc:"):
        from sim.adapters.dmc import make as make_dmc

        env = make_dmc(env_id.removeprefix("dmc:"), obs_mode=obs_mode, image_size=128)
    elif env_id.startswith("robosuite:"):
        from sim.adapters.robosuite import make as make_robosuite

        env = make_robosuite(env_id.removeprefix("robosuite:"), obs_mode=obs_mode, image_size=128)
    else:
        from sim.registration import make

        env = make(env_id, obs_mode=obs_mode)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    env.step(env.action_space.sample())  # first render creates the GL context: not timed
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        action = rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    env.close()
    return steps / cpu, steps / elapsed


STEPS = {
    "full": {"state": 2000, "pixels": 500},
    "quick": {"state": 300, "pixels": 100},
    "smoke": {"state": 30, "pixels": 10},
}
"""Env steps per task and observation mode of each size."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few steps of every env, for CI (figures are not measurements)",
    )


def run(quick: bool = False, device: str = "cpu", smoke: bool = False) -> dict[str, float | bool]:
    """Steps/s of every task with state and pixel observations (`device` is unused)."""
    from sim.registration import TASKS

    pin_to_one_core()
    steps = STEPS["smoke" if smoke else "quick" if quick else "full"]
    env_ids = list(TASKS)
    if importlib.util.find_spec("dm_control") is not None:
        env_ids.append("dmc:cheetah-run")
    else:
        logger.info("dm_control is not installed: no dmc:cheetah-run figures")
    if importlib.util.find_spec("robosuite") is not None:
        env_ids.append("robosuite:Lift-Panda")
    else:
        logger.info("robosuite is not installed: no robosuite:Lift-Panda figures")
    figures: dict[str, float | bool] = {"smoke": True} if smoke else {}
    for env_id in env_ids:
        name = env_id.removesuffix("-v0").replace(":", "_").replace("-", "_")
        for mode, n in steps.items():
            key = f"{name}_{mode}_steps_per_s"
            per_cpu_s, per_wall_s = steps_per_second(env_id, mode, n)
            figures[key] = round(per_cpu_s, 1)
            figures[key.replace("_steps_per_s", "_wall_steps_per_s")] = round(per_wall_s, 1)
            logger.info("%s: %.1f (wall clock %.1f)", key, per_cpu_s, per_wall_s)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (about 30 s)")
    parser.add_argument("--json", type=Path, help="also write the figures as one JSON object")
    add_arguments(parser)
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    figures = run(quick=opts.quick, smoke=opts.smoke)
    if opts.json:
        opts.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
