import gymnasium as gym
import numpy as np
import torch

from serl.agents.sac import SACAgent, SACConfig
from serl.data.batch import Batch
from serl.nets.encoders import EncoderConfig

FRAME = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
PIXELS = gym.spaces.Dict(
    {"front": FRAME, "wrist": FRAME, "state": gym.spaces.Box(-1, 1, (4,), np.float32)}
)
ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def pixel_batch(n: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)

    def obs():
        return {
            "front": torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
            "wrist": torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
            "state": torch.rand(n, 4, generator=g),
        }

    return Batch(obs(), torch.rand(n, 2, generator=g) * 2 - 1, torch.randn(n, generator=g), obs(),
                 torch.zeros(n))  # fmt: skip


def _cfg(**kw) -> SACConfig:
    return SACConfig(
        hidden_dims=(32,), batch_size=8, encoder=EncoderConfig(num_filters=8, feature_dim=16, **kw)
    )


def test_encoder_is_trained_by_the_critic_and_not_by_the_actor():
    agent = SACAgent(_cfg(), PIXELS, ACTION)
    before = [p.detach().clone() for p in agent.encoder.parameters()]
    features = agent.encoder(pixel_batch(8).obs)
    agent._actor_step(features.detach())
    assert all(torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters(), strict=True))
    agent.update(pixel_batch(8, seed=1))
    assert any(
        not torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters(), strict=True)
    )


def test_target_encoder_follows_the_online_encoder_by_polyak_averaging():
    agent = SACAgent(_cfg(), PIXELS, ACTION)
    online_before = [p.detach().clone() for p in agent.encoder.parameters()]
    target_before = [p.detach().clone() for p in agent.target_encoder.parameters()]
    agent.update(pixel_batch(8))
    tau = agent.cfg.tau
    for o0, t0, o1, t1 in zip(online_before, target_before, agent.encoder.parameters(),
                              agent.target_encoder.parameters(), strict=True):  # fmt: skip
        torch.testing.assert_close(t1, t0 + tau * (o1.detach() - t0))
        assert torch.equal(t0, o0)


def test_frozen_encoder_never_changes_and_acts_on_dict_observations():
    agent = SACAgent(_cfg(freeze=True), PIXELS, ACTION)
    before = [p.detach().clone() for p in agent.encoder.parameters()]
    agent.update(pixel_batch(8))
    assert all(torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters(), strict=True))
    action = agent.act(PIXELS.sample(), deterministic=True)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
