"""Record teleoperated episodes with success marks into a dataset, one crash-safe episode at a time.

Each control step the device is read with the current observation and its action (mapped by
`to_env_action`) is executed: while recording, the human always drives, so the device's
`intervening` flag is not consulted. An episode ends when the env terminates or truncates,
when `max_steps` is reached (stored as truncation), or when the human marks it a success or a
failure (HIL-SERL's recording convention: the mark is the end). Its success is

* ``success_from="device"``: the human's mark (no mark: failure);
* ``success_from="env"``: the env's ``info["success"]`` at the last step;
* ``success_from="auto"`` (default): the human's mark when given, else the env's.

Every finished episode goes to disk at once through `append_episode` (temp file +
``os.replace``, with Ctrl-C and SIGTERM held until it is written), so interrupting the
recording (Ctrl-C, a crash, ``kill -9``) loses at most the episode in progress. A quit
command discards the episode in progress and stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from serl.data.datasets import Episode, append_episode, recover_dataset
from serl.envs import episode_success
from serl.teleop.device import TeleopDevice, to_env_action

logger = logging.getLogger(__name__)

SuccessSource = Literal["auto", "device", "env"]


@dataclass
class RecordResult:
    """What a recording session did."""

    saved: int
    """Episodes written to the dataset."""
    successes: int
    """Of those, the successful ones."""
    discarded: int
    """Finished episodes not kept (failures with `successes_only`) plus a quit one."""
    quit: bool
    """The human asked to stop."""


def _stack(rows: list[Any]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(rows[0], dict):
        return {key: np.stack([np.asarray(r[key]) for r in rows]) for key in rows[0]}
    return np.stack([np.asarray(r) for r in rows])


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while a finished episode is written (delivered right after).

    Python-level handlers, not a signal mask: a mask on the main thread does not hold a
    signal the kernel delivers to another thread (tqdm's monitor, BLAS workers), and Python
    then runs the handler in the main thread at once, in the middle of the write.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda number, _frame: caught.append(number))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if caught:
            signal.raise_signal(caught[0])  # the held signal, under the restored handler


def record_episode(
    env: gym.Env,
    device: TeleopDevice,
    *,
    seed: int | None = None,
    success_from: SuccessSource = "auto",
    control_hz: float = 0.0,
    max_steps: int | None = None,
) -> Episode | None:
    """One teleoperated episode, or None when the human quit during it."""
    space = env.action_space
    action_dim = int(np.prod(space.shape))
    obs, info = env.reset(seed=seed)
    device.reset()
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    env_success = [bool(episode_success(info))]
    mark: bool | None = None
    period = 1.0 / control_hz if control_hz > 0 else 0.0
    tick = time.monotonic()
    while True:
        command = device.read(obs)
        if command.quit:
            return None
        action = to_env_action(command.action, action_dim).astype(space.dtype)
        if period:
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
        obs, reward, terminated, truncated, info = env.step(action.reshape(space.shape))
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        mark = command.success if command.success is not None else mark
        truncated = bool(truncated) or (max_steps is not None and len(actions) >= max_steps)
        terms.append(bool(terminated))
        truncs.append(truncated)
        env_success.append(bool(episode_success(info)))
        if terminated or truncated or mark is not None:
            break
    if success_from == "device":
        success = bool(mark)
    elif success_from == "env":
        success = env_success[-1]
    else:
        success = mark if mark is not None else env_success[-1]
    return Episode(
        observations=_stack(observations),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool),
        success=bool(success),
        source="demo",
        seed=seed,
        infos={"success": np.asarray(env_success, dtype=bool)},
    )


def record_dataset(
    env: gym.Env,
    device: TeleopDevice,
    out: str | os.PathLike[str],
    episodes: int,
    *,
    seed: int = 0,
    success_from: SuccessSource = "auto",
    successes_only: bool = False,
    control_hz: float = 0.0,
    max_steps: int | None = None,
    metadata: dict[str, Any] | None = None,
    on_episode: Callable[[Episode, bool], None] | None = None,
) -> RecordResult:
    """Record until `episodes` are saved to `out` (appending) or the human quits.

    Episode ``i`` of this session is reset with seed ``seed + i``. `on_episode(episode, kept)`
    runs after each finished episode (progress bars).
    """
    recover_dataset(out)
    result = RecordResult(0, 0, 0, False)
    attempt = 0
    while result.saved < episodes:
        episode = record_episode(
            env, device, seed=seed + attempt, success_from=success_from,
            control_hz=control_hz, max_steps=max_steps,
        )  # fmt: skip
        attempt += 1
        if episode is None:
            result.quit = True
            result.discarded += 1
            break
        kept = episode.success or not successes_only
        if kept:
            with _signals_deferred():
                append_episode(out, episode, metadata)
            result.saved += 1
            result.successes += episode.success
        else:
            result.discarded += 1
        if on_episode is not None:
            on_episode(episode, kept)
    return result
