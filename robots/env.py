"""The gymnasium env of a real (or simulated) arm: `robot:<task>` ids.

The env is a client: it talks to `serl robot-server` (which owns the arm and enforces the
safety limits) and reads its cameras, at a fixed control rate. A task is a JSON file of
`RobotTaskConfig` fields; `make("franka-peg")` reads ``franka-peg.json`` from the first of:
the directories in ``$SERL_ROBOT_TASKS`` (``os.pathsep``-separated), ``./robot_tasks/``, and
the examples shipped in ``robots/tasks/``. A path to a ``.json`` file works as well.

One step, as SERL's Franka env does it (Luo et al. 2024): send the action as a delta pose from
the measured pose (`RobotClient.move_delta`), sleep until the control tick (1 / control_hz
after the previous one), then read the arm's state and each camera's newest frame. The
observation therefore shows the result of the action. How late each wake-up was is reported
in ``info["control_jitter_s"]`` and `jitter_s` keeps the episode's values. With
``control_hz = 0`` the env does not pace (a simulated server that advances one control period
per command, `SimBackendConfig.realtime = False`).

* action: ``[dx, dy, dz]`` × `action_scale_m`, then ``[drx, dry, drz]`` × `action_scale_rad`
  when that is > 0, then the gripper (-1 open .. +1 closed) when `gripper`; all in [-1, 1].
  A NaN/Inf action raises before anything is sent (the server would also refuse it).
* observation: ``{"state": [ee_pos (3), ee_quat wxyz (4), gripper_width (1), ee_vel (6)],
  <camera>: uint8 (H, W, 3) ...}``.
* reward (`reward`): ``goal`` pays -1 per step and terminates with success when the TCP is
  within `goal_tolerance_m` of `goal_pos_m` (a reach task, also a first real-robot check);
  ``classifier`` wraps the env in `serl.rewards.ClassifierReward` with the checkpoint
  `classifier`; ``none`` pays 0 (success comes from a human through the teleop layer).
* An e-stopped arm ends the episode (truncated, ``info["estopped"]``).
* Making the env reads only its config (its spaces follow from it); the first `reset`
  connects to the server and starts the cameras. So the learner, which makes the env to learn
  its spaces, needs the task file but not the arm. Connecting asks the server for its `info`
  first: with no server there, `EnvUnreachableError` says so after `timeout_s` (2 s), naming
  the endpoint and how to start the server, instead of a reset waiting 30 s to time out.
* ``info["goal_distance_m"]`` and ``info["goal_offset_m"]`` (``goal`` reward): how far and
  which way (goal - TCP, base frame) the goal is, which the sim server's cameras cannot show
  (the goal is the task's, not the scene's): `serl record-demos` prints it on its status line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from robots.cameras import CallableSource, Camera, OpenCVSource, RealSenseSource
from robots.client import DEFAULT_ENDPOINT, RobotClient, RobotTimeoutError
from serl.config import config_from_dict
from serl.envs import EnvUnreachableError
from serl.transport.auth import load_client_keys

logger = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).parent / "tasks"
CAMERA_KINDS = ("server", "opencv", "realsense")
STATE_DIM = 14
"""ee_pos (3) + ee_quat (4) + gripper_width (1) + ee_vel (6)."""


class ControlTicks:
    """Fixed-rate control ticks: `wait` sleeps until the next tick (`period_s` after the
    previous one) and returns how late it woke (s). An overrun of a whole period restarts the
    schedule instead of rushing to catch up; a period of 0 never waits."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._tick = time.monotonic()

    def restart(self) -> None:
        """Count the next period from now (an episode start is not a control period)."""
        self._tick = time.monotonic()

    def wait(self) -> float:
        if self.period_s == 0:
            return 0.0
        deadline = self._tick + self.period_s
        now = time.monotonic()
        if now < deadline:
            time.sleep(deadline - now)
        woke = time.monotonic()
        self._tick = deadline if woke - deadline < self.period_s else woke
        return max(0.0, woke - deadline)


