"""Record teleoperated episodes with success marks into a dataset, one crash-safe episode at a time.

Each control step the device is read with the current observation and its action (mapped by
`to_env_action`) is executed: while recording, the human always drives, so the device's
`intervening` flag is not consulted. An episode ends when the env terminates or truncates,
when `max_steps` is reached (stored as truncation), or when the human marks it a success or a
failure (HIL-SERL's recording convention: the mark is the end) or discards it. Its success is

* ``success_from="device"``: the human's mark (no mark: failure);
* ``success_from="env"``: the env's ``info["success"]`` at the last step;
* ``success_from="auto"`` (default): the human's mark when given, else the env's.

A person recording (`record_dataset` given a `LiveView`) is not a script, and three rules
keep their dataset clean:

* before each episode the recording waits for the device's start key (the env is not even
  reset before it: a real arm moves to its reset pose only when the person is ready);
* an episode is saved only when the person marked it, success or failure; one the env ended
  unmarked (a time limit, a reach task's goal) is offered for a mark, and anything but a mark
  discards it;
* an idle episode, whose commands never moved an axis or changed the gripper, is discarded
  whatever its mark (nobody demonstrated anything).

Every discard is said on the view, and `episodes` counts saved episodes only. A script
(`--device expert`) is recorded as before: no waiting, every finished episode kept.

Every finished episode goes to disk at once through `append_episode` (temp file +
``os.replace``, with Ctrl-C and SIGTERM held until it is written), so interrupting the
recording (Ctrl-C, a crash, ``kill -9``) loses at most the episode in progress. A quit
command discards the episode in progress and stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from serl.teleop.device import TWIST_GRIPPER_DIM, TeleopCommand, TeleopDevice, to_env_action
from serl.teleop.live_view import LiveView, status_line

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
    """Episodes not kept (failures with `successes_only`; a person's unmarked, discarded or
    idle ones) plus a quit one."""
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


WAIT_POLL_S = 0.05
"""How often a waiting recording reads the device (a key press is seen within 50 ms)."""


@dataclass
class Take:
    """One recorded episode and how the person ended it."""

    episode: Episode | None
    """None when the person quit during it."""
    mark: bool | None
    """The person's mark: True success, False failure, None none."""
    discarded: bool
    """The person pressed the discard key."""
    idle: bool
    """No command moved an axis or changed the gripper."""


def _idle(commands: list[np.ndarray]) -> bool:
    """Whether device commands never moved anything: all equal to the first, which moves no
    axis (a 7-vector's gripper entry is a state, so only its change counts)."""
    rows = np.stack([np.asarray(c, np.float32).reshape(-1) for c in commands])
    motion = rows[0, : TWIST_GRIPPER_DIM - 1] if rows.shape[1] == TWIST_GRIPPER_DIM else rows[0]
    return bool(np.all(rows == rows[0]) and not np.any(motion))


def _read(device: TeleopDevice, keys: TeleopDevice, obs: Any) -> TeleopCommand:
    """`device`'s command with the episode keys (start, marks, discard, quit) of `keys`."""
    command = device.read(obs)
    if keys is device:
        return command
    extra = keys.read(obs)
    return dataclasses.replace(
        command,
        success=extra.success if extra.success is not None else command.success,
        quit=command.quit or extra.quit,
        start=command.start or extra.start,
        discard=command.discard or extra.discard,
    )


def _key(keys: TeleopDevice, what: str) -> str:
    return keys.episode_keys.get(what, what)


def wait_for_key(keys: TeleopDevice, wanted: Callable[[TeleopCommand], bool]) -> TeleopCommand:
    """Read `keys` every WAIT_POLL_S until a command is `wanted` or says quit; return it."""
    while True:
        command = keys.read(None)
        if command.quit or wanted(command):
            return command
        time.sleep(WAIT_POLL_S)


