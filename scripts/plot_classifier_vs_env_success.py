"""What the reward classifier said against what happened: a run trained on a classifier's reward.

In a run made with `--reward-classifier` (or `serl train --reward.checkpoint`) on a `sim:`
task, an evaluation episode's return is 1 when the classifier ended it as a success (success
reward 1, failure 0), while its `success` is the env's own check, which the classifier never
sees. Where the two curves part, the policy has found frames the classifier calls success and
the task is not solved: reward hacking, the failure HIL-SERL guards against by adding such
frames as negatives and training the classifier again.

    RUN=sim_pandapickcubepixels_v0/imagenet-classifier-seed0
    python scripts/plot_classifier_vs_env_success.py \\
        runs/bench-learn-pickcube128-classifier/$RUN \\
        runs/bench-learn-pickcube128-classifier-round2/$RUN \\
        --labels "classifier 1" "classifier 2" --out docs/figures/classifier-vs-env-success.png

Prints, per run, the share of evaluation episodes each says succeeded (all, and the last 20).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from serl.bench.curves import rolling_mean  # noqa: E402
from serl.metrics import read_metrics  # noqa: E402

WINDOW = 10
"""Evaluation episodes per point of the curves (as the benchmark's crossing window)."""


def evaluations(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Env steps, the classifier's success (return > 0) and the env's success of each
    evaluation episode logged during training (the final evaluation is left out: it runs
    without the classifier)."""
    records = [
        r
        for r in read_metrics(run_dir / "metrics.jsonl")
        if r.get("eval/success_rate") is not None and not r.get("eval/final")
    ]
    if not records:
        raise SystemExit(f"{run_dir}: no evaluation episodes in metrics.jsonl")
    steps = np.array([float(r["step"]) for r in records])
    said = np.array([float(r["eval/return_mean"] > 0) for r in records])
    real = np.array([float(r["eval/success_rate"]) for r in records])
    return steps, said, real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (metrics.jsonl)")
    parser.add_argument("--labels", nargs="+", help="one title per run (default: its name)")
    parser.add_argument("--out", type=Path, default=Path("classifier-vs-env-success.png"))
    args = parser.parse_args()
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"{len(labels)} --labels for {len(args.runs)} runs")
    fig, axes = plt.subplots(1, len(args.runs), figsize=(5.5 * len(args.runs), 3.6), squeeze=False)
    for ax, run, label in zip(axes[0], args.runs, labels, strict=True):
        steps, said, real = evaluations(run)
        for values, name, color in ((said, "classifier: success", "tab:red"),
                                    (real, "env: success (truth)", "tab:blue")):  # fmt: skip
            smooth = rolling_mean(values, WINDOW)
            ax.plot(steps[WINDOW - 1 :], smooth, color=color, label=name)
        ax.set(title=label, xlabel="env steps", ylabel=f"success (mean of {WINDOW} evaluations)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        tail = slice(-20, None)
        print(
            f"{label}: {len(steps)} evaluation episodes; the classifier said success in "
            f"{said.mean():.2f}, the env in {real.mean():.2f}; last 20: classifier "
            f"{said[tail].mean():.2f}, env {real[tail].mean():.2f}"
        )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
