"""`serl bench learner|transport|reward|sim --smoke` as a user runs them, checked on their JSON.

Each runs the real benchmark end to end (SB3, the actor processes, the sim and its dm_control
and robosuite peers) at a seconds-long size, so a broken benchmark or an API change in a peer
fails CI. The checks are on what the figures must satisfy whatever the machine's speed: every
key present and finite, ratios equal to the quotient of the figures they come from, counts
equal to what was requested; never a speed threshold.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run_bench(name: str, tmp_path: Path, *flags: str) -> tuple[dict[str, Any], str]:
    """(the --json figures, stdout) of `serl bench NAME --smoke FLAGS`."""
    out = tmp_path / f"{name}.json"
    command = [sys.executable, "-m", "serl.cli", "bench", name, "--smoke", "--json", str(out)]
    result = subprocess.run(
        [*command, *flags], capture_output=True, text=True, timeout=170, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())  # strict JSON: a NaN would be written as null
    assert figures["smoke"] is True and figures["quick"] is False
    return figures, result.stdout


def assert_positive_finite(figures: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        assert isinstance(figures[key], float) and math.isfinite(figures[key]), key
        assert figures[key] > 0, key


@pytest.mark.timeout(180)
def test_learner_smoke_runs_sb3_and_reports_the_ratio_of_its_own_figures(tmp_path: Path) -> None:
    figures, stdout = run_bench("learner", tmp_path, "--threads", "1")
    assert_positive_finite(
        figures,
        ["sac_updates_per_s", "sb3_sac_updates_per_s", "ratio_vs_sb3",
         "rlpd_critic_updates_per_s", "drq_updates_per_s", "drq_64_updates_per_s",
         "image_bytes_per_transition"],
    )  # fmt: skip
    assert figures["ratio_vs_sb3"] == pytest.approx(
        figures["sac_updates_per_s"] / figures["sb3_sac_updates_per_s"], rel=1e-12
    )
    assert figures["drq_batch"] == 16
    # Two 128x128x3 frames per observation, each stored once: next_obs is not a second copy.
    one_obs = 2 * 128 * 128 * 3
    assert 1.0 < figures["image_bytes_ratio_to_one_obs"] <= 1.05
    assert figures["image_bytes_per_transition"] == pytest.approx(
        figures["image_bytes_ratio_to_one_obs"] * one_obs
    )
    assert "ratio_vs_sb3" in stdout and f"wrote {tmp_path / 'learner.json'}" in stdout
    for backbone in ("efficientnet-lite0", "conv"):
        names = [
            f"frozen_{backbone}_{f}"
            for f in ("updates_per_s", "ratio_vs_state", "ms_per_frame", "bytes_per_transition")
        ]
        assert_positive_finite(figures, names)  # fmt: skip
        # Frames stay stored beside their features: more than the frames alone.
        assert figures[f"frozen_{backbone}_bytes_per_transition"] > one_obs


@pytest.mark.timeout(180)
def test_transport_smoke_ingests_actor_chunks_and_derives_the_slowdown(tmp_path: Path) -> None:
    figures, _ = run_bench("transport", tmp_path)
    assert_positive_finite(
        figures,
        ["state_transitions_per_s", "image_transitions_per_s", "weight_sync_p50_ms",
         "weight_sync_p99_ms", "learner_updates_per_s_alone",
         "learner_updates_per_s_with_ingest", "learner_ingest_transitions_per_s"],
    )  # fmt: skip
    assert figures["weight_sync_p50_ms"] <= figures["weight_sync_p99_ms"]
    assert figures["learner_slowdown_with_ingest"] == pytest.approx(
        1.0 - figures["learner_updates_per_s_with_ingest"] / figures["learner_updates_per_s_alone"]
    )


@pytest.mark.timeout(180)
def test_reward_smoke_measures_every_held_out_frame_with_consistent_metrics(
    tmp_path: Path,
) -> None:
    from serl.bench.reward import EPISODE_STEPS, SIZES

    figures, _ = run_bench("reward", tmp_path, "--threads", "1")
    positives, negatives = figures["test_positives"], figures["test_negatives"]
    _, test_episodes, _ = SIZES["smoke"]
    assert positives + negatives == test_episodes * (EPISODE_STEPS + 1)  # reset frame + steps
    assert positives > 0 and negatives > 0
    accuracy, precision, recall = (
        figures[f"classifier_{k}"] for k in ("accuracy", "precision", "recall")
    )
    assert all(0.0 <= v <= 1.0 for v in (accuracy, precision, recall))
    if precision > 0:  # the confusion matrix the three figures imply must add up
        true_pos = round(recall * positives)
        false_pos = round(true_pos / precision) - true_pos
        assert accuracy == pytest.approx(
            (true_pos + negatives - false_pos) / (positives + negatives)
        )
    assert 0.0 < figures["threshold"] < 1.0
    assert_positive_finite(figures, ["classifier_inference_ms"])


@pytest.mark.timeout(180)
def test_sim_smoke_steps_every_task_and_both_peers(tmp_path: Path) -> None:
    from sim.registration import TASKS

    figures, _ = run_bench("sim", tmp_path)
    names = [t.removesuffix("-v0") for t in TASKS] + ["dmc_cheetah_run", "robosuite_Lift_Panda"]
    keys = [f"{n}_{mode}_steps_per_s" for n in names for mode in ("state", "pixels")]
    assert set(figures) == {"machine", "quick", "smoke"} | set(keys) | {
        k.replace("_steps_per_s", "_wall_steps_per_s") for k in keys
    }
    assert_positive_finite(figures, list(set(figures) - {"machine", "quick", "smoke"}))
    for key in keys:  # pinned to one core: CPU-seconds never exceed wall-clock seconds
        wall = figures[key.replace("_steps_per_s", "_wall_steps_per_s")]
        assert figures[key] >= 0.99 * wall - 0.1, key