def record_episode(
    env: gym.Env,
    device: TeleopDevice,
    *,
    seed: int | None = None,
    success_from: SuccessSource = "auto",
    control_hz: float = 0.0,
    max_steps: int | None = None,
    view: LiveView | None = None,
    keys: TeleopDevice | None = None,
    label: str = "",
) -> Take:
    """One teleoperated episode; `view` shows it (status prefixed with `label`), `keys` gives
    the episode keys when another device than `device` does (a SpaceMouse has none)."""
    keys = device if keys is None else keys
    space = env.action_space
    action_dim = int(np.prod(space.shape))
    obs, info = env.reset(seed=seed)
    device.reset()
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    commands: list[np.ndarray] = []
    env_success = [bool(episode_success(info))]
    mark: bool | None = None
    render = env.render if getattr(env, "render_mode", None) == "rgb_array" else None
    if view is not None:  # the start state, before the first step
        view.show(obs, status_line(label, 0, 0.0, info, mark), render)
    period = 1.0 / control_hz if control_hz > 0 else 0.0
    tick = time.monotonic()
    while True:
        command = _read(device, keys, obs)
        if command.quit:
            return Take(None, mark, False, False)
        action = to_env_action(command.action, action_dim).astype(space.dtype)
        if period:
            tick += period
            time.sleep(max(0.0, tick - time.monotonic()))
        obs, reward, terminated, truncated, info = env.step(action.reshape(space.shape))
        observations.append(obs)
        actions.append(action)
        commands.append(command.action)
        rewards.append(float(reward))
        mark = command.success if command.success is not None else mark
        truncated = bool(truncated) or (max_steps is not None and len(actions) >= max_steps)
        terms.append(bool(terminated))
        truncs.append(truncated)
        env_success.append(bool(episode_success(info)))
        if view is not None:
            view.show(obs, status_line(label, len(actions), float(reward), info, mark), render)
        if terminated or truncated or mark is not None or command.discard:
            break
    episode = Episode(
        observations=_stack(observations),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool),
        success=_success(success_from, mark, env_success[-1]),
        source="demo",
        seed=seed,
        infos={"success": np.asarray(env_success, dtype=bool)},
    )
    return Take(episode, mark, command.discard, _idle(commands))


def _success(success_from: SuccessSource, mark: bool | None, env_success: bool) -> bool:
    if success_from == "device":
        return bool(mark)
    if success_from == "env":
        return env_success
    return mark if mark is not None else env_success


def _marked(
    take: Take, episode: Episode, keys: TeleopDevice, view: LiveView, label: str
) -> tuple[bool | None, bool]:
    """A person's mark of a finished `episode` as (mark, quit), asking for one when the env
    ended it unmarked; None when it is to be discarded (said on `view`: module doc)."""
    steps = f"{label}: {len(episode)} steps"
    if take.discarded:
        view.say(f"{steps}, discarded ({_key(keys, 'discard')} pressed); not saved")
        return None, False
    if take.idle:
        view.say(f"{steps}, discarded: no command moved the arm or the gripper; not saved")
        return None, False
    if take.mark is not None:
        return take.mark, False
    env_flag = "succeeded" if episode.infos["success"][-1] else "did not succeed"
    view.say(
        f"{steps}, ended by the env unmarked (the env says it {env_flag}): "
        f"{_key(keys, 'success')} keeps it as a success, {_key(keys, 'failure')} as a "
        f"failure, {_key(keys, 'discard')} discards it"
    )
    answer = wait_for_key(keys, lambda c: c.success is not None or c.discard)
    if answer.quit or answer.discard:
        view.say(f"{steps}, discarded; not saved")
        return None, answer.quit
    return answer.success, False


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
    view: LiveView | None = None,
    keys: TeleopDevice | None = None,
) -> RecordResult:
    """Record until `episodes` are saved to `out` (appending) or the human quits.

    Episode ``i`` of this session is reset with seed ``seed + i``. `on_episode(episode, kept)`
    runs after each finished episode (progress bars). A `view` means a person records: they
    see the episodes there and its rules apply (module doc); `keys` is the device whose episode
    keys they press (default: `device`).
    """
    recover_dataset(out)
    keys = device if keys is None else keys
    result = RecordResult(0, 0, 0, False)
    attempt = 0
    while result.saved < episodes:
        label = f"episode {result.saved + 1}/{episodes}"
        if view is not None:
            view.say(f"{label}: press {_key(keys, 'start')} to start, {_key(keys, 'quit')} quits")
            if wait_for_key(keys, lambda c: c.start).quit:
                result.quit = True
                break
        take = record_episode(
            env, device, seed=seed + attempt, success_from=success_from,
            control_hz=control_hz, max_steps=max_steps, view=view, keys=keys, label=label,
        )  # fmt: skip
        attempt += 1
        episode = take.episode
        if episode is None:
            result.quit = True
            result.discarded += 1
            break
        if view is not None:
            mark, result.quit = _marked(take, episode, keys, view, label)
            if mark is None:
                result.discarded += 1
                if result.quit:
                    break
                continue
            env_success = bool(episode.infos["success"][-1])
            episode = dataclasses.replace(
                episode, success=_success(success_from, mark, env_success)
            )
        kept = episode.success or not successes_only
        if kept:
            with _signals_deferred():
                append_episode(out, episode, metadata)
            result.saved += 1
            result.successes += episode.success
        else:
            result.discarded += 1
        if view is not None:
            verdict = "success" if episode.success else "failure"
            view.say(
                f"{label}: {len(episode)} steps, "
                + (f"saved as a {verdict}" if kept else "a failure, not saved (--successes-only)")
            )
        if on_episode is not None:
            on_episode(episode, kept)
    return result
