import json
from pathlib import Path

import pytest

from serl.agents.sac import SACAgent, SACConfig
from serl.checkpoint import load_into
from serl.cli import main
from serl.envs import make_env
from serl.local import LocalTrainConfig, train_local


def test_train_local_writes_metrics_curve_and_a_loadable_checkpoint(tmp_path):
    cfg = LocalTrainConfig(
        env="Pendulum-v1",
        agent_cfg=SACConfig(hidden_dims=(16,), batch_size=32),
        steps=400,
        random_steps=100,
        start_training=100,
        eval_every=200,
        eval_episodes=1,
        log_every=50,
        run_dir=tmp_path / "run",
        progress=False,
    )
    result = train_local(cfg)
    records = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    evals = [r for r in records if "eval/return_mean" in r]
    assert [r["step"] for r in evals] == [200, 400]
    assert any("critic/loss" in r for r in records)
    assert result.curve_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((tmp_path / "run/tensorboard").iterdir())
    env = make_env("Pendulum-v1")
    agent = SACAgent(cfg.agent_cfg, env.observation_space, env.action_space)
    header = load_into(result.checkpoint, agent)
    assert header["metadata"]["env_steps"] == 400
    assert agent.critic_steps == 301


def test_train_local_cli_prints_the_evaluation_and_where_the_outputs_are(tmp_path, capsys):
    code = main(
        ["train-local", "--agent", "rlpd", "--steps", "60", "--random-steps", "50",
         "--start-training", "50", "--eval-every", "60", "--eval-episodes", "1",
         "--agent-cfg.utd", "2", "--agent-cfg.batch-size", "8",
         "--agent-cfg.hidden-dims", "8", "--run-dir", str(tmp_path), "--no-progress"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "final evaluation on Pendulum-v1: return" in out
    assert "success" not in out  # Pendulum has no success to report
    assert str(tmp_path / "checkpoint.safetensors") in out
    # The README's next step: look at the policy (Pendulum renders with pygame, a dependency).
    gif = tmp_path / "policy.gif"
    checkpoint = str(tmp_path / "checkpoint.safetensors")
    assert main(["eval", checkpoint, "--episodes", "1", "--video", str(gif)]) == 0
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames > 100  # 200 steps, merged repeats
        assert image.size[0] == 500 and image.size[1] > 500  # the counter strip on top


def test_unknown_env_id_is_refused_with_the_kinds_of_ids_accepted():
    with pytest.raises(ValueError, match="gymnasium ids"):
        make_env("NoSuchEnv-v9")


@pytest.mark.slow
def test_sac_learns_pendulum_above_threshold(tmp_path):
    """Issue 2: mean return >= -250 over 10 evaluation episodes within 20k env steps."""
    cfg = LocalTrainConfig(env="Pendulum-v1", steps=7_000, eval_every=7_000, eval_episodes=10,
                           run_dir=Path(tmp_path), progress=False)  # fmt: skip
    result = train_local(cfg)
    assert result.final_eval["eval/return_mean"] >= -250


def test_a_run_dir_holding_a_run_is_refused_and_the_default_is_a_new_one(
    tmp_path, capsys, monkeypatch
):
    args = ["train-local", "--steps", "30", "--random-steps", "20", "--start-training", "20",
            "--eval-every", "30", "--eval-episodes", "1", "--agent-cfg.hidden-dims", "8",
            "--agent-cfg.batch-size", "8", "--no-progress"]  # fmt: skip
    assert main([*args, "--run-dir", str(tmp_path / "run")]) == 0
    before = (tmp_path / "run/metrics.jsonl").read_bytes()
    assert (
        main([*args, "--env", "MountainCarContinuous-v0", "--run-dir", str(tmp_path / "run")]) != 0
    )
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run/metrics.jsonl").read_bytes() == before  # nothing appended
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    (made,) = (tmp_path / "runs/local").iterdir()
    assert made.name.startswith("Pendulum-v1-sac-") and (made / "checkpoint.safetensors").exists()
