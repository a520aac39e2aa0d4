"""SERL-style gymnasium wrappers: relative end-effector frame, action repeat and chunking,
gripper-change penalty, image crop and resize, frame stacking.

They see a gymnasium env and nothing else, so the sim tasks, the dm_control and robosuite
adapters and the real-robot env share them (``sim`` and ``robots`` import ``serl``, never the
reverse). Each wrapper keeps `observation_space` and `action_space` exact, so gymnasium's
`check_env` passes on the wrapped env. The SERL originals these follow are in
``serl_robot_infra/franka_env/envs/wrappers.py`` and ``relative_env.py`` (Luo et al. 2024,
"SERL: A Software Suite for Sample-Efficient Robotic Reinforcement Learning").

Quaternions are (w, x, y, z), MuJoCo's order. Where a wrapper reads part of an observation
(`RelativeFrame`), the part is a `Part`: a slice of a Box observation, the key of a Dict
observation's entry, or ``(key, slice)`` for some entries of one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, SupportsFloat, Union

import gymnasium as gym
import numpy as np

Part = Union[slice, str, tuple[str, slice]]
"""A vector inside an observation: ``slice(0, 3)`` of a Box observation, ``"eef_pos"`` (a
whole Dict entry), or ``("state", slice(0, 3))`` (entries of a Dict entry)."""

EEPoseFn = Callable[[gym.Env], tuple[np.ndarray, np.ndarray]]
"""``ee_pose_fn(env) -> (position (3,), quaternion (4,) wxyz)`` of the end effector."""

StepResult = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]

INTERVENE_KEY = "intervene_action"
"""The info key under which a human's overriding action is reported (the executed action)."""


