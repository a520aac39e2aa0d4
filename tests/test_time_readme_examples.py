"""scripts/time_readme_examples.py: the examples it times are the READMEs' lines, and the rate
it extrapolates with is the one that paces each kind of run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "time_readme_examples.py"
spec = importlib.util.spec_from_file_location("time_readme_examples", SCRIPT)
timing = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = timing  # dataclasses look their module up there
spec.loader.exec_module(timing)


@pytest.mark.parametrize(
    "example", timing.EXAMPLES + timing.BENCH_EXAMPLES, ids=lambda example: example.name
)
def test_every_timed_example_is_a_readme_line(example) -> None:
    assert timing.where(example.command) != "(not in the READMEs)", example.command


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_serl_train_rate_is_the_learners_updates_not_the_actors_steps(tmp_path: Path) -> None:
    """The actors reach the step budget early; the learner's 2 updates/s set the end."""
    records = [
        {"step": 1000 + 40 * i, "time_s": 10.0 + i, "learner/updates": 2.0 * i} for i in range(3)
    ] + [{"step": 1080, "time_s": 13.0 + i, "learner/updates": 6.0 + 2 * i} for i in range(6)]
    records.append({"step": 1080, "time_s": 20.0})  # the final evaluation's record
    rate = timing.learning_rate(_write(tmp_path / "m.jsonl", records), 1000)
    assert rate == pytest.approx(2.0)


def test_train_local_rate_is_env_steps_without_evaluation_records(tmp_path: Path) -> None:
    records = [{"step": 900 + 50 * i, "time_s": 100.0 + 5 * i} for i in range(8)]
    records.append({"step": 1250, "time_s": 200.0, "eval/return_mean": -5.0})
    rate = timing.learning_rate(_write(tmp_path / "m.jsonl", records), 1000)
    assert rate == pytest.approx(10.0)


def test_short_run_flags_replace_the_readmes_values_or_are_added() -> None:
    argv = ["train", "--steps", "6000", "--env", "Pendulum-v1"]
    short = timing.with_flags(argv, ("--steps", "1500", "--no-progress", "--run-dir", "r"))
    assert short == ["train", "--steps", "1500", "--env", "Pendulum-v1", "--no-progress",
                     "--run-dir", "r"]  # fmt: skip