class RobotTaskError(ValueError):
    """A robot task config is missing or wrong; the message names the file and the field."""


@dataclass(frozen=True)
class CameraSpec:
    source: str
    """``server:<name>`` (a camera the robot server renders: the sim backend's front/wrist),
    ``opencv:<index or path>`` or ``realsense:<serial>``."""
    size: tuple[int, int] = (128, 128)
    """Delivered (height, width), after the crop."""
    crop: tuple[int, int, int, int] | None = None
    """Rows y0:y1 and columns x0:x1 of the source frame, before resizing."""
    stall_timeout_s: float = 1.0
    """A camera without a new frame for this long is reported (CameraStalledError)."""


@dataclass(frozen=True)
class RobotTaskConfig:
    server: str = DEFAULT_ENDPOINT
    """Endpoint of `serl robot-server`."""
    keys_dir: Path | None = None
    """CURVE key directory when the server uses keys (`serl keys generate`)."""
    client_name: str = "actor"
    """Which client key of `keys_dir` to use."""
    cameras: dict[str, CameraSpec] = field(default_factory=dict)
    """Observation key -> camera."""
    control_hz: float = 10.0
    """Steps per second the env keeps (0: no pacing, for a step-on-command sim server)."""
    max_episode_steps: int = 100
    """Time limit (truncation)."""
    reset_pose: str = "home"
    """Named joint pose of the server's config that each episode starts from."""
    compliance: str | None = None
    """Compliance profile set at each reset (None: leave the server's)."""
    action_scale_m: float = 0.02
    """TCP translation of a full action, per step (the server also clamps it)."""
    action_scale_rad: float = 0.0
    """TCP rotation of a full action, per step; 0 leaves rotation out of the action."""
    gripper: bool = False
    """Whether the action's last entry commands the gripper."""
    reward: Literal["goal", "classifier", "none"] = "goal"
    """Reward source; see the module docstring."""
    goal_pos_m: tuple[float, float, float] = (0.5, 0.0, 0.25)
    """Target TCP position of the ``goal`` reward (m, robot base frame)."""
    goal_tolerance_m: float = 0.03
    """Distance to the goal that counts as success."""
    classifier: Path | None = None
    """Reward-classifier checkpoint (`serl train-reward`) for ``reward = "classifier"``."""
    timeout_s: float = 2.0
    """Longest wait for the server's answer to a call (resets: 30 s)."""


def task_search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("SERL_ROBOT_TASKS", "").split(os.pathsep) if p]
    return [*extra, Path("robot_tasks"), TASKS_DIR]


def find_task(name: str) -> Path:
    """The JSON file of task `name` (see the module docstring)."""
    if name.endswith(".json"):
        path = Path(name)
        if not path.is_file():
            raise RobotTaskError(f"robot task file {path} does not exist")
        return path
    for directory in task_search_path():
        if (directory / f"{name}.json").is_file():
            return directory / f"{name}.json"
    looked = ", ".join(str(d) for d in task_search_path())
    raise RobotTaskError(
        f"no robot task {name!r}: looked for {name}.json in {looked}; write one (fields of "
        "robots.env.RobotTaskConfig) or set SERL_ROBOT_TASKS"
    )


