"""Learning curves of benchmark runs and the statistics the summary tables report.

A `Curve` is one run's evaluations: env steps, wall-clock seconds since the run started, and
the evaluation return (and success rate where the env reports one). The statistics are
deliberately plain so a reader can redo them by hand:

* `value_at(curve, budget, window)`: the mean evaluation over the last `window` env steps up
  to `budget` (single evaluations are noisy; SB3 and the CURL / REDQ tables also average the
  evaluations near the budget). With no evaluation in the window, the last one before it.
* `first_crossing(curve, threshold, window=k)`: the env steps and seconds at the first
  evaluation where the mean of the last k evaluations reaches `threshold` (NaN when the run
  never gets there). k = 1 for returns; a success rate from one-episode evaluations is 0 or 1
  per point, so "90 % success" needs k = 10 (9 of the last 10 evaluation episodes).
* `mean_std(values)`: mean and population std over seeds, NaN-aware (a seed that never
  reached a threshold is left out and counted separately by the caller).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serl.metrics import read_metrics


@dataclass(frozen=True)
class Curve:
    steps: np.ndarray
    """Env steps at each evaluation (increasing)."""
    seconds: np.ndarray
    """Wall-clock seconds since the run started, at each evaluation."""
    returns: np.ndarray
    """Mean evaluation return at each evaluation."""
    success: np.ndarray
    """Evaluation success rate at each evaluation (NaN where the env reports none)."""

    def __post_init__(self) -> None:
        n = len(self.steps)
        if not len(self.seconds) == len(self.returns) == len(self.success) == n:
            raise ValueError("a curve's steps, seconds, returns and success must match in length")
        if n and np.any(np.diff(self.steps) < 0):
            raise ValueError(f"curve steps must not decrease: {self.steps.tolist()}")

    def metric(self, name: str) -> np.ndarray:
        """`returns` or `success` by name."""
        if name not in ("returns", "success"):
            raise ValueError(f"unknown curve metric {name!r}; use 'returns' or 'success'")
        return getattr(self, name)


def curve_from_metrics(path: str | Path, start_time_s: float | None = None) -> Curve:
    """The evaluation records of a metrics.jsonl file (`eval/return_mean` present).

    `start_time_s` is the Unix time at which the run was launched; by default the time of the
    file's first record.
    """
    records = read_metrics(path)
    if start_time_s is None:
        start_time_s = records[0]["time_s"] if records else 0.0
    evals = [r for r in records if r.get("eval/return_mean") is not None]
    evals.sort(key=lambda r: r["step"])
    success = [r.get("eval/success_rate") for r in evals]
    return Curve(
        steps=np.array([r["step"] for r in evals], dtype=np.int64),
        seconds=np.array([r["time_s"] - start_time_s for r in evals], dtype=np.float64),
        returns=np.array([r["eval/return_mean"] for r in evals], dtype=np.float64),
        success=np.array([np.nan if s is None else s for s in success], dtype=np.float64),
    )


def value_at(curve: Curve, budget: int, window: int, metric: str = "returns") -> float:
    """Mean evaluation over env steps (budget - window, budget]; see the module docstring."""
    values = curve.metric(metric)
    inside = (curve.steps > budget - window) & (curve.steps <= budget)
    if inside.any():
        return _nanmean(values[inside])
    before = np.flatnonzero(curve.steps <= budget)
    return float(values[before[-1]]) if len(before) else math.nan


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each run of `window` consecutive values (len(values) - window + 1 of them)."""
    if window < 1:
        raise ValueError(f"window={window}; expected at least 1 evaluation")
    if len(values) < window:
        return np.zeros(0)
    return np.convolve(values, np.ones(window), mode="valid") / window  # 9 / 10 is 0.9 exactly


def first_crossing(
    curve: Curve, threshold: float, metric: str = "returns", window: int = 1
) -> tuple[float, float]:
    """(env steps, seconds) of the first evaluation at which the mean of the last `window`
    evaluations is >= `threshold`; (nan, nan) if none."""
    reached = window - 1 + np.flatnonzero(rolling_mean(curve.metric(metric), window) >= threshold)
    if not len(reached):
        return math.nan, math.nan
    i = reached[0]
    return float(curve.steps[i]), float(curve.seconds[i])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation of the finite values (NaN, NaN if none)."""
    finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    if not len(finite):
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std())