# ---------------------------------------------------------------------------- rotations
def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of wxyz quaternions (rotate by b, then by a)."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])  # fmt: skip


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """The inverse rotation of a unit wxyz quaternion."""
    return np.array([q[0], -q[1], -q[2], -q[3]])


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a wxyz quaternion (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _canonical(q: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


# ---------------------------------------------------------------------------- observation parts
def _locate(space: gym.Space, part: Part) -> tuple[str | None, slice]:
    """(Dict key or None, slice of the flat entries) of `part`, checked against `space`."""
    if isinstance(space, gym.spaces.Box):
        if not isinstance(part, slice):
            raise ValueError(f"the observation is a Box: give a slice, not {part!r}")
        if space.shape is None or len(space.shape) != 1:
            raise ValueError(f"Box observations must be vectors, got shape {space.shape}")
        return None, part
    if not isinstance(space, gym.spaces.Dict):
        raise ValueError(f"observation space {space} is neither a Box nor a Dict")
    key, index = (part, slice(None)) if isinstance(part, str) else part
    if not isinstance(key, str) or not isinstance(index, slice):
        raise ValueError(f"the observation is a Dict: give a key or (key, slice), not {part!r}")
    if key not in space.spaces:
        raise ValueError(f"observation has no key {key!r}; keys: {sorted(space.spaces)}")
    sub = space[key]
    if not isinstance(sub, gym.spaces.Box) or sub.shape is None or len(sub.shape) != 1:
        raise ValueError(f"observation[{key!r}] must be a vector Box, got {sub}")
    return key, index


def _entries(space: gym.Space, key: str | None) -> gym.spaces.Box:
    box = space if key is None else space[key]
    assert isinstance(box, gym.spaces.Box)
    return box


def _unbounded(space: gym.Space, located: Sequence[tuple[str | None, slice]]) -> gym.Space:
    """`space` with the located entries' bounds opened to (-inf, inf)."""
    boxes: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    for key, index in located:
        box = _entries(space, key)
        low, high = boxes.get(key, (box.low.copy(), box.high.copy()))
        low[index], high[index] = -np.inf, np.inf
        boxes[key] = (low, high)

    def rebuilt(key: str | None) -> gym.spaces.Box:
        box = _entries(space, key)
        if key not in boxes:
            return box
        return gym.spaces.Box(*boxes[key], dtype=box.dtype)  # type: ignore[arg-type]

    if isinstance(space, gym.spaces.Box):
        return rebuilt(None)
    assert isinstance(space, gym.spaces.Dict)
    return gym.spaces.Dict({k: rebuilt(k) for k in space.spaces})


# ---------------------------------------------------------------------------- relative frame
class RelativeFrame(gym.Wrapper):
    """Observations and delta actions in the frame of the episode's initial end-effector pose.

    At reset the wrapper reads the end-effector pose ``(p0, q0)`` (rotation ``R0``) through
    `ee_pose_fn` and from then on
      * `position` (3 entries): ``p -> R0^T (p - p0)``, so each episode starts at the origin;
      * `quaternion` (4 entries, wxyz): ``q -> q0^-1 q`` (w >= 0), the identity at reset;
      * each of `vectors` (3k entries: linear/angular velocity, force): ``v -> R^T v`` per 3;
      * actions: the `action_translation` slice and the `action_rotation` slice (a rotation
        vector), both given in the frame, are rotated into the env's frame, ``a -> R a``.
    ``R`` is ``R0`` with ``frame="initial"`` (the default), or the end effector's current
    orientation with ``frame="current"`` (SERL's ``RelativeFrame``: body-frame actions and
    velocities, pose still relative to the reset pose). Translation and rotation deltas are
    rotated, not mapped by the full adjoint: the controllers move the tool centre point, whose
    displacement only changes axes with the frame. A rotated action can leave the env's action
    box (a unit step along a diagonal); it is then scaled down as a whole, which keeps its
    direction, rather than clipped entry by entry.

    Hook: ``ee_pose_fn(env) -> (pos (3,), quat (4,) wxyz)`` gets the wrapped env and gives the
    pose in the frame that the observation parts and the env's actions are in. Without one the
    wrapper calls ``env.unwrapped.ee_pose()``. A human override reported in
    ``info["intervene_action"]`` (env frame) is rotated back into the relative frame.
    """

    def __init__(
        self,
        env: gym.Env,
        ee_pose_fn: EEPoseFn | None = None,
        *,
        position: Part | None = None,
        quaternion: Part | None = None,
        vectors: Sequence[Part] = (),
        action_translation: slice | None = slice(0, 3),
        action_rotation: slice | None = None,
        frame: Literal["initial", "current"] = "initial",
    ) -> None:
        super().__init__(env)
        if frame not in ("initial", "current"):
            raise ValueError(f"frame={frame!r}; use 'initial' or 'current'")
        if ee_pose_fn is None:
            if not callable(getattr(env.unwrapped, "ee_pose", None)):
                raise ValueError(
                    f"{env.unwrapped} has no ee_pose() method; pass ee_pose_fn=lambda env: "
                    "(position, wxyz_quaternion) of the end effector"
                )
            ee_pose_fn = _call_ee_pose
        self.ee_pose_fn, self.frame = ee_pose_fn, frame
        space = env.observation_space
        self._position = None if position is None else _locate(space, position)
        self._quaternion = None if quaternion is None else _locate(space, quaternion)
        self._vectors = [_locate(space, v) for v in vectors]
        located = [p for p in (self._position, self._quaternion) if p is not None]
        self._check_sizes()
        self._touched = {key for key, _ in located + self._vectors}
        self.observation_space = _unbounded(space, located + self._vectors)

        action_space = env.action_space
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ValueError(f"RelativeFrame needs a vector Box action space, got {action_space}")
        self._action_parts = [s for s in (action_translation, action_rotation) if s is not None]
        for part in self._action_parts:
            low, high = action_space.low[part], action_space.high[part]
            if low.shape != (3,) or not np.allclose(low, -high) or not np.all(np.isfinite(high)):
                raise ValueError(
                    f"action entries {part} must be 3 with finite symmetric bounds, got "
                    f"low={low}, high={high}"
                )
        self._p0, self._q0 = np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0])
        self._r0 = self._rot = np.eye(3)

    def _check_sizes(self) -> None:
        sample = self.env.observation_space.sample()
        for name, part, size in (
            ("position", self._position, 3),
            ("quaternion", self._quaternion, 4),
        ):
            if part is not None and _read(sample, part).shape != (size,):
                raise ValueError(f"{name} {part} must select {size} entries")
        for part in self._vectors:
            n = _read(sample, part).shape[0]
            if n == 0 or n % 3:
                raise ValueError(f"vector part {part} selects {n} entries, not a multiple of 3")

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        pos, quat = self._ee_pose()
        self._p0, self._q0 = pos, quat
        self._r0 = self._rot = quat_to_matrix(quat)
        return self.observation(obs), info

    def step(self, action: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(self.env_action(action))
        if INTERVENE_KEY in info:
            info = {**info, INTERVENE_KEY: self.relative_action(info[INTERVENE_KEY])}
        if self.frame == "current":
            self._rot = quat_to_matrix(self._ee_pose()[1])
        return self.observation(obs), reward, terminated, truncated, info

    # ------------------------------------------------------------------ transforms
    def _ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = self.ee_pose_fn(self.env)
        pos, quat = np.asarray(pos, dtype=np.float64), np.asarray(quat, dtype=np.float64)
        if pos.shape != (3,) or quat.shape != (4,):
            raise ValueError(
                f"ee_pose_fn must return (position (3,), wxyz quaternion (4,)), got shapes "
                f"{pos.shape} and {quat.shape}"
            )
        return pos, _canonical(quat)

    def observation(self, obs: Any) -> Any:
        """`obs` with its parts expressed in the relative frame (a copy; `obs` is untouched)."""
        if not self._touched:
            return obs
        if None in self._touched:
            obs = np.array(obs, copy=True)
        else:
            obs = dict(obs)
            for key in self._touched:
                obs[key] = np.array(obs[key], copy=True)
        if self._position is not None:
            _write(obs, self._position, self._r0.T @ (_read(obs, self._position) - self._p0))
        if self._quaternion is not None:
            quat = _canonical(_read(obs, self._quaternion).astype(np.float64))
            relative = _canonical(quat_multiply(quat_conjugate(self._q0), quat))
            _write(obs, self._quaternion, relative)
        for part in self._vectors:
            vec = _read(obs, part).astype(np.float64).reshape(-1, 3)
            _write(obs, part, (vec @ self._rot).reshape(-1))  # rows v^T R = (R^T v)^T
        return obs

    def env_action(self, action: np.ndarray) -> np.ndarray:
        """An action in the relative frame -> the same action in the env's frame."""
        action = np.array(action, dtype=self.env.action_space.dtype, copy=True).reshape(-1)
        high = self.env.action_space.high
        for part in self._action_parts:
            moved = self._rot @ action[part]
            excess = float(np.max(np.abs(moved) / high[part]))
            action[part] = moved / excess if excess > 1.0 else moved
        return action

    def relative_action(self, action: np.ndarray) -> np.ndarray:
        """An action in the env's frame -> the same action in the relative frame."""
        action = np.array(action, dtype=self.env.action_space.dtype, copy=True).reshape(-1)
        for part in self._action_parts:
            action[part] = self._rot.T @ action[part]
        return action


def _call_ee_pose(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    return env.unwrapped.ee_pose()  # type: ignore[attr-defined]


def _read(obs: Any, part: tuple[str | None, slice]) -> np.ndarray:
    key, index = part
    return np.asarray(obs if key is None else obs[key])[index]


def _write(obs: Any, part: tuple[str | None, slice], value: np.ndarray) -> None:
    key, index = part
    (obs if key is None else obs[key])[index] = value


# ---------------------------------------------------------------------------- repeat, chunks
def _run_actions(env: gym.Env, actions: Iterable[np.ndarray], gamma: float = 1.0) -> StepResult:
    """Step `env` with each action in turn until one ends the episode; rewards summed with
    discount `gamma` per step; the last step's info plus ``"env_steps"`` (steps taken)."""
    total, discount, steps = 0.0, 1.0, 0
    obs, terminated, truncated, info = None, False, False, {}
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        total += discount * float(reward)
        discount *= gamma
        steps += 1
        if terminated or truncated:
            break
    return obs, total, terminated, truncated, {**info, "env_steps": steps}


class ActionRepeat(gym.Wrapper):
    """Each action is executed `repeat` times (frame skip); rewards are summed and an episode
    end stops the repetition early. ``info["env_steps"]`` counts the inner steps taken."""

    def __init__(self, env: gym.Env, repeat: int) -> None:
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"repeat={repeat} must be >= 1")
        self.repeat = repeat

    def step(self, action: np.ndarray) -> StepResult:
        return _run_actions(self.env, (action for _ in range(self.repeat)))


class ActionChunking(gym.Wrapper):
    """The policy outputs `chunk` actions at once, flattened to one vector of ``chunk * d``.

    They are executed in order; the rewards are summed (each discounted by `gamma` per inner
    step, ``gamma=1`` a plain sum; action-chunked critics such as Q-chunking, Li et al. 2025,
    use the discounted sum) and a termination or truncation stops the chunk early.
    ``info["env_steps"]`` counts the inner steps taken. The action space is the env's Box tiled
    `chunk` times.
    """

    def __init__(self, env: gym.Env, chunk: int, gamma: float = 1.0) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"ActionChunking needs a vector Box action space, got {space}")
        if chunk < 1:
            raise ValueError(f"chunk={chunk} must be >= 1")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma={gamma} must be in (0, 1]")
        self.chunk, self.gamma, self._dim = chunk, gamma, space.shape[0]
        self.action_space = gym.spaces.Box(
            np.tile(space.low, chunk), np.tile(space.high, chunk), dtype=space.dtype
        )

    def step(self, action: np.ndarray) -> StepResult:
        actions = np.asarray(action).reshape(self.chunk, self._dim)
        return _run_actions(self.env, actions, self.gamma)


