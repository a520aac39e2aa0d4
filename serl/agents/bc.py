"""Behaviour cloning: maximum likelihood of demonstrated actions under the tanh-Gaussian policy.

L = −E_(s,a)~D[log π(a|s)], with the same policy network (and image encoder) as SAC, so a BC
policy can serve as SAC's starting point or as a reference policy. Image observations are
randomly shifted as in DrQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from serl.agents.policy import PolicyAgentMixin
from serl.agents.sac import SACConfig, make_policy
from serl.data.batch import Batch
from serl.nets.augment import shift_image_keys
from serl.nets.encoders import EncoderConfig


@dataclass(frozen=True)
class BCConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the policy."""
    lr: float = 3e-4
    """Adam learning rate."""
    batch_size: int = 256
    """Rows per update."""
    encoder: EncoderConfig = EncoderConfig()
    """Image encoder settings (used only when observations contain uint8 images)."""


class BCAgent(PolicyAgentMixin):
    def __init__(
        self,
        cfg: BCConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.act_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        policy_cfg = SACConfig(hidden_dims=cfg.hidden_dims, encoder=cfg.encoder)
        self.policy = make_policy(policy_cfg, observation_space, action_space).to(self.device)
        if cfg.encoder.freeze:
            self.policy.encoder.requires_grad_(False)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, fused=True)
        self.steps = 0

    def update(self, batch: Batch) -> dict[str, float]:
        batch.check_finite()
        batch = batch.to(self.device)
        encoder = self.policy.encoder
        obs = shift_image_keys(
            batch.obs, encoder.image_keys, self.cfg.encoder.augment_pad, self.generator
        )
        features = encoder(obs)
        log_prob = self.policy.head.log_prob(features, batch.action)
        loss = -log_prob.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        with torch.no_grad():
            mse = (self.policy.head.mode(features) - batch.action).pow(2).mean()
        return {"bc/loss": loss.item(), "bc/action_mse": mse.item()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optim": self.optimizer.state_dict(),
            "rng": {"update": self.generator.get_state(), "act": self.act_generator.get_state()},
            "counters": {"steps": self.steps},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optim"])
        self.generator.set_state(state["rng"]["update"])
        self.act_generator.set_state(state["rng"]["act"])
        self.steps = int(state["counters"]["steps"])
