"""A scripted human overriding the policy: through the actor hook and the env wrapper."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from serl.data.replay import ReplayBuffer
from serl.data.tags import source_code
from serl.envs import make_env
from serl.teleop import Intervention, InterventionWrapper, ScriptedDevice, TeleopCommand
from serl.teleop.device import to_env_action
from serl.transport.protocol import SOURCES
from serl.wrappers import INTERVENE_KEY
from tests.test_actor import FakeClient, make_actor, policy_weights

pytestmark = pytest.mark.timeout(60)


def takes_over_on_steps(steps: set[int], value: float) -> ScriptedDevice:
    """A "human" who intervenes with `value` on the given control steps (counted by reads)."""
    count = {"step": -1}

    def human(obs: Any) -> TeleopCommand:
        count["step"] += 1
        if count["step"] in steps:
            return TeleopCommand(np.array([value], np.float32), intervening=True)
        return TeleopCommand(np.array([0.9], np.float32), intervening=False)

    return ScriptedDevice(human)


def test_actor_stores_the_humans_actions_tagged_intervention() -> None:
    client = FakeClient(policy_weights())
    hook = Intervention(takes_over_on_steps({3, 4, 5, 6, 12}, -0.5))
    actor = make_actor(client, max_steps=20)
    actor.action_override = hook  # what Actor(cfg, action_override=hook) sets
    counters = actor.run()
    sources = client.column("source")
    actions = client.column("action")
    taken = np.flatnonzero(sources == SOURCES.index("intervention"))
    assert taken.tolist() == [3, 4, 5, 6, 12]
    np.testing.assert_array_equal(actions[taken], -0.5)
    np.testing.assert_array_equal(np.stack(actor.env.actions)[taken], -0.5)  # executed too
    others = np.setdiff1d(np.arange(20), taken)
    assert (sources[others] == SOURCES.index("online")).all()
    assert not np.isclose(actions[others], 0.9).any()  # a non-intervening device is ignored
    assert counters.interventions == 5 == hook.steps


def test_wrapper_executes_and_reports_the_humans_action_and_copies_it_to_a_demo_buffer() -> None:
    env = make_env("Pendulum-v1", max_episode_steps=10)
    demos = ReplayBuffer(env.observation_space, action_dim=1, capacity=64)
    wrapped = InterventionWrapper(env, takes_over_on_steps({1, 2, 7}, 0.25), copy_to=demos)
    wrapped.reset(seed=0)
    reported = []
    for _ in range(10):
        *_, info = wrapped.step(np.array([-1.0], np.float32))
        reported.append(info.get(INTERVENE_KEY))
    assert [i for i, a in enumerate(reported) if a is not None] == [1, 2, 7]
    np.testing.assert_array_equal(reported[2], [0.25])
    assert len(demos) == 3
    tags = demos.tags(np.flatnonzero(demos.state_arrays()["valid"]))
    assert tags["t"].tolist() == [1, 2, 7]
    assert (tags["source"] == source_code("intervention")).all()


def test_wrapper_reports_a_success_mark() -> None:
    device = ScriptedDevice([TeleopCommand(), TeleopCommand(success=True)])
    wrapped = InterventionWrapper(make_env("Pendulum-v1"), device)
    wrapped.reset(seed=0)
    assert "human_success" not in wrapped.step(np.zeros(1, np.float32))[-1]
    assert wrapped.step(np.zeros(1, np.float32))[-1]["human_success"] is True


@pytest.mark.parametrize(
    ("dim", "expected"),
    [(3, [0.1, 0.2, 0.3]), (4, [0.1, 0.2, 0.3, 1.0]), (6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])],
)
def test_a_device_7_vector_maps_to_the_envs_action_layout(dim: int, expected: list) -> None:
    twist = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0], np.float32)
    np.testing.assert_allclose(to_env_action(twist, dim), expected)


def test_a_command_that_fits_no_layout_is_refused_naming_both_sizes() -> None:
    with pytest.raises(ValueError, match="size 5 does not map to env actions of size 2"):
        to_env_action(np.zeros(5), 2)


def test_intervention_wrapper_refuses_discrete_actions() -> None:
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="Box action space"):
        InterventionWrapper(env, ScriptedDevice([]))
