"""The actor loop in-process, with a recording env and a fake transport client."""

from __future__ import annotations

import io
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from serl.actor import Actor, ActorConfig, sanitize_action
from serl.agents.sac import SACConfig
from serl.agreement import actor_policy, policy_numpy
from serl.envs import make_env
from serl.processes import free_port
from serl.transport.client import Weights
from serl.transport.protocol import SOURCES

pytestmark = pytest.mark.timeout(60)

TINY = SACConfig(hidden_dims=(16,), batch_size=8)


class RecordingEnv(gym.Wrapper):
    """Remembers every action passed to env.step, and when."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[np.ndarray] = []
        self.times: list[float] = []

    def step(self, action: Any) -> Any:
        self.actions.append(np.array(action))
        self.times.append(time.monotonic())
        return self.env.step(action)


class FakeClient:
    """What Actor uses of ActorClient, recording chunks and episode statistics."""

    data_endpoint = "tcp://fake:1"
    weights_endpoint = "tcp://fake:2"

    def __init__(self, weights: Weights | None = None) -> None:
        self.weights = weights
        self.chunks: list[dict[str, np.ndarray]] = []
        self.episodes: list[dict[str, Any]] = []
        self.closed = False

    def send_chunk(
        self, arrays: dict[str, np.ndarray], *, copy: bool = True, timeout_s: float | None = None
    ) -> int:
        self.chunks.append(arrays)
        return len(self.chunks) - 1

    def send_episode_stats(self, stats: dict[str, Any]) -> None:
        self.episodes.append(dict(stats))

    def latest_weights(self, newer_than: int = -1) -> Weights | None:
        if self.weights is None or self.weights.version <= newer_than:
            return None
        return self.weights

    def wait_for_weights(self, timeout_s: float, newer_than: int = -1) -> Weights:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            weights = self.latest_weights(newer_than)
            if weights is not None:
                return weights
            time.sleep(0.005)
        raise TimeoutError("no weights")

    def close(self, timeout_s: float = 0.0) -> bool:
        self.closed = True
        return True

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([chunk[name] for chunk in self.chunks])


def policy_weights(
    version: int = 3, fill: float | None = None, env_id: str = "Pendulum-v1"
) -> Weights:
    env = make_env(env_id)
    tensors = policy_numpy(actor_policy(TINY, env.observation_space, env.action_space).state_dict())
    if fill is not None:
        tensors = {name: np.full_like(value, fill) for name, value in tensors.items()}
    return Weights(version, tensors, 0, 0)


def make_actor(client: FakeClient, episode_steps: int = 20, **overrides: Any) -> Actor:
    env = RecordingEnv(make_env("Pendulum-v1", max_episode_steps=episode_steps))
    cfg = ActorConfig(**({"agent_cfg": TINY, "random_steps": 0, "eval_every": 0} | overrides))
    return Actor(cfg, env=env, client=client)  # type: ignore[arg-type]


def test_nan_action_from_the_policy_never_reaches_the_env() -> None:
    client = FakeClient(policy_weights(fill=float("nan")))  # a policy that outputs NaN
    actor = make_actor(client, max_steps=30)
    counters = actor.run()
    actions = np.stack(actor.env.actions)
    assert len(actions) == 30
    assert np.isfinite(actions).all()
    np.testing.assert_array_equal(actions, 0.0)  # held at zero
    assert counters.nonfinite_actions == 30
    assert sum(e["nonfinite_actions"] for e in client.episodes) == 20  # one whole episode


@pytest.mark.parametrize(
    ("action", "previous", "hold", "expected", "held"),
    [
        ([0.5], [0.2], "zero", [0.5], False),
        ([3.0], None, "zero", [1.0], False),
        ([np.nan], [0.2], "zero", [0.0], True),
        ([np.inf], [0.2], "previous", [0.2], True),
        ([-np.inf], None, "previous", [0.0], True),
        ([0.1, 0.2], [0.2], "previous", [0.2], True),
    ],
)
def test_sanitize_action_clips_finite_actions_and_holds_non_finite_ones(
    action, previous, hold, expected, held
) -> None:
    space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    prev = None if previous is None else np.array(previous, np.float32)
    out, was_held = sanitize_action(np.array(action, np.float32), prev, space, hold)
    np.testing.assert_array_equal(out, np.array(expected, np.float32))
    assert was_held is held and out.dtype == np.float32


def test_the_human_action_replaces_the_policy_action_and_is_tagged_intervention() -> None:
    client = FakeClient(policy_weights())
    human = np.array([0.75], np.float32)

    def override(obs: Any, policy_action: np.ndarray) -> np.ndarray | None:
        return human if len(actor.env.actions) % 4 == 0 else None

    actor = make_actor(client, max_steps=20)
    actor.action_override = override
    counters = actor.run()
    sources = client.column("source")
    actions = client.column("action")
    taken = np.flatnonzero(sources == SOURCES.index("intervention"))
    assert taken.tolist() == [0, 4, 8, 12, 16]
    np.testing.assert_array_equal(actions[taken], 0.75)
    assert (sources[np.setdiff1d(np.arange(20), taken)] == SOURCES.index("online")).all()
    assert counters.interventions == 5 and client.episodes[0]["interventions"] == 5


def test_evaluation_episodes_send_statistics_but_never_transitions() -> None:
    client = FakeClient(policy_weights())
    actor = make_actor(client, episode_steps=10, max_steps=30, eval_every=1)
    counters = actor.run()
    assert counters.eval_episodes == 2 and counters.episodes == 3
    assert [e["eval"] for e in client.episodes] == [False, True, False, True, False]
    assert len(client.column("reward")) == 30  # training steps only
    assert client.column("episode_id").tolist() == [i // 10 for i in range(30)]
    assert len(actor.env.actions) == 50  # the env did run the evaluation episodes


def test_chunks_carry_episode_id_t_policy_version_and_random_warm_up_tags() -> None:
    client = FakeClient(policy_weights(version=7))
    actor = make_actor(client, episode_steps=10, max_steps=25, random_steps=5, chunk_size=4)
    actor.run()
    assert client.column("t").tolist() == [i % 10 for i in range(25)]
    versions = client.column("policy_version")
    assert versions.tolist() == [-1] * 5 + [7] * 20
    assert max(len(chunk["reward"]) for chunk in client.chunks) == 4
    np.testing.assert_array_equal(client.column("next_obs/state")[:-1][:9],
                                  client.column("obs/state")[1:10])  # fmt: skip


def test_the_actor_waits_for_weights_before_its_first_policy_action() -> None:
    client = FakeClient(None)
    actor = make_actor(client, max_steps=5)
    arrived = []

    def publish_later() -> None:
        time.sleep(0.4)
        arrived.append(time.monotonic())
        client.weights = policy_weights(version=11)

    thread = threading.Thread(target=publish_later)
    thread.start()
    counters = actor.run()
    thread.join()
    assert actor.env.times[0] >= arrived[0]
    assert counters.first_policy_version == 11
    assert client.column("policy_version").tolist() == [11] * 5


def test_fixed_rate_loop_keeps_the_period_and_reports_jitter() -> None:
    client = FakeClient(policy_weights())
    actor = make_actor(client, episode_steps=25, max_steps=25, control_hz=50.0)
    started = time.monotonic()
    actor.run()
    elapsed = time.monotonic() - started
    periods = np.diff(actor.env.times)
    assert elapsed >= 24 / 50.0
    assert abs(np.median(periods) - 0.02) < 0.005
    stats = client.episodes[0]
    assert 0 <= stats["jitter_p50_ms"] <= stats["jitter_p99_ms"]
    assert stats["jitter_p50_ms"] < 5.0


def test_a_stop_while_the_outbox_is_full_does_not_hang() -> None:
    class FullClient(FakeClient):
        def send_chunk(self, arrays, *, copy=True, timeout_s=None):  # type: ignore[override]
            time.sleep(timeout_s or 0)
            raise TimeoutError("outbox full")

    client = FullClient(policy_weights())
    actor = make_actor(client, chunk_size=4)
    threading.Timer(0.3, actor.stop.request).start()
    started = time.monotonic()
    counters = actor.run()  # every flush blocks until the stop
    assert time.monotonic() - started < 5.0
    assert counters.chunks == 0 and client.closed


class ResetParams(gym.Wrapper):
    """Remembers the dynamics parameters in force after every reset."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.params: list[dict[str, float]] = []

    def reset(self, **kwargs: Any) -> Any:
        result = self.env.reset(**kwargs)
        self.params.append(dict(self.env.unwrapped.get_params()))
        return result