def load_task(path: Path | str, **overrides: Any) -> RobotTaskConfig:
    """A task config from its JSON file; `overrides` replace fields (e.g. `server`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RobotTaskError(f"cannot read robot task {path}: {exc}") from None
    if not isinstance(data, dict):
        raise RobotTaskError(f"{path}: the top level must be a JSON object of task fields")
    data |= overrides
    try:
        cameras = {
            key: spec if isinstance(spec, CameraSpec) else config_from_dict(CameraSpec, spec)
            for key, spec in dict(data.pop("cameras", {})).items()
        }
        cfg = config_from_dict(RobotTaskConfig, data)
    except (TypeError, ValueError) as exc:
        raise RobotTaskError(f"{path}: {exc}") from None
    cfg = replace(cfg, cameras=cameras)
    _check(cfg, path)
    return cfg


def _check(cfg: RobotTaskConfig, path: Path) -> None:
    if cfg.control_hz < 0 or cfg.max_episode_steps < 1:
        raise RobotTaskError(
            f"{path}: control_hz={cfg.control_hz} must be >= 0 and max_episode_steps="
            f"{cfg.max_episode_steps} >= 1"
        )
    if cfg.reward == "classifier" and cfg.classifier is None:
        raise RobotTaskError(f"{path}: reward 'classifier' needs the 'classifier' checkpoint path")
    for key, spec in cfg.cameras.items():
        if spec.source.partition(":")[0] not in CAMERA_KINDS:
            raise RobotTaskError(
                f"{path}: camera {key!r}: source {spec.source!r} is not server:<name>, "
                "opencv:<index|path> or realsense:<serial>"
            )
    if "state" in cfg.cameras:
        raise RobotTaskError(f"{path}: 'state' is the proprioception key; rename that camera")


def make_camera(key: str, spec: CameraSpec, cfg: RobotTaskConfig) -> Camera:
    kind, _, where = spec.source.partition(":")
    if kind == "server":
        client = _client(cfg)  # its own socket: a RobotClient is not thread-safe
        source = CallableSource(lambda: client.render(where), name=f"server:{where}")
    elif kind == "opencv":
        source = OpenCVSource(int(where) if where.isdigit() else where)
    elif kind == "realsense":
        source = RealSenseSource(where or None)
    else:
        raise RobotTaskError(f"camera {key!r}: unknown source kind in {spec.source!r}")
    return Camera(
        source, crop=spec.crop, resize=spec.size, stall_timeout_s=spec.stall_timeout_s, name=key
    )


def _client(cfg: RobotTaskConfig) -> RobotClient:
    keys = load_client_keys(cfg.keys_dir, cfg.client_name) if cfg.keys_dir else None
    return RobotClient(cfg.server, timeout_s=cfg.timeout_s, curve=keys)


class RobotEnv(gym.Env):
    """An arm behind `serl robot-server`, with cameras; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, cfg: RobotTaskConfig, render_mode: str | None = None) -> None:
        self.cfg = cfg
        self.render_mode = render_mode
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self._action_dim(),), np.float32)
        spaces: dict[str, gym.Space] = {
            "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        }
        for key, spec in cfg.cameras.items():
            spaces[key] = gym.spaces.Box(0, 255, (*spec.size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.client: RobotClient | None = None
        self.cameras: dict[str, Camera] = {}
        self.period_s = 1.0 / cfg.control_hz if cfg.control_hz > 0 else 0.0
        self.jitter_s: list[float] = []
        self._ticks = ControlTicks(self.period_s)
        self._t = 0
        self._last_obs: dict[str, np.ndarray] | None = None

    def connect(self) -> None:
        """Connect to the server and start the cameras (the first `reset` does it; making the
        env only reads its spaces, so a learner on another PC can make it without the arm)."""
        if self.client is not None:
            return
        self.client = _client(self.cfg)
        try:
            self.client.info()
        except RobotTimeoutError:
            self.close()
            raise EnvUnreachableError(
                f"the robot server at {self.cfg.server} is unreachable (no answer within "
                f"{self.cfg.timeout_s:g} s); start it on the robot PC with "
                "`launch/run_robot_server.sh` (or `serl robot-server --backend sim --endpoint "
                f"{self.cfg.server}` to rehearse on the simulated arm), or correct the task's "
                "'server' field"
            ) from None
        try:
            for key, spec in self.cfg.cameras.items():
                self.cameras[key] = make_camera(key, spec, self.cfg).start()
        except Exception:
            self.close()
            raise
        logger.info("robot env connected to %s; cameras %s", self.cfg.server, list(self.cameras))

    def _action_dim(self) -> int:
        return 3 + (3 if self.cfg.action_scale_rad > 0 else 0) + (1 if self.cfg.gripper else 0)

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.connect()
        if self.cfg.compliance is not None:
            self.client.set_compliance(self.cfg.compliance)
        state = self.client.reset(self.cfg.reset_pose)
        self._t = 0
        self.jitter_s = []
        self._ticks.restart()
        obs = self._observation(state)
        return obs, {"success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        if self.client is None:
            raise RuntimeError("RobotEnv.step before reset: call reset() first")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != self.action_space.shape or not np.all(np.isfinite(action)):
            raise ValueError(
                f"robot env action {action.tolist()} must be {self.action_space.shape[0]} finite "
                "numbers in [-1, 1]; nothing was sent to the arm"
            )
        action = np.clip(action, -1.0, 1.0)
        cfg = self.cfg
        drot = action[3:6] * cfg.action_scale_rad if cfg.action_scale_rad > 0 else None
        grip = float(action[-1]) if cfg.gripper else None
        result = self.client.move_delta(action[:3] * cfg.action_scale_m, drot, grip)
        jitter = self._ticks.wait()
        self.jitter_s.append(jitter)
        state = self.client.get_state()
        obs = self._observation(state)
        self._t += 1
        offset = self._goal_offset_m(state) if cfg.reward == "goal" else None
        distance = float(np.linalg.norm(offset)) if offset is not None else None
        success = distance is not None and distance <= cfg.goal_tolerance_m
        reward = -1.0 + float(success) if cfg.reward == "goal" else 0.0
        estopped = bool(state["estopped"])
        truncated = self._t >= cfg.max_episode_steps or estopped
        info = {
            "success": success,
            "move_accepted": result.accepted,
            "move_clamped": ",".join(result.clamped),
            "control_jitter_s": jitter,
            "held": bool(state["held"]),
            "estopped": estopped,
        }
        if offset is not None:
            info |= {"goal_distance_m": distance, "goal_offset_m": offset}
        if success or truncated:
            info |= self.jitter_summary()
        return obs, reward, success, truncated and not success, info

    def jitter_summary(self) -> dict[str, float]:
        """p50 / p99 / max of this episode's wake-up lateness, in ms (reported at its end)."""
        if not self.jitter_s:
            return {}
        p50, p99 = np.percentile(self.jitter_s, [50, 99]) * 1000
        worst = max(self.jitter_s) * 1000
        return {"jitter_p50_ms": float(p50), "jitter_p99_ms": float(p99), "jitter_max_ms": worst}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._last_obs is None:
            return None
        images = [v for k, v in self._last_obs.items() if k != "state"]
        return images[0] if images else None

    def close(self) -> None:
        for camera in self.cameras.values():
            camera.close()
        self.cameras = {}
        if self.client is not None:
            self.client.close()
            self.client = None

    # ------------------------------------------------------------------ helpers
    def _goal_offset_m(self, state: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self.cfg.goal_pos_m) - state["ee_pos"]

    def _observation(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vector = np.concatenate(
            [state["ee_pos"], state["ee_quat"], state["gripper_width"], state["ee_vel"]]
        ).astype(np.float32)
        obs = {"state": vector}
        for key, camera in self.cameras.items():
            obs[key] = camera.latest().image
        self._last_obs = obs
        return obs


def make(
    name: str, render_mode: str | None = None, task_classifier: bool = True, **overrides: Any
) -> gym.Env:
    """The env of robot task `name` (`serl.envs` entry point for ``robot:<name>`` ids).

    `task_classifier` False leaves out the classifier a ``"reward": "classifier"`` task names:
    `serl.rewards.make_classified_env` passes it when `--reward.checkpoint` gives another one,
    which then replaces the task's instead of being applied on top of it.
    """
    cfg = load_task(find_task(name), **overrides)
    if not task_classifier and cfg.reward == "classifier":
        cfg = replace(cfg, reward="none", classifier=None)
    env: gym.Env = RobotEnv(cfg, render_mode=render_mode)
    if cfg.reward == "classifier":
        from serl.rewards.wrapper import ClassifierReward

        env = ClassifierReward(env, cfg.classifier, keep_env_termination=True)
    return env
