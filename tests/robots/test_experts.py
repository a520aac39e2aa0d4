"""The scripted expert of `robot:` reach tasks, and its refusal on tasks it cannot drive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robots.env import STATE_DIM, make
from robots.experts import make_expert
from serl.cli import main

GOAL = [0.55, 0.08, 0.33]


def task_file(tmp_path: Path, **fields: object) -> Path:
    """A reach task (no server is contacted: making the env reads only the file)."""
    path = tmp_path / "reach.json"
    path.write_text(json.dumps({"goal_pos_m": GOAL, "action_scale_m": 0.02} | fields))
    return path


def observation(tcp: list[float]) -> dict[str, np.ndarray]:
    state = np.zeros(STATE_DIM, np.float32)
    state[:3] = tcp
    return {"state": state}


def test_reach_expert_steps_at_the_goal_by_at_most_a_full_action(tmp_path: Path) -> None:
    expert = make_expert(make(str(task_file(tmp_path))))
    far_below = np.array(GOAL) - [0.1, 0.0, 0.005]  # 10 cm short in x, 5 mm low
    np.testing.assert_allclose(expert(observation(far_below.tolist())), [1.0, 0.0, 0.25], atol=1e-5)
    np.testing.assert_allclose(expert(observation(GOAL)), [0.0, 0.0, 0.0], atol=1e-6)


def test_reach_expert_leaves_rotation_and_gripper_alone(tmp_path: Path) -> None:
    env = make(str(task_file(tmp_path, action_scale_rad=0.1, gripper=True)))
    action = make_expert(env)(observation([0.5, 0.1, 0.33]))
    assert action.shape == env.action_space.shape == (7,)
    np.testing.assert_allclose(action, [1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0], atol=1e-6)


def test_record_demos_names_the_devices_for_a_task_without_a_goal(tmp_path: Path, capsys) -> None:
    task = task_file(tmp_path, reward="none")
    args = ["record-demos", "--env", f"robot:{task}", "--out", str(tmp_path / "d")]
    assert main([*args, "--device", "expert"]) == 2
    out = capsys.readouterr().out
    assert "scripted experts exist only for 'goal' (reach) tasks" in out
    assert "--device spacemouse" in out


@pytest.mark.parametrize(("prefix", "module"), [("robot", "robots"), ("sim", "sim")])
def test_record_demos_finds_the_expert_beside_the_env_factory(prefix: str, module: str) -> None:
    from serl.teleop.commands import experts_module

    assert experts_module(prefix) == f"{module}.experts"
