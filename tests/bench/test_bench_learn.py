"""`serl bench learn --suite pendulum --quick` end to end: real actor-learner runs and SB3."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pendulum_quick_writes_valid_json_summary_and_png(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "serl.cli",
            "bench",
            "learn",
            "--suite",
            "pendulum",
            "--quick",
            "--seeds",
            "1",
            "--out",
            str(out),
            "--json",
            str(tmp_path / "learn.json"),
        ],
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "learn.json").read_text())  # strict JSON: no NaN
    for method in ("serl", "sb3"):
        for budget in (1000, 2000, 3000):
            assert math.isfinite(figures[f"{method}_returns_at_{budget}"])
        assert figures[f"{method}_wallclock_s"] > 0
        assert (out / "pendulum_v1" / f"{method}-seed0" / "metrics.jsonl").stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text())["suite"] == "pendulum"
    assert "Pendulum-v1  serl" in result.stdout


def test_every_suite_task_can_be_made() -> None:
    from serl.bench.learn import SUITES
    from serl.envs import make_env

    for name, suite in SUITES.items():
        for task in suite.tasks:
            env = make_env(task)
            assert env.action_space.shape, f"{name}: {task}"
            env.close()


def test_tasks_select_part_of_a_suite_and_an_unknown_task_names_the_valid_ones() -> None:
    from serl.bench.learn import SUITES, select_tasks

    panda = SUITES["panda"]
    assert select_tasks(panda, None) is panda
    assert select_tasks(panda, ["sim:PandaPickCube-v0"]).tasks == ("sim:PandaPickCube-v0",)
    with pytest.raises(ValueError, match="its tasks are sim:PandaPickCube-v0"):
        select_tasks(panda, ["sim:PandaPush-v0"])


def test_variants_select_encoders_of_the_pixel_suite_and_an_unknown_one_names_them() -> None:
    from serl.bench.learn import SUITES, select_variants
    from serl.nets.encoders import EncoderConfig

    pixels = SUITES["panda-pixels"]
    assert list(pixels.variants) == ["drq", "imagenet", "pretrained", "random"]
    for encoder in pixels.variants.values():
        EncoderConfig(**encoder)  # every variant is a valid encoder config
    assert set(pixels.pretrained_variants) <= set(pixels.variants)
    assert list(select_variants(pixels, ["random", "imagenet"]).variants) == ["imagenet", "random"]
    with pytest.raises(ValueError, match="they are drq, imagenet, pretrained, random"):
        select_variants(pixels, ["resnet"])
    with pytest.raises(ValueError, match="none"):
        select_variants(SUITES["panda"], ["drq"])


def test_a_reward_classifier_that_is_not_one_stops_the_bench_before_any_run(tmp_path: Path) -> None:
    from serl.bench.learn import run

    junk = tmp_path / "classifier.safetensors"
    junk.write_bytes(b"not a checkpoint")
    out = tmp_path / "bench"
    with pytest.raises(ValueError, match=f"--reward-classifier: {junk}"):
        run(True, "cpu", "panda-pixels", seeds=1, out=out, reward_classifier=junk)
    assert not any(out.iterdir())  # no demos, no run


def test_the_learner_rate_is_the_runs_mean_not_its_last_window(tmp_path: Path) -> None:
    from serl.bench.learn import learner_figures

    records = [(0.0, 0, 4.0), (10.0, 40, 4.0), (20.0, 80, 4.0), (20.5, 81, 0.1)]
    lines = [
        json.dumps({"step": updates, "time_s": 1e9 + t, "learner/updates": updates,
                    "learner/updates_per_s": rate, "buffer/bytes_per_slot": 1000.0})
        for t, updates, rate in records
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    figures = learner_figures(tmp_path)
    assert figures["updates_per_s"] == pytest.approx(81 / 20.5)
    assert figures["bytes_per_transition"] == 1000.0


def test_first_seed_runs_the_seeds_from_there_and_bad_seeds_or_minutes_are_refused(
    tmp_path: Path,
) -> None:
    from serl.bench.learn import run

    unfinished = tmp_path / "pendulum_v1" / "serl-seed1"
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.jsonl").write_text("")  # a run of seed 1 that did not finish
    with pytest.raises(RuntimeError, match="serl-seed1 holds a run that did not finish"):
        run(True, "cpu", "pendulum", seeds=1, first_seed=1, out=tmp_path)
    with pytest.raises(ValueError, match="--first-seed -1"):
        run(True, "cpu", "pendulum", seeds=1, first_seed=-1, out=tmp_path)
    with pytest.raises(ValueError, match="--minutes 0"):
        run(True, "cpu", "pendulum", seeds=1, out=tmp_path, minutes=0.0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_minutes_stops_a_run_on_the_clock_then_evaluates_its_checkpoint(tmp_path: Path) -> None:
    from serl.bench.learn import RUN_RECORD, SUITES, _run_ours
    from serl.metrics import read_metrics

    pendulum = SUITES["pendulum"]
    suite = dataclasses.replace(pendulum, **pendulum.quick | {"steps": 1_000_000})  # never reached
    run_dir = tmp_path / "run"
    curve = _run_ours(suite, "Pendulum-v1", 0, run_dir, "cpu", None, {}, minutes=0.5)
    final = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("eval/final")]
    assert len(final) == 1 and 0 < final[0]["step"] < 1_000_000
    assert curve.steps[-1] == final[0]["step"] and curve.seconds[-1] >= 30.0
    assert json.loads((run_dir / RUN_RECORD).read_text())["stopped_at_minutes"] == 0.5
