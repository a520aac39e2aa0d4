"""The summary statistics of `serl bench learn`, on hand-made curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from serl.bench.curves import (
    Curve,
    curve_from_metrics,
    first_crossing,
    mean_std,
    rolling_mean,
    value_at,
)
from serl.bench.learn import RUN_RECORD, SUITES, finished_curve, summarize


def curve(steps, returns, seconds=None, success=None) -> Curve:
    n = len(steps)
    return Curve(
        steps=np.array(steps),
        seconds=np.array(seconds if seconds is not None else [10.0 * i for i in range(n)]),
        returns=np.array(returns, dtype=float),
        success=np.array(success if success is not None else [math.nan] * n, dtype=float),
    )


def test_value_at_averages_the_evaluations_inside_the_window() -> None:
    c = curve([100, 200, 300, 400], [-900.0, -500.0, -300.0, -100.0])
    assert value_at(c, budget=400, window=200) == pytest.approx(-200.0)  # (200, 400]: 300, 400
    assert value_at(c, budget=300, window=100) == pytest.approx(-300.0)


def test_value_at_falls_back_to_the_last_evaluation_before_an_empty_window() -> None:
    c = curve([100, 200], [-900.0, -500.0])
    assert value_at(c, budget=1000, window=100) == -500.0
    assert math.isnan(value_at(c, budget=50, window=10))


def test_first_crossing_reports_steps_and_seconds_of_the_first_evaluation_at_threshold() -> None:
    c = curve([100, 200, 300, 400], [-900.0, -150.0, -300.0, -100.0], seconds=[5, 9, 14, 20])
    assert first_crossing(c, -200.0) == (200.0, 9.0)
    assert all(math.isnan(v) for v in first_crossing(c, 0.0))


def test_success_metric_is_read_from_the_success_column() -> None:
    c = curve([100, 200], [0.0, 0.0], success=[0.2, 0.95])
    assert first_crossing(c, 0.9, metric="success") == (200.0, 10.0)
    assert value_at(c, budget=200, window=200, metric="success") == pytest.approx(0.575)


def test_mean_std_is_population_std_over_finite_seeds() -> None:
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
    assert mean_std([1.0, math.nan, 3.0]) == (2.0, 1.0)
    assert all(math.isnan(v) for v in mean_std([math.nan]))


def test_curve_from_metrics_keeps_evaluations_and_subtracts_the_start_time(tmp_path: Path) -> None:
    lines = [
        {"step": 0, "time_s": 1000.0, "learner/updates": 0},
        {"step": 500, "time_s": 1012.5, "eval/return_mean": -700.0, "eval/success_rate": 0.0},
        {"step": 900, "time_s": 1020.0, "eval/return_mean": -150.0},
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    c = curve_from_metrics(path, start_time_s=1000.0)
    assert c.steps.tolist() == [500, 900]
    assert c.seconds.tolist() == [12.5, 20.0]
    assert c.returns.tolist() == [-700.0, -150.0]
    assert c.success[0] == 0.0 and math.isnan(c.success[1])


def test_summary_table_gives_mean_std_over_seeds_and_threshold_counts() -> None:
    suite = SUITES["pendulum"]
    seeds = [
        curve([5000, 10000, 20000], [-800.0, -300.0, -150.0], seconds=[100, 200, 400]),
        curve([5000, 10000, 20000], [-600.0, -100.0, -140.0], seconds=[90, 180, 360]),
    ]
    figures, lines = summarize(suite, {("Pendulum-v1", "serl"): seeds})
    assert figures["serl_returns_at_5000"] == pytest.approx(-700.0)
    assert figures["serl_returns_at_5000_std"] == pytest.approx(100.0)
    assert figures["serl_steps_to_threshold"] == pytest.approx(15000.0)  # 20000 and 10000
    assert figures["serl_seconds_to_threshold"] == pytest.approx(290.0)  # 400 and 180
    assert figures["serl_seeds_reaching_threshold"] == 2.0
    assert figures["serl_wallclock_s"] == pytest.approx(380.0)
    assert "-700.0 ± 100.0" in lines[1]


def test_a_budget_past_where_a_run_got_has_no_value_in_the_summary() -> None:
    suite = SUITES["pendulum"]  # budgets 5,000, 10,000, 20,000
    stopped = curve([2000, 4000, 6000], [-900.0, -700.0, -500.0])  # --minutes stopped it at 6,000
    figures, lines = summarize(suite, {("Pendulum-v1", "serl"): [stopped]})
    assert figures["serl_returns_at_5000"] == -700.0  # (4,000, 5,000] empty: the one at 4,000
    assert math.isnan(figures["serl_returns_at_10000"])
    assert math.isnan(figures["serl_returns_at_20000"])
    assert "nan ± nan" in lines[1]


def test_decreasing_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="must not decrease"):
        curve([200, 100], [0.0, 0.0])


def test_a_windowed_crossing_needs_the_mean_of_the_last_k_evaluations() -> None:
    # one-episode success evaluations: an early lucky 1 is not "90 % success"
    success = [0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]
    c = curve(list(range(100, 1700, 100)), [0.0] * 16, success=success)
    assert first_crossing(c, 0.9, metric="success") == (200.0, 10.0)
    # the 10 evaluations ending at index 12 hold 9 successes: exactly 0.9, the first crossing
    assert first_crossing(c, 0.9, metric="success", window=10) == (1300.0, 120.0)
    assert all(math.isnan(v) for v in first_crossing(c, 0.9, metric="success", window=20))
    np.testing.assert_allclose(rolling_mean(np.array([1.0, 2.0, 3.0, 5.0]), 2), [1.5, 2.5, 4.0])
    with pytest.raises(ValueError, match="at least 1"):
        first_crossing(c, 0.9, window=0)


def test_a_finished_run_is_read_back_and_an_unfinished_one_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "serl-seed0"
    assert finished_curve(run_dir) is None  # never started
    run_dir.mkdir()
    lines = [{"step": 500, "time_s": 1012.5, "eval/return_mean": -700.0}]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.raises(RuntimeError, match="did not finish; delete that directory"):
        finished_curve(run_dir)
    (run_dir / RUN_RECORD).write_text(json.dumps({"start_time_s": 1000.0}))
    c = finished_curve(run_dir)
    assert c is not None and c.seconds.tolist() == [12.5] and c.returns.tolist() == [-700.0]
