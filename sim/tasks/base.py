"""The common Panda task: model, controller, observations, rendering, dynamics parameters.

A task subclass adds its bodies (`task_xml`), places them at reset (`reset_task`), and says
what it observes (`task_observation`), when it succeeds (`is_success`) and what it pays
(`compute_reward`). Everything else is shared, so an action means the same in every task:

* Action: entries in [-1, 1]; ``[dx, dy, dz]`` moves the end-effector target by
  ``action * action_scale_m`` from the current pose (`sim.controller`), then ``[drx, dry, drz]``
  if the task controls rotation, then the gripper command (-1 open, +1 closed) if it controls
  the gripper. One env step is ``physics_steps = round(1 / (control_hz * timestep_s))``
  physics steps (50 at 10 Hz and 500 Hz) with the torque law running at every one of them.
* Observation (``obs_mode="state"``, default): one float32 vector, proprioception then the
  task's privileged state; `obs_layout` names its slices. Proprioception is the tool centre
  point (TCP) position (m, world frame), its linear velocity (m/s), the gripper opening (m),
  and the TCP orientation quaternion (w >= 0) when rotation is controlled.
* Observation (``obs_mode="pixels"``): a Dict of uint8 (H, W, 3) images, one per camera
  (``front``, ``wrist`` by default), plus ``state``, the proprioception vector only.
* Episodes end by truncation after `max_episode_steps`; by termination on success when
  `terminate_on_success` (the SERL convention for sparse tasks). ``info["success"]`` is the
  task's success test at the current step.
* Dynamics parameters (`sim.dynamics`): `get_params`, `set_params`, `reset_params`, and
  ``reset(options={"params": {...}})`` or ``{"randomize": uncertainty_set}`` (a draw with the
  env's seeded rng; "params" given too override the draw). The reset info carries the
  parameters in force under ``"params"``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Literal

import gymnasium as gym
import mujoco
import numpy as np

from sim import panda
from sim.controller import ControllerConfig, EndEffectorController
from sim.dynamics import ModelParams, UncertaintySet, uncertainty_set
from sim.rendering import CameraRenderer

logger = logging.getLogger(__name__)

ObsMode = Literal["state", "pixels"]


class PandaEnv(gym.Env):
    """Base class of the Panda tasks; see the module docstring.

    Args:
        obs_mode: "state" (one vector) or "pixels" (camera images plus proprioception).
        image_size: camera image size, an int for square images or (height, width).
        cameras: cameras in pixel observations, any of "front" and "wrist".
        reward_type: "sparse" or "dense"; None takes the task's default.
        max_episode_steps: time limit in env steps (truncation); None takes the task's.
        control_hz: env steps per simulated second (the real robot's SERL loop runs at 10).
        timestep_s: physics step; the torque law runs once per physics step.
        controller: gains and action scales; its workspace box is replaced by the task's.
        control_rotation: add [drx, dry, drz] to the action; None takes the task's default.
        terminate_on_success: end the episode (terminated) when the task succeeds.
        params: initial dynamics parameters (`sim.dynamics`), e.g. {"friction": 0.8}.
        render_mode: None or "rgb_array" (`render` returns `render_camera`'s view).
        render_size: size of `render`'s frames.
        render_camera: camera `render` shows: "overview" (the whole arm and the table, for
            videos), "front" or "wrist". `metadata["render_fps"]` is the control rate: one
            rendered frame per step, so a video at that rate plays in real time.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    # Subclasses set these.
    control_rotation: bool = False
    control_gripper: bool = False
    default_max_episode_steps: int = 100
    default_reward_type: str = "sparse"
    object_bodies: tuple[str, ...] = ()
    workspace_low: tuple[float, float, float] = (0.3, -0.3, 0.0)
    workspace_high: tuple[float, float, float] = (0.7, 0.3, 0.45)

    def __init__(
        self,
        *,
        obs_mode: ObsMode = "state",
        image_size: int | tuple[int, int] = 128,
        cameras: tuple[str, ...] = ("front", "wrist"),
        reward_type: str | None = None,
        max_episode_steps: int | None = None,
        control_hz: float = 10.0,
        timestep_s: float = 0.002,
        controller: ControllerConfig | None = None,
        control_rotation: bool | None = None,
        terminate_on_success: bool = True,
        params: dict[str, float] | None = None,
        render_mode: str | None = None,
        render_size: int | tuple[int, int] = 256,
        render_camera: str = "overview",
    ) -> None:
        if obs_mode not in ("state", "pixels"):
            raise ValueError(f"obs_mode={obs_mode!r}; use 'state' or 'pixels'")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r}; only 'rgb_array' is supported")
        if control_rotation is not None:
            self.control_rotation = control_rotation
        self.obs_mode = obs_mode
        self.image_hw = _hw(image_size)
        self.render_hw = _hw(render_size)
        self.cameras = tuple(cameras)
        self.reward_type = reward_type or self.default_reward_type
        if self.reward_type not in ("sparse", "dense"):
            raise ValueError(f"reward_type={self.reward_type!r}; use 'sparse' or 'dense'")
        self.max_episode_steps = max_episode_steps or self.default_max_episode_steps
        self.terminate_on_success = terminate_on_success
        self.render_mode = render_mode
        self.render_camera = render_camera
        self.metadata = {**self.metadata, "render_fps": control_hz}
        self.physics_steps = max(1, round(1.0 / (control_hz * timestep_s)))
        if abs(self.physics_steps * timestep_s * control_hz - 1.0) > 1e-6:
            logger.warning(
                "control period 1/%g s is not a multiple of timestep %g s; using %d physics steps",
                control_hz, timestep_s, self.physics_steps,
            )  # fmt: skip

        height = max(self.image_hw[0], self.render_hw[0])
        width = max(self.image_hw[1], self.render_hw[1])
        options = panda.SceneOptions(
            timestep_s=timestep_s, render_width=width, render_height=height
        )
        self.model = mujoco.MjModel.from_xml_string(
            panda.scene_xml(
                self.task_xml(), options, name=type(self).__name__, hand_xml=self.hand_xml()
            )
        )
        self.data = mujoco.MjData(self.model)
        model_cameras = [self.model.camera(i).name for i in range(self.model.ncam)]
        if render_camera not in model_cameras:
            raise ValueError(f"render_camera={render_camera!r}; the model has {model_cameras}")
        cfg = controller or ControllerConfig()
        cfg = replace(cfg, workspace_low=self.workspace_low, workspace_high=self.workspace_high)
        self.controller = EndEffectorController(
            self.model,
            self.data,
            site=panda.TCP_SITE,
            arm_joints=panda.ARM_JOINTS,
            arm_actuators=panda.ARM_ACTUATORS,
            gripper_actuator=panda.GRIPPER_ACTUATOR,
            rest_qpos=panda.HOME_QPOS,
            config=cfg,
        )
        self.dynamics = ModelParams(
            self.model,
            object_bodies=self.object_bodies,
            arm_bodies=panda.ARM_BODIES,
            arm_joints=panda.ARM_JOINTS,
            arm_actuators=panda.ARM_ACTUATORS,
        )
        if params:
            self.dynamics.set(params)
        self._arm_qpos = np.array([self.model.joint(j).qposadr[0] for j in panda.ARM_JOINTS])
        self._finger_qpos = np.array([self.model.joint(j).qposadr[0] for j in panda.FINGER_JOINTS])
        self.home_quat = self._home_quat()
        self._renderer: CameraRenderer | None = None
        self._display_renderer: CameraRenderer | None = None
        self._steps = 0

        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), dtype=np.float32)
        self.obs_layout = self._layout()
        state_dim = max(s.stop for s in self.obs_layout.values())
        proprio_dim = self.obs_layout["gripper_width"].stop
        if self.control_rotation:
            proprio_dim = self.obs_layout["tcp_quat"].stop
        self.proprio_dim = proprio_dim
        if obs_mode == "state":
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
        else:
            spaces: dict[str, gym.Space] = {
                cam: gym.spaces.Box(0, 255, (*self.image_hw, 3), np.uint8) for cam in self.cameras
            }
            spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (proprio_dim,), np.float32)
            self.observation_space = gym.spaces.Dict(spaces)

    # ------------------------------------------------------------------ what a task defines
    def task_xml(self) -> str:
        """MJCF bodies added to the worldbody (objects, targets, fixtures)."""
        return ""

    def hand_xml(self) -> str:
        """MJCF geoms and sites added to the hand body (a tool held in the hand)."""
        return ""

    def task_observation_spec(self) -> dict[str, int]:
        """Names and sizes of the task's entries in the state vector, in order."""
        return {}

    def reset_task(self, rng: np.random.Generator) -> None:
        """Place the task's objects (data.qpos / data.mocap_pos) for a new episode."""

    def task_observation(self) -> np.ndarray:
        return np.zeros(0)

    def is_success(self) -> bool:
        raise NotImplementedError

    def compute_reward(self, success: bool) -> float:
        return float(success)

    def initial_arm_qpos(self, rng: np.random.Generator) -> np.ndarray:
        """Arm joint angles at reset; the home pose with a little noise by default."""
        return panda.HOME_QPOS + rng.uniform(-0.02, 0.02, size=7)

    def initial_gripper(self) -> float:
        """Gripper command at reset (-1 open)."""
        return -1.0

    def _home_quat(self) -> np.ndarray:
        self.data.qpos[self._arm_qpos] = panda.HOME_QPOS
        mujoco.mj_kinematics(self.model, self.data)
        quat = self.controller.ee_quat()
        mujoco.mj_resetData(self.model, self.data)
        return quat

    # ------------------------------------------------------------------ layout and spaces
    @property
    def action_dim(self) -> int:
        return 3 + 3 * self.control_rotation + self.control_gripper

    def _layout(self) -> dict[str, slice]:
        sizes = {"tcp_pos": 3, "tcp_vel": 3, "gripper_width": 1}
        if self.control_rotation:
            sizes["tcp_quat"] = 4
        sizes.update(self.task_observation_spec())
        layout, start = {}, 0
        for name, size in sizes.items():
            layout[name] = slice(start, start + size)
            start += size
        return layout

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "randomize" in options:
            self.set_params(uncertainty_set(options["randomize"]).sample(self.np_random))
        if "params" in options:
            self.set_params(options["params"])
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qpos] = self.initial_arm_qpos(self.np_random)
        self.controller.set_gripper(self.initial_gripper())
        self.data.qpos[self._finger_qpos] = self.controller.gripper_ctrl
        self.reset_task(self.np_random)
        mujoco.mj_forward(self.model, self.data)
        self.controller.reset()
        # Joint noise tilts the hand a little; the target orientation is the home one (hand
        # down, fingers along y), which the controller reaches within the first step.
        self.controller.target_quat = self.home_quat.copy()
        self._steps = 0
        info = {"success": bool(self.is_success()), "params": self.get_params()}
        return self._observation(), info

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"{type(self).__name__} takes actions of shape ({self.action_dim},), got "
                f"{action.shape}"
            )
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action {action} has NaN or Inf entries")
        noise = self.dynamics.values["action_noise"]
        if noise > 0:
            action = action + self.np_random.normal(0.0, noise, size=action.shape)
        action = np.clip(action, -1.0, 1.0)
        rot = action[3:6] if self.control_rotation else None
        grip = float(action[-1]) if self.control_gripper else None
        self.controller.apply_action(action[:3], rot, grip)
        self.controller.step(self.physics_steps)
        self._steps += 1

        success = bool(self.is_success())
        reward = self.compute_reward(success)
        terminated = bool(success and self.terminate_on_success)
        truncated = bool(self._steps >= self.max_episode_steps and not terminated)
        return self._observation(), float(reward), terminated, truncated, {"success": success}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._display_renderer is None:
            self._display_renderer = CameraRenderer(self.model, *self.render_hw)
        return self._display_renderer.render(self.data, self.render_camera)

    def close(self) -> None:
        for renderer in (self._renderer, self._display_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._display_renderer = None

    # ------------------------------------------------------------------ dynamics parameters
    def get_params(self) -> dict[str, float]:
        """The dynamics parameters in force (`sim.dynamics` lists them)."""
        return self.dynamics.get()

    def set_params(self, params: dict[str, float]) -> None:
        """Set some dynamics parameters now; the others keep their values."""
        self.dynamics.set(params)

    def reset_params(self) -> None:
        """Back to the nominal dynamics."""
        self.dynamics.reset()

    def sample_params(self, uncertainty: str | UncertaintySet) -> dict[str, float]:
        """Draw parameters from an uncertainty set with this env's seeded rng (not applied)."""
        return uncertainty_set(uncertainty).sample(self.np_random)

    # ------------------------------------------------------------------ observations
    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.controller.site_id].copy()

    def gripper_width(self) -> float:
        return float(self.data.qpos[self._finger_qpos].sum())

    def _proprio(self) -> np.ndarray:
        parts = [self.tcp_pos(), self.controller.ee_velocity()[:3], [self.gripper_width()]]
        if self.control_rotation:
            parts.append(self.controller.ee_quat())
        return np.concatenate(parts)

    def _noisy(self, vector: np.ndarray) -> np.ndarray:
        noise = self.dynamics.values["obs_noise"]
        if noise > 0:
            vector = vector + self.np_random.normal(0.0, noise, size=vector.shape)
        return vector.astype(np.float32)

    def _observation(self) -> Any:
        if self.obs_mode == "state":
            return self._noisy(np.concatenate([self._proprio(), self.task_observation()]))
        if self._renderer is None:
            self._renderer = CameraRenderer(self.model, *self.image_hw)
        obs: dict[str, np.ndarray] = {
            cam: self._renderer.render(self.data, cam) for cam in self.cameras
        }
        obs["state"] = self._noisy(self._proprio())
        return obs


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)
