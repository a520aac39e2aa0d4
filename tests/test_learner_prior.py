"""The learner with prior data: RLPD symmetric batches, offline pre-training, HIL-SERL copies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from serl.agents.sac import SACAgent
from serl.data.batch import Batch
from serl.data.datasets import Episode, append_episode
from serl.learner import Learner, LearnerConfig, LearnerError
from serl.transport.protocol import SOURCES
from tests.test_learner import TINY, config, inject, pendulum_chunk

pytestmark = pytest.mark.timeout(60)


def demo_dataset(path: Path, episodes: int = 3, steps: int = 10, value: float = -0.5) -> Path:
    for _ in range(episodes):
        append_episode(
            path,
            Episode(
                observations=np.full((steps + 1, 3), value, np.float32),
                actions=np.full((steps, 1), 0.5, np.float32),
                rewards=np.zeros(steps, np.float32),
                terminations=np.zeros(steps, bool),
                truncations=np.eye(1, steps, steps - 1, dtype=bool)[0],
                success=True,
            ),
            {"env_id": "Pendulum-v1"},
        )
    return path


@pytest.fixture
def make_learner() -> Iterator[Callable[..., Learner]]:
    made: list[Learner] = []

    def make(cfg: LearnerConfig) -> Learner:
        made.append(Learner(cfg))
        return made[-1]

    yield make
    for learner in made:
        learner.close()


class Recorder:
    """Wraps an agent's update to keep the batches it was given."""

    def __init__(self, learner: Learner) -> None:
        self.batches: list[Batch] = []
        update = learner.agent.update

        def recording(batch: Batch) -> dict[str, float]:
            self.batches.append(batch)
            return update(batch)

        learner.agent.update = recording


def test_batches_are_half_prior_half_online_interleaved(tmp_path, make_learner) -> None:
    learner = make_learner(config(tmp_path, prior_data=demo_dataset(tmp_path / "demos")))
    recorder = Recorder(learner)
    inject(learner, pendulum_chunk(40, value=0.1))
    learner.step()
    (batch,) = recorder.batches
    np.testing.assert_array_equal(batch.prior.numpy(), np.tile([0.0, 1.0], len(batch) // 2))
    obs = batch.obs["state"] if isinstance(batch.obs, dict) else batch.obs
    np.testing.assert_allclose(obs[batch.prior == 1].numpy(), -0.5)  # the demos' value
    assert bool((obs[batch.prior == 0] > 0).all())  # the actor's (0.1 or 0.11)


def test_offline_updates_run_on_prior_data_before_any_online_step(tmp_path, make_learner) -> None:
    cfg = config(tmp_path, prior_data=demo_dataset(tmp_path / "demos"), offline_updates=7)
    learner = make_learner(cfg)
    recorder = Recorder(learner)
    learner.pretrain()
    assert learner.counters.updates == learner.counters.offline_updates == 7
    assert all(bool((b.prior == 1).all()) for b in recorder.batches)
    assert learner.server.weights_version == 7  # actors start from the pre-trained policy
    assert not learner.update_allowed  # the online rate limiter does not count them
    inject(learner, pendulum_chunk(40))
    assert learner.update_allowed


def test_interventions_join_the_prior_buffer_and_survive_resume(tmp_path, make_learner) -> None:
    cfg = config(tmp_path, prior_data=demo_dataset(tmp_path / "demos"), interventions_to_prior=True)
    learner = make_learner(cfg)
    before = len(learner.prior_buffer)
    chunk = pendulum_chunk(10)
    chunk["source"][[2, 3, 7]] = SOURCES.index("intervention")
    inject(learner, chunk)
    assert len(learner.prior_buffer) == before + 3
    assert len(learner.buffer) == 10  # they stay in the online buffer too
    learner.checkpoint()
    learner.close()
    resumed = make_learner(
        config(tmp_path, **(vars(cfg) | {"resume": True, "run_dir": cfg.run_dir}))
    )
    assert len(resumed.prior_buffer) == before + 3


def test_prior_data_of_another_env_is_refused_with_its_path(tmp_path, make_learner) -> None:
    bad = tmp_path / "other"
    append_episode(
        bad,
        Episode(
            observations=np.zeros((3, 5), np.float32),
            actions=np.zeros((2, 1), np.float32),
            rewards=np.zeros(2, np.float32),
            terminations=np.zeros(2, bool),
            truncations=np.zeros(2, bool),
        ),
    )
    with pytest.raises(LearnerError, match=f"--prior-data {bad} does not fit env 'Pendulum-v1'"):
        make_learner(config(tmp_path, prior_data=bad))
    with pytest.raises(LearnerError, match="--prior-data"):
        make_learner(config(tmp_path, prior_data=tmp_path / "missing"))


def test_interventions_to_prior_without_prior_data_is_refused(tmp_path, make_learner) -> None:
    with pytest.raises(LearnerError, match="needs --prior-data"):
        make_learner(config(tmp_path, interventions_to_prior=True))


def test_sac_update_ignores_the_prior_mask(tmp_path) -> None:

    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    a, b = (SACAgent(TINY, obs_space, act_space, seed=0) for _ in range(2))
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        obs=torch.rand(8, 3, generator=g),
        action=torch.rand(8, 1, generator=g) * 2 - 1,
        reward=torch.rand(8, generator=g),
        next_obs=torch.rand(8, 3, generator=g),
        terminated=torch.zeros(8),
    )
    a.update(batch)
    batch.prior = torch.ones(8)
    b.update(batch)
    for p, q in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_trajectory_weighting_draws_the_best_demo_most(tmp_path, make_learner) -> None:
    path = demo_dataset(tmp_path / "demos", episodes=4, value=-0.5)
    good = Episode(
        observations=np.full((11, 3), -0.9, np.float32),
        actions=np.full((10, 1), 0.5, np.float32),
        rewards=np.ones(10, np.float32),  # return 10; the others return 0
        terminations=np.zeros(10, bool),
        truncations=np.eye(1, 10, 9, dtype=bool)[0],
    )
    append_episode(path, good)
    cfg = config(tmp_path, prior_data=path, prior_weighting="trajectory")
    learner = make_learner(cfg)
    recorder = Recorder(learner)
    inject(learner, pendulum_chunk(40))
    for _ in range(5):
        learner.step()
    prior_obs = torch.cat([b.obs[b.prior == 1] for b in recorder.batches])
    from_good = (prior_obs[:, 0] < -0.8).float().mean().item()
    # softmax(normalised return / 0.1) puts e^10 times the weight of each other episode on it.
    assert from_good > 0.99


def test_checkpoints_log_tq_and_saco_of_the_buffers(tmp_path, make_learner) -> None:
    cfg = config(
        tmp_path,
        prior_data=demo_dataset(tmp_path / "demos"),
        tq_random_return=-10.0,
        tq_expert_return=0.0,
    )
    learner = make_learner(cfg)
    inject(learner, pendulum_chunk(10, value=0.1))
    inject(learner, pendulum_chunk(10, value=0.3, episode=1), seq=1)
    diagnostics = learner.diagnostics()
    # Prior: one cell; online: two (0.1/0.11 and 0.3/0.31 fall in different tenths of the grid).
    assert diagnostics["buffer/saco"] == 2.0
    assert diagnostics["buffer/prior_tq"] == 1.0  # the demos return 0 = the expert return
    assert "buffer/tq" not in diagnostics  # no online episode has ended yet
    learner.checkpoint()
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").open()]
    assert any(r.get("buffer/saco") == 2.0 for r in records)