def test_randomize_draws_training_dynamics_from_the_box_and_evaluates_at_the_env_params() -> None:
    env = ResetParams(make_env("sim:PandaReach-v0", max_episode_steps=3, params={"friction": 0.8}))
    cfg = ActorConfig(
        env="sim:PandaReach-v0", env_params={"friction": 0.8},
        randomize="actuator_gain=0.5:0.7,friction=1.2:1.5", agent_cfg=TINY, random_steps=0,
        eval_every=1, max_steps=12,
    )  # fmt: skip
    client = FakeClient(policy_weights(env_id="sim:PandaReach-v0"))
    Actor(cfg, env=env, client=client).run()  # type: ignore[arg-type]
    evals = [e["eval"] for e in client.episodes]
    assert evals == [False, True] * 3 + [False]  # the run ends with its last training step
    train = [p for p, is_eval in zip(env.params, evals, strict=True) if not is_eval]
    for params in train:
        assert 0.5 <= params["actuator_gain"] <= 0.7 and 1.2 <= params["friction"] <= 1.5
    assert len({p["actuator_gain"] for p in train}) == 4  # a new draw every episode
    for params, is_eval in zip(env.params, evals, strict=True):
        if is_eval:
            assert params["actuator_gain"] == 1.0 and params["friction"] == 0.8


def test_randomize_names_an_unknown_parameter_and_a_non_sim_env() -> None:
    with pytest.raises(ValueError, match="no parameter mass; its parameters are"):
        Actor(
            ActorConfig(env="sim:PandaReach-v0", randomize="mass=1:2", agent_cfg=TINY),
            env=make_env("sim:PandaReach-v0"), client=FakeClient(),  # type: ignore[arg-type]
        )  # fmt: skip
    with pytest.raises(ValueError, match="needs a sim: env"):
        make_actor(FakeClient(), randomize="m=1:2")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_keeps_counting_through_an_outage_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No learner at all: the robot's actor steps on, its bar shows the outage and the spill."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    env = make_env("Pendulum-v1", max_episode_steps=50)
    cfg = ActorConfig(
        agent_cfg=TINY, actor_id="robot-0", data_port=free_port(), weights_port=free_port(),
        random_steps=250, max_steps=250, control_hz=100.0, chunk_size=10, eval_every=0,
        spill_dir=tmp_path / "spill", outbox_limit=2, close_timeout_s=0.0,
    )  # fmt: skip
    Actor(cfg, env=env).run()
    shown = screen.getvalue()
    assert "250/250" in shown
    assert "learner UNREACHABLE" in shown and "spilled so far" in shown
