"""Return of a policy over a uniform grid of dynamics parameters: worst case and average.

Robust RL is judged by the worst case over the uncertainty set (IWOCS Eq. 1; DR-RPO's robust
value) and, beside it, the average (what domain randomisation optimises). Each grid point
gets its own env made with `make_env(env_id, params=point)` and the same seeded episodes, so
two policies are compared on identical starts.

Three or more parameters make a grid nobody reads row by row (5 points each: 125 rows), so the
presentation is reduced, and says how: `GridEvaluation.effects` gives each parameter's mean and
worst return per value over the other parameters and its sensitivity (the spread of those
means); the heat map shows the two most sensitive parameters with the others reduced by mean
and by worst case, named in the panel titles, on an absolute colour scale (`colour_limits`).
The full grid goes to a CSV file (`write_grid_csv`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

from serl.envs import make_env
from serl.evaluation import evaluate
from serl.robust.search import Bounds, grid_points

matplotlib.use("Agg")

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParameterEffect:
    """How one parameter moves the return, the other parameters reduced over their grid."""

    name: str
    values: list[float]
    """The parameter's grid values, ascending."""
    mean: list[float]
    """Mean return over every setting of the other parameters, at each value."""
    worst: list[float]
    """Worst return over every setting of the other parameters, at each value."""

    @property
    def sensitivity(self) -> float:
        """Spread (max - min) of the per-value means: ~0 for a parameter that does nothing."""
        return float(max(self.mean) - min(self.mean))


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
    def best(self) -> float:
        return float(max(self.returns))

    @property
    def worst_params(self) -> dict[str, float]:
        return self.points[int(np.argmin(self.returns))]

    @property
    def names(self) -> list[str]:
        """Parameter names in grid order (sorted, as `grid_points` orders them)."""
        return sorted(self.bounds)

    def cube(self) -> np.ndarray:
        """Returns as an array with one axis per parameter (in `names` order)."""
        n = round(len(self.points) ** (1 / len(self.names)))
        return np.asarray(self.returns, np.float64).reshape((n,) * len(self.names))

    def axis_values(self, name: str) -> list[float]:
        """The grid values of parameter `name`, ascending."""
        return sorted({p[name] for p in self.points})

    def effects(self) -> list[ParameterEffect]:
        """Each parameter's mean and worst return per value, the others reduced over the grid."""
        cube = self.cube()
        out = []
        for axis, name in enumerate(self.names):
            per_value = np.moveaxis(cube, axis, 0).reshape(cube.shape[axis], -1)
            out.append(
                ParameterEffect(
                    name,
                    self.axis_values(name),
                    per_value.mean(axis=1).tolist(),
                    per_value.min(axis=1).tolist(),
                )
            )
        return out


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


def summary_text(result: GridEvaluation) -> str:
    """The terminal summary: per parameter its values with the mean and worst return over the
    other parameters and its sensitivity, most sensitive first; then worst/mean/best overall."""
    lines = []
    for effect in sorted(result.effects(), key=lambda e: -e.sensitivity):
        others = [n for n in result.names if n != effect.name]
        over = f", {hidden_label('', others, result).strip()}" if others else ""
        lines.append(
            f"{effect.name}: sensitivity {_fmt(effect.sensitivity)} (spread of the means{over})"
        )
        lines.append("  value " + "".join(f"{_fmt(v):>10}" for v in effect.values))
        lines.append("  mean  " + "".join(f"{_fmt(v):>10}" for v in effect.mean))
        lines.append("  worst " + "".join(f"{_fmt(v):>10}" for v in effect.worst))
    worst_at = ", ".join(f"{n}={_fmt(v)}" for n, v in result.worst_params.items())
    lines.append(f"worst-case return {_fmt(result.worst)} at {worst_at}")
    lines.append(f"average return    {_fmt(result.mean)}")
    lines.append(f"best return       {_fmt(result.best)}")
    return "\n".join(lines)


