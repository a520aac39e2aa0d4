"""The `serl` command: help texts, config files, keys and checkpoint evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from serl.agents.sac import SACAgent, SACConfig
from serl.checkpoint import save_checkpoint
from serl.cli import _process_config, main
from serl.config import config_hash, config_to_dict
from serl.learner import LearnerConfig

pytestmark = pytest.mark.timeout(60)


def test_serl_help_lists_the_process_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serl.cli", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for name in ("train", "learner", "actor", "eval", "keys", "bench", "pretrain-encoder"):
        assert f"\n  {name} " in result.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("train", ["--steps", "--actors", "--run-dir", "--resume", "--agent-cfg.hidden-dims"]),
        ("learner", ["--data-endpoint", "--keys-dir", "--utd-ratio", "--min-buffer", "--resume"]),
        ("actor", ["--learner-host", "--actor-id", "--control-hz", "--spill-dir", "--max-steps"]),
    ],
)
def test_command_help_shows_its_config_flags(command: str, flags: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in flags:
        assert flag in out


def test_eval_and_keys_help(capsys) -> None:
    for command in ("eval", "keys"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--video" in out and "generate" in out


def test_config_file_sits_between_the_preset_defaults_and_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    path.write_text(
        json.dumps({"env": "MountainCarContinuous-v0", "agent": "rlpd", "agent_cfg": {"utd": 4}})
    )
    cfg = _process_config(LearnerConfig, ["--config", str(path), "--seed", "5"], "serl learner")
    assert cfg.env == "MountainCarContinuous-v0" and cfg.seed == 5
    assert cfg.agent == "rlpd"
    assert cfg.agent_cfg.utd == 4 and cfg.agent_cfg.num_qs == 10  # file over the rlpd preset
    assert isinstance(cfg.run_dir, Path)
    flagged = _process_config(
        LearnerConfig, ["--config", str(path), "--agent-cfg.utd", "2"], "serl learner"
    )
    assert flagged.agent_cfg.utd == 2


def test_keys_generate_writes_a_learner_and_named_actor_keypairs(tmp_path: Path, capsys) -> None:
    assert main(["keys", "generate", str(tmp_path / "k"), "--clients", "robot-0", "robot-1"]) == 0
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == [
        "authorized",
        "robot-0.key",
        "robot-0.key_secret",
        "robot-1.key",
        "robot-1.key_secret",
        "server.key",
        "server.key_secret",
    ]
    assert sorted(p.name for p in (tmp_path / "k" / "authorized").iterdir()) == [
        "robot-0.key",
        "robot-1.key",
    ]
    assert "robot-1" in capsys.readouterr().out


class DotEnv(gym.Env):
    """A point on a line that the action pushes; renders a 16x16 frame with the point."""

    metadata: dict[str, Any]

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.render_mode = render_mode
        self.x = 0.0
        self.frame = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.x, 0.0, 1.0], np.float32)

    def step(self, action: np.ndarray) -> Any:
        self.x = float(np.clip(self.x + 0.1 * float(action[0]), -10, 10))
        return self._obs(), -abs(self.x), False, False, {"success": abs(self.x) < 0.1}

    def render(self) -> np.ndarray:
        self.frame += 1
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[8, int(np.clip(8 + self.x * 4, 0, 15))] = 255
        frame[0, self.frame % 16, 0] = 255  # every frame differs (GIF merges equal ones)
        return frame


def test_eval_runs_a_checkpoint_policy_and_saves_a_gif(tmp_path: Path, capsys) -> None:
    gym.register("SerlTestDot-v0", entry_point=DotEnv, max_episode_steps=12)
    try:
        cfg = SACConfig(hidden_dims=(8,), batch_size=4)
        env = gym.make("SerlTestDot-v0")
        agent = SACAgent(cfg, env.observation_space, env.action_space)
        config = {"env": "SerlTestDot-v0", "agent": "sac", "agent_cfg": config_to_dict(cfg)}
        path = tmp_path / "checkpoint.safetensors"
        save_checkpoint(path, agent.state_dict(), config=config, config_hash=config_hash(cfg))
        gif = tmp_path / "eval.gif"
        assert main(["eval", str(path), "--episodes", "2", "--video", str(gif)]) == 0
    finally:
        gym.registry.pop("SerlTestDot-v0")
    out = capsys.readouterr().out
    assert "sac policy on SerlTestDot-v0, 2 episodes: return" in out and "length 12" in out
    from PIL import Image

    with Image.open(gif) as image:
        # a frame after each reset and each step, and each episode's last one held
        assert image.n_frames == 2 * 13 + 2
        assert image.size == (160, 160 + 22)  # enlarged for the counter strip above it


@pytest.mark.parametrize(
    ("agent", "flag", "field"),
    [
        ("h2o", "--agent-cfg.discriminator-lr", "discriminator_lr"),
        ("moorl", "--agent-cfg.meta-step-size", "meta_step_size"),
        ("famo2o", "--agent-cfg.discount", "discount"),
        ("drrpo", "--agent-cfg.tv-radius", "tv_radius"),
        ("bc", "--agent-cfg.lr", "lr"),
    ],
)
def test_agent_cfg_flags_are_those_of_the_presets_own_config(agent, flag, field) -> None:
    from serl.agents.registry import agent_spec

    cfg = _process_config(LearnerConfig, ["--agent", agent, flag, "0.25"], "serl learner")
    assert type(cfg) is LearnerConfig and type(cfg.agent_cfg) is agent_spec(agent).config_type
    assert cfg.agent == agent and getattr(cfg.agent_cfg, field) == 0.25


@pytest.mark.parametrize(
    "args, names",
    [
        (["train", "--agent", "sacc"], "choose one of ['bc', 'drq'"),
        (["train", "--env", "Pendulumm-v1"], "Did you mean: `Pendulum`"),
        (["train-local", "--agent", "sacc"], "choose one of"),
        (["train-local", "--env", "Pendulumm-v1"], "Ids are gymnasium ids"),
    ],
)
def test_a_typo_in_agent_or_env_is_one_line_naming_the_choices(
    tmp_path: Path, capsys, monkeypatch, args: list[str], names: str
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and names in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before any process or run directory
