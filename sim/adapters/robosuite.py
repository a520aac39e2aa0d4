"""``robosuite:<Env>-<Robot>``: robosuite manipulation tasks as gymnasium envs.

`make("Lift-Panda")` builds ``robosuite.make("Lift", robots="Panda")`` (Zhu et al. 2020,
"robosuite: A Modular Simulation Framework and Benchmark for Robot Learning"); more robots are
more ``-`` parts (``TwoArmLift-Panda-Panda``). Needs ``robosuite==1.5.2`` (the `sim` extra).

* Observations: ``obs_mode="state"`` gives robosuite's non-image observables in robosuite's
  order (robot proprioception, then the object state: what robosuite's ``GymWrapper`` feeds an
  agent) flattened into one float32 vector whose slices `obs_layout` names
  (``flatten=False`` keeps a Dict of Boxes); ``obs_mode="pixels"`` a Dict with one uint8
  (H, W, 3) image per camera in `cameras`, keyed by camera name and upright, plus ``state``,
  the robots' proprioception vector (as the sim Panda tasks do).
* Actions: robosuite's action spec of the robot's default controller (for the Panda an
  operational-space controller: ``[dx dy dz drx dry drz grip]`` in [-1, 1], deltas in the robot
  base frame, gripper -1 open / +1 closed).
* Episodes: `max_episode_steps` (robosuite's default horizon, 1000 steps at `control_freq`
  20 Hz) ends an episode by truncation; success (``env._check_success()``) by termination when
  `terminate_on_success` (the SERL convention of the sim tasks). ``info["success"]`` every step.
  The reward is robosuite's sparse one, 1.0 on success (``reward_shaping=True``: its dense one).
* Seeding: robosuite draws everything from one generator, ``env.rng``: the model's random
  parts (Lift's cube size) when the model is built, the object placement and initial joint
  noise at each reset. The model is built once with `model_seed` (so every instance builds
  the same one) and resets only reset the simulation state; ``reset(seed=s)`` puts the
  generator in the state of `np_random` seeded with ``s``, so a seed fixes the episode (the
  first reset without a seed uses gymnasium's entropy-seeded `np_random`).
  ``hard_reset=True`` (robosuite's default) rebuilds the model at every reset, redrawing its
  random parts, at ~0.4 s a reset plus new GL resources in pixel mode.
* Rendering: offscreen only, never a window. Images are drawn with MuJoCo's renderer
  (`sim.rendering.CameraRenderer`, ``MUJOCO_GL=egl`` or ``osmesa``) from robosuite's model,
  visual geoms only, as robosuite draws them;
  with `fast_render` (default) reflections, shadows and multisampling are off, which more than
  halves the cost of a frame with Mesa's software rasteriser (set False for robosuite's look).
* `ee_pose()` gives the end-effector (grip site) pose for `serl.wrappers.RelativeFrame`:
  world-frame position and wxyz orientation, the frame of the observations; the controller's
  base frame has the world's orientation in robosuite's single-arm tasks.

robosuite logs an INFO line each time it loads a controller (every model load); its logger
is set to WARNING on first use unless configured to something stricter.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from sim.rendering import CameraRenderer, configure_gl_backend

ROBOSUITE_LOGGER = "robosuite_logs"
ROBOT_KEY = re.compile(r"^robot\d+_")  # robosuite names proprioceptive observables robot<i>_...


def _import_robosuite() -> Any:
    configure_gl_backend()  # robosuite, like MuJoCo, reads MUJOCO_GL when it is imported
    try:
        import robosuite
    except ImportError as exc:
        raise ImportError(
            f"robosuite:<Env>-<Robot> ids need robosuite==1.5.2 ({exc}); install the sim extra "
            "(pip install -e '.[sim]')"
        ) from exc
    rs_logger = logging.getLogger(ROBOSUITE_LOGGER)
    if rs_logger.level <= logging.INFO:
        rs_logger.setLevel(logging.WARNING)
    return robosuite


def _split(name: str) -> tuple[str, list[str]]:
    env_name, *robots = name.split("-")
    if not env_name or not robots or not all(robots):
        raise ValueError(f"robosuite id {name!r} must be <Env>-<Robot>[-<Robot>], e.g. Lift-Panda")
    return env_name, robots


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _quat_from_matrix(mat: np.ndarray) -> np.ndarray:
    import mujoco

    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat, dtype=np.float64).reshape(9))
    return quat if quat[0] >= 0 else -quat


class _VisualCameras(CameraRenderer):
    """Renders robosuite's visual geoms (group 1) without its collision geoms (group 0), as
    robosuite's own renderer does."""

    def __init__(self, model: Any, height: int, width: int) -> None:
        import mujoco

        super().__init__(model, height, width)
        self._option = mujoco.MjvOption()
        self._option.geomgroup[0] = 0

    def render(self, data: Any, camera: str) -> np.ndarray:
        self._renderer.update_scene(data, camera=camera, scene_option=self._option)
        return self._renderer.render()