def colour_limits(result: GridEvaluation) -> tuple[float, float]:
    """Colour (or y) limits of the grid plots: [min(0, worst), max(0, best)].

    An absolute scale anchored at zero return: a colour step is a fixed share of the return's
    own size, so a 0.02 spread on returns near -5 shows as one colour instead of being
    stretched over the whole colour map (which made a parameter that does nothing look
    important). Zero is the one reference every task has; the nominal return would need an
    extra evaluation and is not the grid centre for an asymmetric box. All-zero returns get
    [0, 1] so the scale is never empty.
    """
    low, high = min(0.0, result.worst), max(0.0, result.best)
    return (low, high) if high > low else (low, low + 1.0)


def hidden_label(reduction: str, hidden: list[str], result: GridEvaluation) -> str:
    """'mean over payload_mass (5 values)': how the parameters not on the plot were reduced."""
    settings = int(np.prod([len(result.axis_values(n)) for n in hidden]))
    unit = "values" if len(hidden) == 1 else "settings"
    return f"{reduction} over {' x '.join(hidden)} ({settings} {unit})"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _cell_edges(values: list[float]) -> tuple[float, float]:
    """Outer edges of heat-map cells centred on the grid values."""
    half = (values[-1] - values[0]) / (2 * (len(values) - 1)) if len(values) > 1 else 0.5
    return values[0] - half, values[-1] + half


def grid_figure(result: GridEvaluation, title: str = "") -> Figure:
    """The return over the grid on an absolute colour scale (`colour_limits`).

    One parameter: return against its value. Two or more: a heat map over the two most
    sensitive parameters (`ParameterEffect.sensitivity`); with further parameters, two panels
    reduce them, the mean and the worst case, each titled with the reduction
    (`hidden_label`). The worst, mean, best and their spread are written on the figure.
    """
    import matplotlib.pyplot as plt

    low, high = colour_limits(result)
    effects = sorted(result.effects(), key=lambda e: -e.sensitivity)
    shown = [e.name for e in effects[:2]]
    hidden = [n for n in result.names if n not in shown]
    reductions = [("mean", np.mean), ("worst", np.min)] if hidden else [("", np.mean)]
    fig, axes = plt.subplots(
        1,
        len(reductions),
        figsize=(5.2 * len(reductions) + 0.8, 4.6),
        squeeze=False,
        layout="constrained",
    )
    if len(shown) == 1:
        effect = effects[0]
        ax = axes[0, 0]
        ax.plot(effect.values, effect.mean, marker="o")
        margin = 0.05 * (high - low)
        ax.set(xlabel=effect.name, ylabel="return", ylim=(low - margin, high + margin))
        ax.grid(alpha=0.3)
    else:
        cube = np.moveaxis(result.cube(), [result.names.index(n) for n in shown], [0, 1])
        flat = cube.reshape(cube.shape[0], cube.shape[1], -1)
        extent = [
            *_cell_edges(result.axis_values(shown[0])),
            *_cell_edges(result.axis_values(shown[1])),
        ]
        for ax, (reduction, reduce) in zip(axes[0], reductions, strict=True):
            image = ax.imshow(
                reduce(flat, axis=-1).T, origin="lower", aspect="auto",
                extent=extent, cmap="viridis", vmin=low, vmax=high,
            )  # fmt: skip
            ax.set(xlabel=shown[0], ylabel=shown[1])
            ax.set_xticks(result.axis_values(shown[0]))
            ax.set_yticks(result.axis_values(shown[1]))
            ax.set_title(
                hidden_label(reduction, hidden, result) if hidden else "every grid point",
                fontsize=10,
            )
        fig.colorbar(image, ax=axes[0].tolist(), label="return (absolute scale)")
    spread = result.best - result.worst
    fig.suptitle(
        f"{title}\nworst {_fmt(result.worst)}, mean {_fmt(result.mean)}, best "
        f"{_fmt(result.best)} over {len(result.points)} settings: spread {_fmt(spread)}".strip(),
        fontsize=10,
    )
    return fig


def plot_grid(result: GridEvaluation, png_path: str | Path, title: str = "") -> Path:
    """`grid_figure` saved as a PNG."""
    import matplotlib.pyplot as plt

    fig = grid_figure(result, title)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


def write_grid_csv(result: GridEvaluation, path: str | Path) -> Path:
    """Every grid point and its return, one row each (the terminal only gets the summary)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*result.names, "return"])
        for params, ret in zip(result.points, result.returns, strict=True):
            writer.writerow([*(repr(params[n]) for n in result.names), repr(ret)])
    return path
