"""DR-RPO and IWOCS through the actor-learner path (`serl train`), resume, eval-robust."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from serl.agents.iwocs import IWOCSConfig
from serl.checkpoint import read_checkpoint
from serl.cli import main
from serl.metrics import read_metrics
from serl.train import TrainConfig, train

REACH = "sim:PandaReach-v0"


def finite_update_metrics(run: Path, prefix: str) -> dict[str, float]:
    records = [r for r in read_metrics(run / "metrics.jsonl") if prefix in r]
    assert records, f"no {prefix} metric in {run}/metrics.jsonl"
    last = records[-1]
    values = {k: v for k, v in last.items() if isinstance(v, float)}
    assert all(math.isfinite(v) for v in values.values()), values
    return values


@pytest.mark.timeout(180)
def test_drrpo_trains_through_learner_and_actors_and_resumes(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    flags = [
        "train", "--agent", "drrpo", "--actors", "1", "--random-steps", "100",
        "--min-buffer", "100", "--agent-cfg.hidden-dims", "16", "--agent-cfg.batch-size", "16",
        "--agent-cfg.tv-radius", "0.2", "--eval-episodes", "1", "--run-dir", str(run),
        "--no-progress", "--log-every-s", "0.2",
    ]  # fmt: skip
    assert main([*flags, "--steps", "300"]) == 0, capsys.readouterr().out
    header, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert header["config"]["agent"] == "drrpo"
    assert header["config"]["agent_cfg"]["tv_radius"] == 0.2
    metrics = finite_update_metrics(run, "critic/dual_eta")
    assert "actor/kl_to_reference" in metrics
    assert main([*flags, "--steps", "500", "--resume"]) == 0, capsys.readouterr().out
    header, _ = read_checkpoint(run / "checkpoint.safetensors")
    assert header["metadata"]["counters"]["env_steps"] == 500
    assert "final evaluation of the checkpoint's policy" in capsys.readouterr().out


@pytest.mark.timeout(180)
def test_iwocs_iteration_trains_on_its_model_and_evaluates_over_a_grid(
    tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    agent_cfg = IWOCSConfig(
        hidden_dims=(16,),
        batch_size=16,
        param_names=("actuator_gain", "joint_damping"),
        model_params=(0.6, 10.0),
    )
    cfg = TrainConfig(
        env=REACH,
        env_params={"actuator_gain": 0.6, "joint_damping": 10.0},
        agent="iwocs",
        agent_cfg=agent_cfg,
        actors=1,
        steps=300,
        random_steps=100,
        min_buffer=100,
        eval_episodes=1,
        log_every_s=0.2,
        run_dir=run,
        progress=False,
    )
    result = train(cfg)
    assert result.final_eval is not None and math.isfinite(result.final_eval["eval/return_mean"])
    metrics = finite_update_metrics(run, "iwocs/predictor_l1")
    assert metrics["iwocs/validity_radius"] > 0
    actor_cfg = json.loads((run / "configs" / "actor-0.json").read_text())
    assert actor_cfg["env_params"] == {"actuator_gain": 0.6, "joint_damping": 10.0}
    _, state = read_checkpoint(result.checkpoint)
    assert state["policy"]["components.0.params"].tolist() == pytest.approx([0.6, 10.0])

    png = tmp_path / "grid.png"
    code = main([  # the default box, actuation-wide
        "eval-robust", str(result.checkpoint), "--grid", "2",
        "--episodes", "1", "--png", str(png), "--json", str(tmp_path / "g.json"),
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "worst-case return" in out and "average return" in out
    assert "actuator_gain: sensitivity" in out and "joint_damping: sensitivity" in out
    assert len((tmp_path / "grid.csv").read_text().splitlines()) == 1 + 4  # every point, not
    assert f"every point: {tmp_path / 'grid.csv'}" in out  # printed row by row
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads((tmp_path / "g.json").read_text())
    assert len(figures["points"]) == 4
    assert figures["worst_return"] == min(p["return"] for p in figures["points"])

    resumed = train(dataclasses.replace(cfg, steps=400, resume=True))
    header, state = read_checkpoint(resumed.checkpoint)
    assert header["metadata"]["counters"]["env_steps"] == 400
    assert state["policy"]["components.0.params"].tolist() == pytest.approx([0.6, 10.0])


@pytest.mark.timeout(240)
def test_iwocs_outer_loop_trains_on_the_found_worst_model_and_keeps_the_registry(
    tmp_path: Path,
) -> None:
    from serl.agents.sac import SACConfig
    from serl.checkpoint_eval import load_policy
    from serl.robust.iwocs import SEARCH_SEED_OFFSET, IWOCSRunConfig, read_registry, run_iwocs
    from serl.robust.search import grid_points
    from serl.robust.uncertainty import uncertainty_bounds
    from tests.robust.rollouts import discounted_return

    cfg = IWOCSRunConfig(
        env=REACH,  # and the default box, actuation-wide, which changes Reach
        max_models=2,
        epsilon=-1.0,  # never met: exactly max_models models (tests/robust/test_iwocs_loop.py
        # exercises the stopping rule itself)
        search="grid",
        search_budget=4,
        search_episodes=1,
        validity_scales=(1.0, 4.0),
        train=TrainConfig(
            agent_cfg=SACConfig(hidden_dims=(16,), batch_size=16),
            actors=1,
            steps=200,
            random_steps=100,
            min_buffer=100,
            eval_episodes=1,
            progress=False,
        ),
        run_dir=tmp_path / "iwocs",
    )
    registry = run_iwocs(cfg)
    saved = read_registry(tmp_path / "iwocs")
    assert len(registry) == len(saved) == 2
    centre = {"actuator_gain": 0.9, "joint_damping": 15.5}
    assert saved[0]["params"] == pytest.approx(centre)
    assert saved[1]["params"] == saved[0]["search_params"]  # trained on the worst model found
    corners = grid_points(uncertainty_bounds(REACH, cfg.uncertainty), 2)
    assert saved[0]["search_params"] in corners  # a 2x2 grid: the corners
    policy = load_policy(saved[0]["checkpoint"], env=REACH).policy
    discount = cfg.train.agent_cfg.discount
    values = [
        discounted_return(policy, REACH, p, episodes=1, seed=SEARCH_SEED_OFFSET, discount=discount)
        for p in corners
    ]
    assert saved[0]["search_value"] == pytest.approx(min(values), abs=1e-6), values  # the worst
    assert saved[0]["search_params"] == corners[values.index(min(values))]
    assert all(r["validity_scale"] in (1.0, 4.0) for r in saved)
    _, state = read_checkpoint(Path(saved[-1]["checkpoint"]))
    registry_params = [[r["params"]["actuator_gain"], r["params"]["joint_damping"]] for r in saved]
    for j, params in enumerate(registry_params):
        assert state["policy"][f"components.{j}.params"].tolist() == pytest.approx(params)
    _, first = read_checkpoint(Path(saved[0]["checkpoint"]))
    key = "components.0.q_head.net.0.weight"
    assert state["policy"][key].equal(first["policy"][key])  # model 0 carried over unchanged
