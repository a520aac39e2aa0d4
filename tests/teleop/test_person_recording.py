"""A person recording at the terminal keyboard (keys through a pipe, the MuJoCo reach task):
each episode waits for ENTER, and only the episodes they mark are saved."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import gymnasium as gym
import pytest

from serl.data.datasets import load_dataset
from serl.envs import make_env
from serl.teleop.keyboard import KeyboardDevice, keymap
from serl.teleop.live_view import LiveView
from serl.teleop.recorder import record_dataset

pytestmark = pytest.mark.timeout(60)


class Person(io.StringIO):
    """The recording's terminal: it answers each message containing `cue` with the next of
    its `answers` (bytes typed into the keyboard pipe), after `delay_s`."""

    def __init__(self, fd: int, answers: dict[str, list[bytes]], delay_s: float = 0.0) -> None:
        super().__init__()
        self.fd, self.answers, self.delay_s = fd, answers, delay_s
        self.typed_at: list[float] = []

    def write(self, text: str) -> int:
        for cue, queue in self.answers.items():
            if cue in text and queue:
                keys = queue.pop(0)
                threading.Timer(self.delay_s, self._type, (keys,)).start()
        return super().write(text)

    def _type(self, keys: bytes) -> None:
        self.typed_at.append(time.monotonic())
        os.write(self.fd, keys)


class KeysAtSteps(gym.Wrapper):
    """Types `script[e][k]` into the keyboard pipe during step k (from 1) of episode e, and
    notes when the env was first reset or stepped."""

    def __init__(self, env: gym.Env, fd: int, script: list[dict[int, bytes]]) -> None:
        super().__init__(env)
        self.fd, self.script = fd, script
        self.episode, self.steps = -1, 0
        self.first_call_at: float | None = None

    def reset(self, **kwargs):
        self.first_call_at = self.first_call_at or time.monotonic()
        self.episode, self.steps = self.episode + 1, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        keys = self.script[self.episode].get(self.steps)
        if keys:
            os.write(self.fd, keys)
        return self.env.step(action)


@pytest.fixture
def keyboard():
    read_fd, write_fd = os.pipe()
    with KeyboardDevice(read_fd) as device:
        yield device, write_fd
    os.close(read_fd)
    os.close(write_fd)


@pytest.fixture
def reach():
    pytest.importorskip("mujoco")
    env = make_env("sim:PandaReach-v0")
    yield env
    env.close()


def test_only_marked_episodes_with_motion_are_saved_and_n_counts_them(
    tmp_path: Path, keyboard, reach
) -> None:
    device, fd = keyboard
    script = [
        {},  # idle: nobody pressed a key before the time limit
        {1: b"w"},  # moved, ended by the time limit unmarked, then discarded (x)
        {1: b"w", 3: b"y"},  # moved and marked a success: ends at once, saved
        {1: b"a"},  # moved, ended by the time limit, then kept as a failure (n)
    ]
    env = KeysAtSteps(reach, fd, script)
    person = Person(fd, {"to start": [b"\n"] * 4, "unmarked": [b"x", b"n"]})
    result = record_dataset(
        env, device, tmp_path, 2, max_steps=6, view=LiveView(tmp_path / "live.png", person),
        keys=device,
    )  # fmt: skip
    assert (result.saved, result.successes, result.discarded, result.quit) == (2, 1, 2, False)
    episodes = load_dataset(tmp_path).episodes
    assert [e.success for e in episodes] == [True, False]
    assert [e.seed for e in episodes] == [2, 3]  # the discarded takes used seeds 0 and 1
    assert [len(e) for e in episodes] == [4, 6]  # y typed at step 3 is read before step 4
    said = person.getvalue()
    assert "episode 1/2: 6 steps, discarded: no command moved the arm or the gripper" in said
    assert "episode 1/2: 6 steps, discarded; not saved" in said
    assert "episode 1/2: 4 steps, saved as a success" in said
    assert "episode 2/2: 6 steps, saved as a failure" in said


def test_no_episode_starts_before_the_start_key(tmp_path: Path, keyboard, reach) -> None:
    device, fd = keyboard
    env = KeysAtSteps(reach, fd, [{1: b"d", 2: b"y"}])
    person = Person(fd, {"to start": [b"\n"]}, delay_s=0.5)
    os.write(fd, b"wwyn")  # keys before the prompt neither start nor mark anything
    result = record_dataset(env, device, tmp_path, 1, view=LiveView(tmp_path / "p.png", person))
    assert result.saved == 1 and len(person.typed_at) == 1
    assert env.first_call_at is not None and env.first_call_at >= person.typed_at[0]
    assert "episode 1/1: press ENTER to start, q quits" in person.getvalue()


def test_q_at_the_start_prompt_quits_without_touching_the_env(
    tmp_path: Path, keyboard, reach
) -> None:
    device, fd = keyboard
    env = KeysAtSteps(reach, fd, [])
    person = Person(fd, {"to start": [b"q"]})
    result = record_dataset(env, device, tmp_path, 3, view=LiveView(tmp_path / "p.png", person))
    assert (result.saved, result.quit) == (0, True)
    assert env.first_call_at is None and not (tmp_path / "data").exists()


def test_the_keymap_of_a_reach_task_has_no_gripper_keys() -> None:
    assert {"c", "v"}.isdisjoint(keymap(3)) and {"w", "f", "enter", "y", "x"} <= set(keymap(3))
    assert {"c", "v", "u", "l"} <= set(keymap(7)) and " " not in keymap(7)
