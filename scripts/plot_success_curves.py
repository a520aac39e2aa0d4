"""Success curves of several `serl bench learn` runs in one figure, and each run's crossings.

The benchmark draws one figure per `--out` directory; comparing encoders (or recipes) run in
different directories needs them side by side. For each run directory (a `*-seedN` folder of
a bench run) this prints the env steps and seconds at which the mean of the last 10
evaluations first reaches 0.8 and 0.9 (`serl.bench.curves.first_crossing`, as the benchmark
does), and draws that windowed success against env steps and against wall-clock.

    P=sim_pandapickcubepixels_v0
    python scripts/plot_success_curves.py \\
        runs/bench-learn-pickcube128/$P/imagenet-seed0 \\
        runs/bench-learn-pickcube128-random/$P/random-seed0 \\
        --labels imagenet random --out docs/figures/pickcube128-encoders.png

Seconds count from the run's start as the benchmark recorded it (`bench_run.json`); a run
that did not finish has none, and its seconds count from the first line of its learner log
(said in the output).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from serl.bench.curves import Curve, curve_from_metrics, first_crossing, rolling_mean  # noqa: E402
from serl.bench.learn import RUN_RECORD, SUITES, finished_curve  # noqa: E402

WINDOW = SUITES["panda-pixels"].crossing_window
"""Evaluations per point: the benchmark's crossing window for its success tasks."""


def load_curve(run_dir: Path) -> tuple[Curve, str]:
    """The run's curve, its seconds from the run's start, and where that start came from."""
    if (run_dir / RUN_RECORD).exists():
        return finished_curve(run_dir), "bench start"
    first = (run_dir / "logs" / "learner.log").read_text().split(",", 1)[0]
    started = dt.datetime.strptime(first, "%Y-%m-%d %H:%M:%S")  # the log's local time
    curve = curve_from_metrics(run_dir / "metrics.jsonl", started.timestamp())
    return curve, "unfinished run: from its learner log's first line"


def describe(label: str, curve: Curve, origin: str) -> str:
    parts = [f"{label}: {len(curve.steps)} evaluations to {int(curve.steps[-1]):,} env steps"]
    for threshold in (0.8, 0.9):
        steps, seconds = first_crossing(curve, threshold, "success", WINDOW)
        reached = f"{steps:,.0f} steps, {seconds:,.0f} s" if math.isfinite(steps) else "never"
        parts.append(f"{threshold:.0%} at {reached}")
    return "; ".join(parts) + f" ({origin})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench run directories (*-seedN)")
    parser.add_argument("--labels", nargs="+", help="one per run (default: directory names)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} labels for {len(args.runs)} runs")

    fig, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors: dict[str, str] = {}
    for run, label in zip(args.runs, labels, strict=True):
        curve, origin = load_curve(run)
        print(describe(f"{label} ({run.name})", curve, origin))
        color = colors.setdefault(label, f"C{len(colors)}")
        first = label not in [line.get_label() for line in by_steps.get_lines()]
        kwargs = {"color": color, "alpha": 0.8, "label": label if first else None}
        success = curve.metric("success")
        if len(success) >= WINDOW:
            values, skip = rolling_mean(success, WINDOW), WINDOW - 1
        else:  # a run stopped early (--minutes): the mean of its evaluations so far, marked
            values, skip = np.cumsum(success) / np.arange(1, len(success) + 1), 0
            kwargs |= {"marker": "o", "markersize": 3}
        by_steps.plot(curve.steps[skip:], values, **kwargs)
        by_time.plot(curve.seconds[skip:] / 60, values, **kwargs)
    ylabel = f"success (mean of last {WINDOW} evaluations)"
    by_steps.set(xlabel="env steps", ylabel=ylabel)
    by_time.set(xlabel="wall-clock minutes", ylabel=ylabel)
    for ax in (by_steps, by_time):
        ax.axhline(0.8, ls="--", color="gray", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
