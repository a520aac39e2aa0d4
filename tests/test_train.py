"""`serl train`: learner and actors as processes, the final evaluation, a clean stop."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from serl.checkpoint import read_checkpoint
from serl.cli import main
from serl.metrics import read_metrics
from serl.processes import StopSignal
from serl.rewards.config import ClassifierRewardConfig
from serl.train import TrainConfig, TrainResult, child_configs, train
from tests.learner_procs import TINY, latest, wait_until


def live_children() -> list[int]:
    """Processes whose parent is this one (zombies excluded)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.timeout(150)
def test_train_runs_a_learner_and_two_actors_then_prints_the_evaluation_and_paths(
    tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    code = main([
        "train", "--steps", "800", "--random-steps", "100", "--min-buffer", "100",
        "--agent-cfg.hidden-dims", "16", "--agent-cfg.batch-size", "16", "--eval-every", "1",
        "--eval-episodes", "2", "--run-dir", str(run), "--no-progress",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "final evaluation of the checkpoint's policy on Pendulum-v1 (2 episodes): return" in out
    assert "success" not in out  # Pendulum reports no success: no "success rate 0%"
    for line in (f"checkpoint: {run}/checkpoint.safetensors", f"curve:      {run}/curve.png"):
        assert line in out
    header, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert header["metadata"]["counters"]["env_steps"] == 800
    assert header["metadata"]["counters"]["updates"] == 700
    assert (run / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = read_metrics(run / "metrics.jsonl")
    assert records[-1].get("eval/final") == 1.0
    assert any(r.get("eval/episodes") for r in records[:-1])  # the actors' eval episodes
    assert not any("eval/success_rate" in r or "train/success_rate" in r for r in records)
    assert sorted(p.name for p in (run / "logs").iterdir()) == [
        "actor-0.log",
        "actor-1.log",
        "learner.log",
    ]
    assert live_children() == []


@pytest.mark.timeout(30)
def test_prior_data_in_sim_collect_npz_is_refused_with_the_converter_before_any_process(
    tmp_path: Path, capsys
) -> None:
    np.savez(tmp_path / "peg.npz", action=np.zeros((2, 3), np.float32))
    run = tmp_path / "run"
    code = main(["train", "--prior-data", str(tmp_path / "peg.npz"), "--run-dir", str(run)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"python -m serl.data.importers npz {tmp_path}/peg.npz {tmp_path}/peg" in err
    assert not run.exists() and not live_children()  # nothing started, nothing written


def test_the_success_key_reaches_every_actor():
    cfg = TrainConfig(env="gym_hil/PandaPickCubeBase-v0", success_key="succeed", actors=2)
    _, actors = child_configs(cfg, Path("run"), (5555, 5556))
    assert [a.success_key for a in actors] == ["succeed", "succeed"]


@pytest.mark.timeout(120)
def test_a_stop_request_stops_the_actors_then_the_learner_which_checkpoints(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    cfg = TrainConfig(
        agent_cfg=TINY,
        actors=1,
        steps=1_000_000,
        random_steps=100,
        min_buffer=100,
        control_hz=200.0,
        log_every_s=0.3,
        run_dir=run,
        progress=False,
    )
    stop = StopSignal()
    results: list[TrainResult] = []
    thread = threading.Thread(target=lambda: results.append(train(cfg, stop=stop)))
    thread.start()
    try:
        wait_until(lambda: latest(run, "learner/updates") > 10, 90, "the run to train")
    finally:
        stop.request()
        thread.join(90)
    assert results and results[0].interrupted and results[0].final_eval is None
    header, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert header["metadata"]["counters"]["updates"] > 10
    assert "received SIGTERM" in (run / "logs" / "learner.log").read_text()
    assert live_children() == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_with_two_actors_learns_pendulum_above_threshold(tmp_path: Path) -> None:
    """Default `serl train`: SAC, 1 learner + 2 actors, 6k env steps; return >= -400."""
    result = train(TrainConfig(run_dir=tmp_path / "run", progress=False))
    assert result.final_eval is not None
    assert result.final_eval["eval/return_mean"] >= -400
    assert live_children() == []


def test_a_reward_classifier_reaches_every_actor_and_a_corrupt_one_stops_before_any_process(
    tmp_path: Path, capsys
) -> None:
    reward = ClassifierRewardConfig(checkpoint=tmp_path / "classifier.safetensors")
    _, actors = child_configs(TrainConfig(reward=reward, actors=2), tmp_path, (5555, 5556))
    assert [a.reward for a in actors] == [reward, reward]
    reward.checkpoint.write_bytes(b"not a checkpoint")
    run = tmp_path / "run"
    code = main(["train", "--reward.checkpoint", str(reward.checkpoint), "--run-dir", str(run)])
    assert code == 1
    assert f"--reward.checkpoint: {reward.checkpoint}" in capsys.readouterr().err
    assert not run.exists() and not live_children()
