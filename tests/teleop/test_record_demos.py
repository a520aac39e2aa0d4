"""`serl record-demos`: scripted devices write datasets that load back identical, and an
interrupted recording (Ctrl-C, kill -9) keeps every finished episode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from serl.cli import main
from serl.data.datasets import Episode, episode_ids, load_dataset
from serl.envs import make_env
from serl.teleop import ScriptedDevice, TeleopCommand
from serl.teleop.recorder import record_dataset
from tests.rewards.untrained import untrained_classifier
from tests.teleop.policies import pendulum_expert

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from serl.cli import main; sys.exit(main())"


def test_recorded_episodes_load_back_identical(tmp_path: Path) -> None:
    env = make_env("Pendulum-v1", max_episode_steps=15)
    device = ScriptedDevice(pendulum_expert(env))
    finished: list[Episode] = []
    result = record_dataset(
        env, device, tmp_path, 3, seed=5, on_episode=lambda e, kept: finished.append(e)
    )
    assert (result.saved, result.quit) == (3, False)
    loaded = load_dataset(tmp_path).episodes
    assert [e.seed for e in loaded] == [5, 6, 7] and [len(e) for e in loaded] == [15] * 3
    for a, b in zip(finished, loaded, strict=True):
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            assert getattr(a, name).dtype == getattr(b, name).dtype
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert b.truncations[-1] and not b.terminations.any() and b.source == "demo"


def test_a_human_success_mark_ends_the_episode_and_sets_its_success(tmp_path: Path) -> None:
    act = TeleopCommand(np.zeros(1, np.float32))
    script = [act, act, TeleopCommand(np.zeros(1, np.float32), success=True), act,
              TeleopCommand(np.zeros(1, np.float32), success=False)]  # fmt: skip
    env = make_env("Pendulum-v1")
    result = record_dataset(env, ScriptedDevice(script), tmp_path, 5)
    episodes = load_dataset(tmp_path).episodes
    assert [len(e) for e in episodes] == [3, 2]
    assert [e.success for e in episodes] == [True, False]
    assert (result.saved, result.successes, result.quit) == (2, 1, True)  # then the script ends


def test_record_demos_command_with_a_policy_expert(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demos"
    args = ["record-demos", "--env", "Pendulum-v1", "--n", "2", "--out", str(out),
            "--device", "expert", "--policy", "tests.teleop.policies:pendulum_expert",
            "--max-steps", "20"]  # fmt: skip
    assert main(args) == 0
    assert main(args) == 0  # appends
    dataset = load_dataset(out)
    assert len(dataset.episodes) == 4 and dataset.total_steps == 80
    assert dataset.metadata["env_id"] == "Pendulum-v1" and dataset.metadata["total_steps"] == 80
    assert "saved 2 episodes" in capsys.readouterr().out


def test_record_demos_finds_the_sim_expert_by_the_env_prefix(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    args = ["record-demos", "--env", "sim:PandaReach-v0", "--n", "2", "--out",
            str(tmp_path), "--device", "expert", "--success-from", "env"]  # fmt: skip
    assert main(args) == 0
    episodes = load_dataset(tmp_path).episodes
    assert [e.success for e in episodes] == [True, True]
    assert all(e.terminations[-1] for e in episodes)


def test_expert_without_a_prefix_or_policy_is_a_clear_error(tmp_path: Path, capsys) -> None:
    args = ["record-demos", "--env", "Pendulum-v1", "--out", str(tmp_path), "--device", "expert"]
    assert main(args) == 2
    assert "pass --policy MODULE:FACTORY" in capsys.readouterr().out


def default_signals() -> None:
    """In the child before exec: Ctrl-C as a shell gives it, whatever this pytest process
    inherited or was left with by an earlier test (an ignored SIGINT is inherited through
    exec, and Python then never installs its KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def start_recording(out: Path, preexec_fn=default_signals) -> subprocess.Popen:
    args = ["record-demos", "--env", "Pendulum-v1", "--n", "1000", "--out", str(out),
            "--device", "expert", "--policy", "tests.teleop.policies:slow_pendulum_expert",
            "--max-steps", "40"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, *args], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn,
    )  # fmt: skip


def wait_for_episodes(out: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while len(episode_ids(out)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the recording did not get going"
        time.sleep(0.02)
    time.sleep(0.07)  # into the next episode (40 steps of 5 ms)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "kill-9"])
def test_an_interrupted_recording_keeps_every_finished_episode(tmp_path: Path, sig) -> None:
    proc = start_recording(tmp_path)
    try:
        wait_for_episodes(tmp_path, 2, proc)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130
    else:
        assert proc.returncode == -signal.SIGKILL
    episodes = load_dataset(tmp_path).episodes
    assert len(episodes) >= 2
    assert [e.seed for e in episodes] == list(range(len(episodes)))
    assert all(len(e) == 40 and e.observations.shape == (41, 3) for e in episodes)


def test_ctrl_c_stops_a_recording_started_with_sigint_blocked(tmp_path: Path) -> None:
    # a launcher's signal mask is inherited; with SIGINT blocked the recording never stopped
    def blocked() -> None:
        default_signals()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    proc = start_recording(tmp_path, preexec_fn=blocked)
    try:
        wait_for_episodes(tmp_path, 1, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130


def test_a_live_view_rate_of_zero_is_a_clear_error(tmp_path: Path, capsys) -> None:
    args = ["record-demos", "--env", "Pendulum-v1", "--out", str(tmp_path), "--live-view-hz", "0"]
    assert main(args) == 2
    assert "--live-view-hz 0.0 must be > 0" in capsys.readouterr().out


@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_with_a_reward_classifier_the_demos_reward_and_end_are_its_decision(
    tmp_path: Path, threshold: float
) -> None:
    """As the actor with the same --reward.checkpoint: the env's reward and termination are
    replaced (threshold 0: every step a success, 1.5: none), the env's success still marks."""
    pytest.importorskip("mujoco")
    classifier = untrained_classifier(tmp_path / "classifier.safetensors", threshold)
    out = tmp_path / "demos"
    args = ["record-demos", "--env", "sim:PandaReachPixels64-v0", "--n", "2", "--out", str(out),
            "--device", "expert", "--max-steps", "12",
            "--reward.checkpoint", str(classifier)]  # fmt: skip
    assert main(args) == 0
    episodes = load_dataset(out).episodes
    if threshold == 0.0:  # the first step is a success: reward 1, the episode ends
        assert [len(e) for e in episodes] == [1, 1]
        assert all(e.rewards.tolist() == [1.0] and e.terminations[-1] for e in episodes)
    else:  # never a success: reward 0 throughout, the time limit ends it
        assert [len(e) for e in episodes] == [12, 12]
        assert all(not e.rewards.any() and not e.terminations.any() for e in episodes)


def test_a_reward_classifier_that_is_not_one_is_named(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "classifier.safetensors"
    junk.write_bytes(b"not a checkpoint")
    args = ["record-demos", "--env", "Pendulum-v1", "--out", str(tmp_path / "demos"),
            "--device", "expert", "--policy", "tests.teleop.policies:pendulum_expert",
            "--reward.checkpoint", str(junk)]  # fmt: skip
    assert main(args) == 2
    assert f"--reward.checkpoint: {junk}" in capsys.readouterr().out
    assert not (tmp_path / "demos").exists()
