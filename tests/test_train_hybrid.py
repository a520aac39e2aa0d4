"""`serl train --agent h2o|moorl|famo2o` with prior data: a short run, then a resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from serl.checkpoint import read_checkpoint
from serl.cli import main
from serl.metrics import read_metrics
from tests.test_learner_prior import demo_dataset

TINY_CFG = {
    "h2o": {
        "hidden_dims": [16],
        "discriminator_hidden_dims": [16],
        "batch_size": 16,
        "critic_rows_per_source": 4,
    },
    "moorl": {"sac": {"hidden_dims": [16], "batch_size": 4}, "inner_steps": 2},
    "famo2o": {"hidden_dims": [16], "batch_size": 16},
}
AGENT_METRIC = {
    "h2o": "h2o/importance_weight_mean",
    "moorl": "moorl/source_offline",
    "famo2o": "famo2o/beta_mean",
}


def train_args(agent: str, tmp_path: Path, steps: int) -> list[str]:
    config = tmp_path / f"{agent}.json"
    config.write_text(json.dumps({"agent_cfg": TINY_CFG[agent]}))
    demos = tmp_path / "demos"
    if not demos.exists():
        demo_dataset(demos, episodes=5, steps=20)
    return [
        "train", "--agent", agent, "--config", str(config), "--steps", str(steps),
        "--random-steps", "50", "--min-buffer", "50", "--actors", "1",
        "--prior-data", str(demos), "--offline-updates", "5", "--eval-episodes", "1",
        "--run-dir", str(tmp_path / "run"), "--no-progress",
    ]  # fmt: skip


@pytest.mark.timeout(150)
@pytest.mark.parametrize("agent", ["h2o", "moorl", "famo2o"])
def test_hybrid_agent_trains_with_prior_data_and_resumes(agent: str, tmp_path: Path) -> None:
    assert main(train_args(agent, tmp_path, 200)) == 0
    run = tmp_path / "run"
    records = read_metrics(run / "metrics.jsonl")
    learned = [r for r in records if AGENT_METRIC[agent] in r]
    assert learned, f"no {AGENT_METRIC[agent]} in {run / 'metrics.jsonl'}"
    for record in learned:
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, float)), record
    first, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert first["metadata"]["counters"]["env_steps"] == 200
    assert first["metadata"]["counters"]["offline_updates"] == 5

    assert main([*train_args(agent, tmp_path, 260), "--resume"]) == 0
    second, _ = read_checkpoint(run / "checkpoint.safetensors")
    counters = second["metadata"]["counters"]
    assert counters["env_steps"] == 260
    assert counters["updates"] > first["metadata"]["counters"]["updates"]
    assert counters["offline_updates"] == 5  # pre-training is not repeated on resume
