"""`serl bench robust`: every method's unit at a tiny size, its keys, plots and resume."""

import json
import math

import pytest

from serl.bench import robust

TINY = robust.Size(
    steps=80, seeds=1, grid=2, eval_episodes=1, models=2, search_budget=2, hidden=(16, 16)
)


@pytest.mark.timeout(240)
def test_a_tiny_run_gives_every_key_both_plots_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(robust, "QUICK", TINY)
    figures = robust.run(quick=True, device="cpu", out=tmp_path)
    for method in robust.METHODS:
        worst, mean = figures[f"{method}_worst_return"], figures[f"{method}_mean_return"]
        assert math.isfinite(worst) and worst <= mean <= 0, method
    assert figures["grid"] == "2x2"
    for key in ("plot", "summary_plot"):
        assert figures[key].endswith(".png") and (tmp_path / figures[key].split("/")[-1]).exists()

    # Same --out: every unit's result is read back, nothing trains again (a marked result
    # shows through).
    unit = tmp_path / "units" / "dr_sac-seed0.json"
    marked = json.loads(unit.read_text())
    marked["returns"][0] = -999.0
    unit.write_text(json.dumps(marked))
    again = robust.run(quick=True, device="cpu", out=tmp_path)
    assert again["dr_sac_worst_return"] == -999.0
    assert again["nominal_sac_mean_return"] == figures["nominal_sac_mean_return"]
