"""Return of a policy over a uniform grid of dynamics parameters: worst case and average.

Robust RL is judged by the worst case over the uncertainty set (IWOCS Eq. 1; DR-RPO's robust
value) and, beside it, the average (what domain randomisation optimises). Each grid point
gets its own env made with `make_env(env_id, params=point)` and the same seeded episodes, so
two policies are compared on identical starts. The heat map shows the first two parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from serl.envs import make_env
from serl.evaluation import evaluate
from serl.robust.search import Bounds, grid_points

matplotlib.use("Agg")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GridEvaluation:
    bounds: dict[str, tuple[float, float]]
    """The box evaluated."""
    points: list[dict[str, float]]
    """Grid points, in `grid_points` order."""
    returns: list[float]
    """Mean evaluation return at each point."""

    @property
    def worst(self) -> float:
        return float(min(self.returns))

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def worst_params(self) -> dict[str, float]:
        return self.points[int(np.argmin(self.returns))]


def evaluate_on_grid(
    act: Callable[[Any], np.ndarray],
    env_id: str,
    bounds: Bounds,
    points_per_dim: int,
    *,
    episodes: int = 3,
    seed: int = 10_000,
    on_reset: Callable[[], None] | None = None,
) -> GridEvaluation:
    """Mean return of `act` at every grid point of the box (`episodes` seeded episodes each)."""
    points = grid_points(bounds, points_per_dim)
    returns = []
    for params in points:
        env = make_env(env_id, params=params)
        try:
            result = evaluate(env, act, episodes=episodes, seed=seed, on_reset=on_reset)
        finally:
            env.close()
        returns.append(result["eval/return_mean"])
        logger.debug("%s: return %.2f", params, returns[-1])
    return GridEvaluation(dict(bounds), points, returns)


def plot_grid(result: GridEvaluation, png_path: str | Path, title: str = "") -> Path:
    """Heat map of return over the first two parameters (a line for one parameter)."""
    import matplotlib.pyplot as plt

    names = sorted(result.bounds)
    returns = np.asarray(result.returns)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if len(names) == 1:
        xs = [p[names[0]] for p in result.points]
        ax.plot(xs, returns, marker="o")
        ax.set(xlabel=names[0], ylabel="return")
    else:
        n = round(len(result.points) ** (1 / len(names)))
        grid = returns.reshape((n,) * len(names))
        grid = grid.reshape(n, n, -1).mean(axis=-1)  # further parameters averaged out
        (lo0, hi0), (lo1, hi1) = result.bounds[names[0]], result.bounds[names[1]]
        image = ax.imshow(
            grid.T, origin="lower", aspect="auto", extent=(lo0, hi0, lo1, hi1), cmap="viridis"
        )
        fig.colorbar(image, ax=ax, label="return")
        ax.set(xlabel=names[0], ylabel=names[1])
    ax.set_title(f"{title}\nworst {result.worst:.1f}, mean {result.mean:.1f}".strip())
    fig.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
