"""Robust evaluation's presentation: per-parameter summary, heat map labels and colour scale."""

from __future__ import annotations

import numpy as np
import pytest

from serl.robust.evaluate import (
    GridEvaluation,
    colour_limits,
    evaluate_on_grid,
    grid_figure,
    summary_text,
    write_grid_csv,
)
from serl.robust.search import grid_points

REACH = "sim:PandaReach-v0"


@pytest.fixture(scope="module")
def reach_grid() -> GridEvaluation:
    """A constant-push policy on Reach over three parameters, one of which Reach has nothing
    for (object_mass: Reach has no object)."""
    box = {"object_mass": (0.5, 2.0), "actuator_gain": (0.4, 1.4), "joint_damping": (1.0, 30.0)}
    push = np.array([1.0, 0.0, 0.0], np.float32)
    return evaluate_on_grid(lambda obs: push, REACH, box, 2, episodes=1)


def test_parameter_that_does_nothing_has_zero_sensitivity(reach_grid: GridEvaluation) -> None:
    effects = {e.name: e for e in reach_grid.effects()}
    assert effects["object_mass"].sensitivity == pytest.approx(0.0, abs=1e-9)
    assert effects["actuator_gain"].sensitivity > 0.1
    text = summary_text(reach_grid)
    assert "object_mass: sensitivity 0 " in text
    # most sensitive first; the do-nothing parameter last
    order = [line.split(":")[0] for line in text.splitlines() if "sensitivity" in line]
    assert order[-1] == "object_mass" and len(order) == 3
    assert len(text.splitlines()) < 20  # a summary, not one row per grid point


def test_effects_reduce_the_other_axes_by_mean_and_min() -> None:
    box = {"a": (0.0, 1.0), "b": (0.0, 2.0)}
    points = grid_points(box, 3)
    result = GridEvaluation(box, points, [p["a"] * 10 - p["b"] for p in points])
    a = {e.name: e for e in result.effects()}["a"]
    assert a.values == [0.0, 0.5, 1.0]
    assert a.mean == pytest.approx([-1.0, 4.0, 9.0])
    assert a.worst == pytest.approx([-2.0, 3.0, 8.0])
    assert a.sensitivity == pytest.approx(10.0)


def test_heat_map_names_the_hidden_axis_and_its_reduction(reach_grid: GridEvaluation) -> None:
    fig = grid_figure(reach_grid, title="push on Reach")
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles == ["mean over object_mass (2 values)", "worst over object_mass (2 values)"]
    shown = {fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()}
    assert shown == {"actuator_gain", "joint_damping"}


def test_colour_scale_is_absolute_and_the_spread_is_printed() -> None:
    box = {"friction": (0.5, 1.5), "object_mass": (0.5, 2.0)}
    points = grid_points(box, 5)
    returns = [-5.03 + 0.02 * (p["friction"] - 0.5) for p in points]  # a 0.02 spread
    result = GridEvaluation(box, points, returns)
    fig = grid_figure(result)
    (image,) = [im for ax in fig.axes for im in ax.images]
    low, high = image.get_clim()
    assert (low, high) == colour_limits(result) == (pytest.approx(-5.03), 0.0)
    assert high - low > 100 * (result.best - result.worst)
    assert "spread 0.02" in fig._suptitle.get_text()


def test_every_grid_point_goes_to_the_csv(reach_grid: GridEvaluation, tmp_path) -> None:
    path = write_grid_csv(reach_grid, tmp_path / "grid.csv")
    rows = path.read_text().splitlines()
    assert rows[0] == "actuator_gain,joint_damping,object_mass,return"
    assert len(rows) == 1 + 8
    assert [float(r.split(",")[-1]) for r in rows[1:]] == reach_grid.returns
