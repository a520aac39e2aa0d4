"""`serl bench robust`: every method's unit at a tiny size, its keys, plots and resume."""

import json

import pytest

from serl.bench import robust
from serl.checkpoint_eval import load_policy
from serl.envs import make_env

TINY = robust.Size(
    steps=80, seeds=1, grid=2, eval_episodes=1, models=2, search_budget=2, hidden=(16, 16)
)


@pytest.mark.timeout(240)
def test_a_tiny_run_gives_every_key_both_plots_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(robust, "QUICK", TINY)
    figures = robust.run(quick=True, device="cpu", out=tmp_path)
    assert figures["grid"] == "2x2"
    corners = [(0.4, 1.0), (0.4, 30.0), (1.4, 1.0), (1.4, 30.0)]  # BOX's 2 x 2 grid
    units = {}
    for method in robust.METHODS:
        unit = units[method] = json.loads((tmp_path / "units" / f"{method}-seed0.json").read_text())
        points = sorted((p["actuator_gain"], p["joint_damping"]) for p in unit["points"])
        assert points == [pytest.approx(c) for c in corners], method
        returns = unit["returns"]
        # Every cell ran under its own dynamics: a deterministic policy's four returns differ
        # (an evaluation that dropped the cell's parameters would give four equal ones).
        assert len(returns) == 4 and len(set(returns)) == 4, (method, returns)
        assert figures[f"{method}_worst_return"] == min(returns), method
        assert figures[f"{method}_mean_return"] == pytest.approx(sum(returns) / 4), method
        assert figures[f"{method}_worst_std"] == 0.0  # one seed

    # The worst cell's return, evaluated again here from the saved policy, on an env made
    # with that cell's parameters and the evaluation's episode seed (10_000).
    nominal = units["nominal_sac"]
    worst = nominal["returns"].index(min(nominal["returns"]))
    policy = load_policy(tmp_path / "nominal_sac-seed0" / "checkpoint.safetensors").policy
    env = make_env(robust.ENV, params=nominal["points"][worst])
    obs, _ = env.reset(seed=10_000)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs, deterministic=True))
        total, done = total + float(reward), terminated or truncated
    env.close()
    assert total == pytest.approx(figures["nominal_sac_worst_return"], rel=1e-6)
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
