"""Recording labelled frames from an env: `serl record-rewards`.

At every step (and after each reset) the frames of the classifier's views are read from the
observation, resized, and labelled by a *label source*: any callable ``label(info) -> bool``.
Two are provided: `info_success` (the env's own ``info["success"]``, the ground truth of a
simulated task) and `TerminalKeys`, which reads the terminal without an X server (cbreak mode +
`select` on stdin): a step is a success when the success key was pressed since the previous
step, so holding the key down marks a run of frames.
"""

from __future__ import annotations

import logging
import select
import sys
import termios
import tty
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from serl.envs import episode_success
from serl.rewards.dataset import FrameSet, resize_frames

logger = logging.getLogger(__name__)

RENDER_VIEW = "render"
"""The view name that takes `env.render()` instead of an observation key."""

LabelSource = Callable[[dict[str, Any]], bool]
Policy = Callable[[Any], np.ndarray]


def read_frames(env: gym.Env, obs: Any, views: tuple[str, ...], size: int) -> dict[str, np.ndarray]:
    """{view: (1, size, size, 3) uint8} from the observation (or `env.render()` for "render")."""
    frames = {}
    for view in views:
        if isinstance(obs, dict) and view in obs:
            frame = obs[view]
        elif view == RENDER_VIEW:
            frame = env.render()
            if frame is None:
                raise ValueError(
                    "view 'render' needs an env made with render_mode='rgb_array'; "
                    f"{env} returned no frame"
                )
        else:
            have = sorted(obs) if isinstance(obs, dict) else "a flat vector"
            raise ValueError(
                f"view {view!r} is not in the observation (it has {have}); use an image key "
                f"of the observation or {RENDER_VIEW!r}"
            )
        frames[view] = resize_frames(np.asarray(frame, np.uint8)[None], size)
    return frames


def info_success(info: dict[str, Any]) -> bool:
    """Ground-truth label of a simulated task: ``info["success"]`` (False when absent)."""
    return bool(episode_success(info))


class TerminalKeys:
    """Success key from the terminal (no X server): ``with TerminalKeys() as keys: keys(info)``."""

    def __init__(self, key: str = " ", stream: Any = None) -> None:
        self.key = key
        self.stream = stream or sys.stdin
        self._saved: list[Any] | None = None

    def __enter__(self) -> TerminalKeys:
        if not self.stream.isatty():
            raise RuntimeError("labelling by key needs an interactive terminal on stdin")
        self._saved = termios.tcgetattr(self.stream.fileno())
        tty.setcbreak(self.stream.fileno())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)

    def __call__(self, info: dict[str, Any]) -> bool:
        pressed = ""
        while select.select([self.stream], [], [], 0.0)[0]:
            char = self.stream.read(1)
            if not char:
                break
            pressed += char
        return self.key in pressed


def record(
    env: gym.Env,
    act: Policy,
    label: LabelSource,
    *,
    episodes: int,
    views: tuple[str, ...],
    size: int,
    seed: int = 0,
    hold_success: int = 0,
    progress: bool = False,
) -> FrameSet:
    """Run `episodes` seeded episodes with `act`, labelling every frame with `label`; an `act`
    with a ``reset()`` method (a scripted expert's episode phase) is reset after each reset.

    An episode that terminates on a positive frame ends at its first success, so it holds one
    positive frame; `hold_success` steps past it keep acting and labelling (as a person holds
    the success key while the arm stays there), which gives a classifier the success state
    from more than one instant (cut short by truncation or a negative frame)."""
    frames: dict[str, list[np.ndarray]] = {v: [] for v in views}
    labels, episode_ids = [], []
    for episode in tqdm(range(episodes), disable=not progress, unit="episode"):
        obs, info = env.reset(seed=seed + episode)
        if (reset := getattr(act, "reset", None)) is not None:
            reset()
        terminated = truncated = False
        held = 0  # steps recorded past the success that ended the episode
        while True:
            for view, frame in read_frames(env, obs, views, size).items():
                frames[view].append(frame)
            labels.append(positive := label(info))
            episode_ids.append(episode)
            if terminated or truncated:
                if truncated or not positive or held >= hold_success:
                    break
                held += 1  # ended on success: keep acting there, labelling each frame
            obs, _, ended, truncated, info = env.step(act(obs))
            terminated = terminated or ended
    return FrameSet(
        {v: np.concatenate(f) for v, f in frames.items()},
        np.array(labels, bool),
        np.array(episode_ids, np.int64),
    )