# ---------------------------------------------------------------------------- gripper penalty
class GripperPenalty(gym.Wrapper):
    """Penalise each change of the binary gripper command, as SERL's GripperPenaltyWrapper.

    Action entry `index` is read as a binary command: closed above `threshold`, open below
    ``-threshold``, unchanged in between. A step whose command differs from the one in force
    pays `penalty`: ``info["grasp_penalty"]`` is ``-penalty`` (0.0 otherwise) and, with
    `add_to_reward`, the reward is lowered by it (HIL-SERL keeps it apart for its gripper
    critic: pass ``add_to_reward=False`` and read the info). The command in force at reset is
    `initially_closed` (False: the sim tasks and robosuite reset with the gripper open). A
    human override in ``info["intervene_action"]`` is the command that counts.
    """

    def __init__(
        self,
        env: gym.Env,
        penalty: float = 0.1,
        *,
        index: int = -1,
        threshold: float = 0.5,
        initially_closed: bool = False,
        add_to_reward: bool = True,
    ) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"GripperPenalty needs a vector Box action space, got {space}")
        if not -space.shape[0] <= index < space.shape[0]:
            raise ValueError(f"gripper index {index} is outside actions of size {space.shape[0]}")
        if penalty < 0 or threshold < 0:
            raise ValueError(f"penalty={penalty} and threshold={threshold} must be >= 0")
        self.penalty, self.index, self.threshold = float(penalty), index, float(threshold)
        self.initially_closed, self.add_to_reward = initially_closed, add_to_reward
        self.closed = initially_closed

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self.closed = self.initially_closed
        return self.env.reset(seed=seed, options=options)

    def step(self, action: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        executed = np.asarray(info.get(INTERVENE_KEY, action)).reshape(-1)
        command = float(executed[self.index])
        closed = self.closed
        if command > self.threshold:
            closed = True
        elif command < -self.threshold:
            closed = False
        penalty = self.penalty if closed != self.closed else 0.0
        self.closed = closed
        if self.add_to_reward:
            reward = float(reward) - penalty
        return obs, reward, terminated, truncated, {**info, "grasp_penalty": -penalty}


# ---------------------------------------------------------------------------- images
def image_keys(space: gym.Space) -> list[str]:
    """Keys of a Dict space whose entries are uint8 images (..., H, W, C)."""
    if not isinstance(space, gym.spaces.Dict):
        return []
    return [
        k
        for k, s in space.spaces.items()
        if isinstance(s, gym.spaces.Box) and s.dtype == np.uint8 and len(s.shape) >= 3
    ]


def _image_keys(space: gym.Space, keys: Sequence[str] | None, wrapper: str) -> list[str]:
    if not isinstance(space, gym.spaces.Dict):
        raise ValueError(f"{wrapper} needs Dict observations, got {space}")
    found = image_keys(space)
    if keys is None:
        if not found:
            raise ValueError(f"{wrapper}: no uint8 image entries in {space}")
        return found
    missing = [k for k in keys if k not in found]
    if missing:
        raise ValueError(f"{wrapper}: {missing} are not uint8 image entries; images: {found}")
    return list(keys)


def resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) float32 weights of a 1-D linear resampling.

    A triangle filter centred on each output pixel, widened by the shrink factor when shrinking
    (antialiasing), with weights normalised to sum to 1: the "bilinear" filter of Pillow's
    `Image.resize` and of ``torch.nn.functional.interpolate(..., antialias=True)``.
    """
    scale = in_size / out_size
    support = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    pixels = np.arange(in_size) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(pixels[None, :] - centres[:, None]) / support)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 images (..., H, W, C) to (..., height, width, C); see `resample_matrix`."""
    *lead, h, w, c = image.shape
    if (h, w) == (height, width):
        return image
    rows, cols = resample_matrix(h, height), resample_matrix(w, width)
    out = np.matmul(rows, image.reshape(*lead, h, w * c).astype(np.float32))
    out = np.matmul(cols, out.reshape(*lead, height, w, c))  # (width, w) @ (w, c) per row
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class CropResize(gym.ObservationWrapper):
    """Crop, then resize, the uint8 images of a Dict observation; other entries pass through.

    `crops` maps an image key to its box ``(top, left, height, width)`` in pixels (keys left out
    are not cropped); `size` (an int or (height, width)) is the size every image in `keys`
    (default: all uint8 images) is resized to after cropping, None to keep the cropped size.
    Resizing is the antialiased bilinear filter of `resize_image` (plain NumPy). Images are
    (H, W, C) or have leading axes (a frame stack) that are kept.
    """

    def __init__(
        self,
        env: gym.Env,
        size: int | tuple[int, int] | None = None,
        *,
        crops: Mapping[str, tuple[int, int, int, int]] | None = None,
        keys: Sequence[str] | None = None,
    ) -> None:
        super().__init__(env)
        crops = dict(crops or {})
        if size is None and not crops:
            raise ValueError("CropResize needs a size, crop boxes, or both")
        self.keys = _image_keys(env.observation_space, keys, "CropResize")
        unknown = [k for k in crops if k not in self.keys]
        if unknown:
            raise ValueError(f"crop boxes for {unknown}, which are not among images {self.keys}")
        spaces = dict(env.observation_space.spaces)  # type: ignore[attr-defined]
        self._crops: dict[str, tuple[slice, slice]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        for key in self.keys:
            shape = spaces[key].shape
            *lead, h, w, c = shape
            if key in crops:
                top, left, height, width = (int(v) for v in crops[key])
                inside = 0 <= top and 0 <= left and top + height <= h and left + width <= w
                if height < 1 or width < 1 or not inside:
                    raise ValueError(
                        f"crop box {crops[key]} (top, left, height, width) of {key!r} is not "
                        f"inside its {h}x{w} image"
                    )
                self._crops[key] = (slice(top, top + height), slice(left, left + width))
                h, w = height, width
            self._sizes[key] = _hw(size) if size is not None else (h, w)
            out_h, out_w = self._sizes[key]
            if out_h < 1 or out_w < 1:
                raise ValueError(f"size {size} must be positive")
            spaces[key] = gym.spaces.Box(0, 255, (*lead, out_h, out_w, c), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        obs = dict(observation)
        for key in self.keys:
            image = np.asarray(obs[key])
            if key in self._crops:
                rows, cols = self._crops[key]
                image = image[..., rows, cols, :]
            obs[key] = np.ascontiguousarray(resize_image(image, *self._sizes[key]))
        return obs


class FrameStack(gym.Wrapper):
    """Stack the last `num_frames` frames of each image entry of a Dict observation.

    Each stacked entry (default: every uint8 image, or `keys`) becomes (S, H, W, C), oldest
    first; the other entries pass through unstacked (unlike gymnasium's FrameStackObservation,
    which stacks every entry). At reset the stack is filled with the first frame.
    """

    def __init__(self, env: gym.Env, num_frames: int, *, keys: Sequence[str] | None = None):
        super().__init__(env)
        if num_frames < 1:
            raise ValueError(f"num_frames={num_frames} must be >= 1")
        self.num_frames = num_frames
        self.keys = _image_keys(env.observation_space, keys, "FrameStack")
        spaces = dict(env.observation_space.spaces)  # type: ignore[attr-defined]
        for key in self.keys:
            box = spaces[key]
            spaces[key] = gym.spaces.Box(
                np.repeat(box.low[None], num_frames, axis=0),
                np.repeat(box.high[None], num_frames, axis=0),
                dtype=box.dtype,  # type: ignore[arg-type]
            )
        self.observation_space = gym.spaces.Dict(spaces)
        self._frames: dict[str, deque[np.ndarray]] = {}

    def _stacked(self, obs: dict[str, Any]) -> dict[str, Any]:
        obs = dict(obs)
        for key in self.keys:
            obs[key] = np.stack(self._frames[key])
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._frames = {
            k: deque([np.array(obs[k])] * self.num_frames, maxlen=self.num_frames)
            for k in self.keys
        }
        return self._stacked(obs), info

    def step(self, action: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(action)
        for key in self.keys:
            self._frames[key].append(np.array(obs[key]))  # a copy: envs may reuse buffers
        return self._stacked(obs), reward, terminated, truncated, info
