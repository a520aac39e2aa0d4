"""Worst-case search over a box of dynamics parameters: grid search and CMA-ES.

IWOCS step 3 (Zouitine et al. 2024, "Solving robust MDPs as a sequence of static RL
problems", Alg. 1 line 5): T_{i+1} = argmin_T V^{π_i}_T(s0), found by black-box search
because V is only available through rollouts. Both searches work in the unit cube (each
parameter scaled by its range), so CMA-ES's step size means the same for friction and mass.
The objective is any callable `params -> value` (lower is worse for the policy); the search
returns the best point and every evaluation, which the IWOCS loop logs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

Bounds = Mapping[str, tuple[float, float]]
Objective = Callable[[dict[str, float]], float]


@dataclass(frozen=True)
class SearchResult:
    params: dict[str, float]
    """The parameters with the lowest objective found."""
    value: float
    """The objective there."""
    evaluations: list[tuple[dict[str, float], float]]
    """Every (params, value) evaluated, in order."""


def _check_bounds(bounds: Bounds) -> list[str]:
    if not bounds:
        raise ValueError("empty parameter box; name at least one parameter with (low, high)")
    for name, (lo, hi) in bounds.items():
        if not lo <= hi:
            raise ValueError(f"parameter {name}: low {lo} > high {hi}; swap them")
    return sorted(bounds)


def _to_params(bounds: Bounds, names: list[str], unit: np.ndarray) -> dict[str, float]:
    return {
        n: float(lo + u * (hi - lo))
        for n, u, (lo, hi) in zip(names, unit, (bounds[n] for n in names), strict=True)
    }


def grid_points(bounds: Bounds, points_per_dim: int) -> list[dict[str, float]]:
    """The uniform grid over the box, `points_per_dim` per parameter, edges included."""
    names = _check_bounds(bounds)
    if points_per_dim < 1:
        raise ValueError(f"points_per_dim={points_per_dim}; use at least 1")
    axis = np.linspace(0.0, 1.0, points_per_dim) if points_per_dim > 1 else np.array([0.5])
    return [
        _to_params(bounds, names, np.array(u)) for u in itertools.product(axis, repeat=len(names))
    ]


def grid_search(objective: Objective, bounds: Bounds, points_per_dim: int) -> SearchResult:
    """Evaluate every grid point; the minimum wins (ties: the first in grid order)."""
    evaluations = [(p, float(objective(p))) for p in grid_points(bounds, points_per_dim)]
    params, value = min(evaluations, key=lambda e: e[1])
    return SearchResult(params, value, evaluations)


def cmaes_search(
    objective: Objective,
    bounds: Bounds,
    *,
    evaluations: int = 60,
    population: int | None = None,
    sigma: float = 0.3,
    seed: int = 0,
) -> SearchResult:
    """CMA-ES (the `cmaes` package) from the box centre, in unit coordinates, clipped to the box.

    `evaluations` is the budget of objective calls. One-parameter boxes get a second, constant
    dummy coordinate, because CMA-ES needs at least two dimensions.
    """
    from cmaes import CMA

    names = _check_bounds(bounds)
    dim = len(names)
    cma_dim = max(dim, 2)
    unit_bounds = np.tile([0.0, 1.0], (cma_dim, 1))
    optimizer = CMA(
        mean=np.full(cma_dim, 0.5),
        sigma=sigma,
        bounds=unit_bounds,
        seed=seed,
        population_size=population,
    )
    history: list[tuple[dict[str, float], float]] = []
    while len(history) < evaluations:
        told = []
        for _ in range(optimizer.population_size):
            x = optimizer.ask()
            params = _to_params(bounds, names, np.clip(x[:dim], 0.0, 1.0))
            value = float(objective(params))
            history.append((params, value))
            told.append((x, value))
        optimizer.tell(told)
        if optimizer.should_stop():
            break
    params, value = min(history, key=lambda e: e[1])
    logger.debug("CMA-ES: %d evaluations, minimum %.4g at %s", len(history), value, params)
    return SearchResult(params, value, history)


def search(
    objective: Objective,
    bounds: Bounds,
    *,
    method: str = "cmaes",
    budget: int = 60,
    seed: int = 0,
) -> SearchResult:
    """Grid (about `budget` points) or CMA-ES (`budget` evaluations) by name."""
    if method == "grid":
        per_dim = max(2, round(budget ** (1.0 / len(bounds))))
        return grid_search(objective, bounds, per_dim)
    if method == "cmaes":
        return cmaes_search(objective, bounds, evaluations=budget, seed=seed)
    raise ValueError(f"unknown search method {method!r}; use 'cmaes' or 'grid'")