class RobosuiteEnv(gym.Env):
    """One robosuite environment; see the module docstring.

    Args:
        env_name: a robosuite environment (``Lift``, ``Stack``, ``Door``, ...).
        robots: robot names, one per arm the environment needs (``["Panda"]``).
        obs_mode: "state" (one vector, or a Dict with ``flatten=False``) or "pixels".
        image_size: camera image size in pixel mode, an int or (height, width).
        cameras: robosuite camera names in pixel mode (``agentview`` and the wrist camera
            ``robot0_eye_in_hand`` by default, robomimic's pair).
        flatten: in state mode, one vector (True) or robosuite's observables as a Dict.
        max_episode_steps: time limit in env steps (truncation).
        control_freq: env steps per simulated second (robosuite's default 20 Hz).
        reward_shaping: robosuite's dense reward instead of the sparse success reward.
        terminate_on_success: end the episode (terminated) when the task succeeds.
        hard_reset: rebuild the model at every reset (robosuite's default), redrawing its
            random parts (object sizes), instead of resetting the simulation state only.
        model_seed: seed of the draws made while building the model (robosuite's ``seed``).
        fast_render: images without reflections, shadows and multisampling (see above).
        render_mode: None or "rgb_array" (`render` returns `render_camera`).
        render_size: size of `render`'s frames.
        render_camera: the camera `render` uses.
        env_kwargs: more keyword arguments for ``robosuite.make`` (a controller config,
            ``env_configuration`` of two-arm tasks, placement ranges, ...).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        env_name: str,
        robots: list[str],
        *,
        obs_mode: Literal["state", "pixels"] = "state",
        image_size: int | tuple[int, int] = 84,
        cameras: tuple[str, ...] = ("agentview", "robot0_eye_in_hand"),
        flatten: bool = True,
        max_episode_steps: int = 1000,
        control_freq: float = 20.0,
        reward_shaping: bool = False,
        terminate_on_success: bool = True,
        hard_reset: bool = False,
        model_seed: int = 0,
        fast_render: bool = True,
        render_mode: str | None = None,
        render_size: int | tuple[int, int] = 256,
        render_camera: str = "frontview",
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        robosuite = _import_robosuite()
        if env_name not in robosuite.ALL_ENVIRONMENTS:
            raise ValueError(
                f"unknown robosuite environment {env_name!r}; known: "
                f"{sorted(robosuite.ALL_ENVIRONMENTS)}"
            )
        unknown = [r for r in robots if r not in robosuite.ALL_ROBOTS]
        if unknown:
            known = sorted(robosuite.ALL_ROBOTS)
            raise ValueError(f"unknown robosuite robots {unknown}; known: {known}")
        if obs_mode not in ("state", "pixels"):
            raise ValueError(f"obs_mode={obs_mode!r}; use 'state' or 'pixels'")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; only 'rgb_array' is supported")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps} must be >= 1")
        self.env_name, self.robots = env_name, list(robots)
        self.obs_mode, self.flatten = obs_mode, flatten
        self.image_hw, self.cameras = _hw(image_size), tuple(cameras)
        self.max_episode_steps = max_episode_steps
        self.terminate_on_success, self.fast_render = terminate_on_success, fast_render
        self.render_mode, self.render_hw, self.render_camera = (
            render_mode, _hw(render_size), render_camera,
        )  # fmt: skip
        self._env = robosuite.make(
            env_name,
            robots=self.robots[0] if len(self.robots) == 1 else self.robots,
            has_renderer=False,
            has_offscreen_renderer=False,  # images come from our MuJoCo renderer
            use_camera_obs=False,
            renderer="mujoco",  # robosuite builds no viewer object with this and no renderer
            ignore_done=True,  # the time limit is ours (truncation)
            horizon=max_episode_steps,
            hard_reset=hard_reset,
            control_freq=control_freq,
            reward_shaping=reward_shaping,
            seed=model_seed,
            **(env_kwargs or {}),
        )
        self._rng_synced = False
        self._sim: Any = None
        self._renderers: dict[tuple[int, int], _VisualCameras] = {}
        self._steps = 0
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": control_freq}

        self._check_cameras()
        spec = self._env.observation_spec()
        self._state_keys = [k for k in spec if not k.endswith("-state")]
        self._proprio_keys = [k for k in self._state_keys if ROBOT_KEY.match(k)]
        sizes = {k: int(np.size(spec[k])) for k in self._state_keys}
        keys = self._state_keys if obs_mode == "state" else self._proprio_keys
        self.obs_layout: dict[str, slice] = {}
        start = 0
        for key in keys:
            self.obs_layout[key] = slice(start, start + sizes[key])
            start += sizes[key]

        low, high = self._env.action_spec
        self.action_space = gym.spaces.Box(
            np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32
        )
        vector = gym.spaces.Box(-np.inf, np.inf, (start,), np.float32)
        if obs_mode == "pixels":
            spaces: dict[str, gym.Space] = {
                cam: gym.spaces.Box(0, 255, (*self.image_hw, 3), np.uint8) for cam in self.cameras
            }
            spaces["state"] = vector
            self.observation_space: gym.Space = gym.spaces.Dict(spaces)
        elif flatten:
            self.observation_space = vector
        else:
            self.observation_space = gym.spaces.Dict(
                {k: gym.spaces.Box(-np.inf, np.inf, (sizes[k],), np.float32) for k in keys}
            )

    def _check_cameras(self) -> None:
        wanted = list(self.cameras) if self.obs_mode == "pixels" else []
        if self.render_mode == "rgb_array":
            wanted.append(self.render_camera)
        known = list(self._env.sim.model.camera_names)
        missing = [c for c in wanted if c not in known]
        if missing:
            raise ValueError(f"{self.env_name} has no cameras {missing}; cameras: {known}")

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or not self._rng_synced:
            # robosuite's samplers and robots all hold this one Generator: set it in place.
            self._env.rng.bit_generator.state = self.np_random.bit_generator.state
            self._rng_synced = True
        observation = self._env.reset()
        self._steps = 0
        return self._observation(observation), {"success": bool(self._env._check_success())}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"{self.env_name} takes actions of shape {self.action_space.shape}, got "
                f"{action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action {action} has NaN or Inf entries")
        observation, reward, _, _ = self._env.step(action)
        self._steps += 1
        success = bool(self._env._check_success())
        terminated = success and self.terminate_on_success
        truncated = self._steps >= self.max_episode_steps and not terminated
        info = {"success": success}
        return self._observation(observation), float(reward), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._render(self.render_camera, self.render_hw)

    def close(self) -> None:
        self._close_renderers()
        self._env.close()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Grip-site position (m) and wxyz orientation of the first robot's first arm (world)."""
        robot = self._env.robots[0]
        site = robot.eef_site_id[robot.arms[0]]
        data = self._env.sim.data
        return data.site_xpos[site].copy(), _quat_from_matrix(data.site_xmat[site])

    # ------------------------------------------------------------------ observations
    def _vector(self, observation: dict[str, Any], keys: list[str]) -> np.ndarray:
        parts = [np.asarray(observation[k], dtype=np.float32).reshape(-1) for k in keys]
        return np.concatenate(parts)

    def _observation(self, observation: dict[str, Any]) -> Any:
        if self.obs_mode == "pixels":
            obs = {cam: self._render(cam, self.image_hw) for cam in self.cameras}
            obs["state"] = self._vector(observation, self._proprio_keys)
            return obs
        if self.flatten:
            return self._vector(observation, self._state_keys)
        return {k: self._vector(observation, [k]) for k in self._state_keys}

    def _render(self, camera: str, hw: tuple[int, int]) -> np.ndarray:
        sim = self._env.sim
        if sim is not self._sim:  # a new model after a hard reset: new GL resources for it
            self._close_renderers()
            self._sim = sim
            model = sim.model._model
            if self.fast_render:  # visual-only fields, read when a renderer is made
                model.vis.quality.offsamples = 0
                model.vis.quality.shadowsize = 0
                model.mat_reflectance[:] = 0.0
                model.light_castshadow[:] = 0
        if hw not in self._renderers:
            model = sim.model._model
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, hw[1])
            model.vis.global_.offheight = max(model.vis.global_.offheight, hw[0])
            self._renderers[hw] = _VisualCameras(model, *hw)
        return self._renderers[hw].render(sim.data._data, camera)

    def _close_renderers(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers = {}


def make(name: str, render_mode: str | None = None, **kwargs: Any) -> RobosuiteEnv:
    """``robosuite:Lift-Panda`` -> robosuite's Lift with a Panda (the serl.envs entry point)."""
    env_name, robots = _split(name)
    return RobosuiteEnv(env_name, robots, render_mode=render_mode, **kwargs)
