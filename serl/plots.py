"""Learning-curve PNGs from a run's metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from serl.metrics import read_metrics  # noqa: E402


def plot_learning_curve(metrics_path: str | Path, png_path: str | Path, title: str = "") -> Path:
    """Evaluation return (and success rate, if the env reports it) against env steps."""
    records = [r for r in read_metrics(metrics_path) if r.get("eval/return_mean") is not None]
    steps = [r["step"] for r in records]
    means = [r["eval/return_mean"] for r in records]
    stds = [r.get("eval/return_std") or 0.0 for r in records]
    success = [r.get("eval/success_rate") for r in records]
    show_success = any(s is not None for s in success)
    fig, axes = plt.subplots(1, 2 if show_success else 1, figsize=(10 if show_success else 6, 4))
    axes = list(axes) if show_success else [axes]
    axes[0].plot(steps, means, marker="o")
    axes[0].fill_between(
        steps,
        [m - s for m, s in zip(means, stds, strict=True)],
        [m + s for m, s in zip(means, stds, strict=True)],
        alpha=0.2,
    )
    axes[0].set(xlabel="env steps", ylabel="evaluation return", title=title)
    axes[0].grid(alpha=0.3)
    if show_success:
        rates = [float("nan") if s is None else s for s in success]
        axes[1].plot(steps, rates, marker="o", color="tab:green")
        axes[1].set(xlabel="env steps", ylabel="success rate", ylim=(-0.05, 1.05))
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
