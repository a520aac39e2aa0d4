"""H2O: dynamics-aware hybrid offline-and-online RL (Niu et al. 2022, "When to Trust Your
Simulator: Dynamics-Aware Hybrid Offline-and-Online Reinforcement Learning").

Data: a fixed "real" dataset (the learner's prior data, `Batch.prior == 1`) and online rollouts
in an imperfect simulator ("sim", `Batch.prior == 0`). One `update`:

1. Dynamics classifiers (Sec. 4.2, Eq. 6-7): D_sa(s,a) and D_sas(s,a,s') each give logits
   (real, sim) bounded by 2·tanh, trained by cross-entropy on every real and sim row of the
   batch with Gaussian input noise (0.1) in training only. The (s,a,s') class probabilities
   are softmax(D_sas + D_sa) — the sum of both logits.
2. Dynamics ratio on sim rows (Eq. 7):
   ρ = P_real/P_sim = [p(real|sas)·p(sim|sa)] / [p(sim|sas)·p(real|sa)], clamped to
   [1e-5, 1] so sim data is only ever down-weighted.
3. Dynamics gap (Eq. 10): u(s,a) ≈ KL(P_sim ‖ P_real), the mean of log(P_sim/P_real) over
   `gap_samples` copies of s' perturbed with N(0, std(real states)²), clamped to
   [1e-45, 10]; ω = u / Σ_batch u.
4. Critic (Eq. 9, per head k; the first `critic_rows_per_source` real and sim rows),
   y = r + γ(1−d) min_k Q̄_k(s',a'), a' ~ π(·|s'), no entropy term:
   L_k = mse(Q_k real, y) + mse(√ρ·Q_k sim, √ρ·y)
         + β·clip(logsumexp_over_sim_batch(Q_k(s,a) + log ω) − mean Q_k(real), −1000, 1000),
   the logsumexp taken over the batch dimension (a gap-weighted soft maximum of sim Q values).
5. Actor and temperature: SAC (Haarnoja et al. 2018, Eq. 7 and 18) on the real and sim states
   of the critic rows together, H̄ = −|A|, actor against min_k Q_k.

A batch with no sim rows (the learner's offline updates before any rollout arrives) trains
the critic on real rows only, without the penalty and the classifiers; a batch without real
rows is refused, because every term of H2O compares against real data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from serl.agents.policy import ActorPolicy, PolicyAgentMixin
from serl.agents.sac import SACConfig, action_dim_of, make_policy
from serl.agents.sac_parts import Temperature, soft_update
from serl.agents.sources import split_sources
from serl.data.batch import Batch
from serl.nets.ensemble import CriticEnsemble
from serl.nets.mlp import MLP


@dataclass(frozen=True)
class H2OConfig:
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of each critic."""
    num_qs: int = 2
    """Critic ensemble size; the target and the actor take the min over all of them."""
    discriminator_hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the two dynamics classifiers."""
    discriminator_lr: float = 3e-4
    """Adam learning rate of the classifiers."""
    discriminator_noise: float = 0.1
    """Std of the Gaussian noise added to classifier inputs in training (not when scoring)."""
    logit_bound: float = 2.0
    """Classifier logits are logit_bound · tanh(raw)."""
    ratio_min: float = 1e-5
    """Lower clamp of the importance weight ρ on sim rows."""
    ratio_max: float = 1.0
    """Upper clamp of ρ (1: sim data is only ever down-weighted)."""
    gap_samples: int = 10
    """Perturbed copies of s' averaged in the dynamics-gap estimate u(s,a)."""
    gap_noise_scale: float = 1.0
    """Perturbation std of s' as a multiple of the per-dimension std of the real states."""
    gap_min: float = 1e-45
    """Lower clamp of u (keeps log ω finite)."""
    gap_max: float = 10.0
    """Upper clamp of u."""
    penalty_weight: float = 0.01
    """β of the gap-weighted logsumexp penalty on sim Q values."""
    penalty_clip: float = 1000.0
    """The penalty difference is clipped to [−this, this]."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    temperature_lr: float = 3e-4
    """Adam learning rate of log α."""
    discount: float = 0.99
    """γ."""
    tau: float = 0.005
    """Polyak rate of the target critics, applied after every critic step."""
    init_temperature: float = 1.0
    """α at the start."""
    target_entropy_per_dim: float = -1.0
    """H̄ = this × |A| (H2O uses −|A|)."""
    batch_size: int = 512
    """Rows per update: half real (prior), half sim (online); the classifiers use all of them."""
    critic_rows_per_source: int = 128
    """Real rows and sim rows (each) in the critic and actor step."""

    def __post_init__(self) -> None:
        if self.batch_size < 2 * self.critic_rows_per_source:
            raise ValueError(
                f"batch_size={self.batch_size} holds fewer than 2 × critic_rows_per_source = "
                f"{2 * self.critic_rows_per_source} rows; raise batch_size or lower "
                "critic_rows_per_source"
            )
        if not 0 < self.ratio_min <= self.ratio_max:
            raise ValueError(
                f"ratio clamp [{self.ratio_min}, {self.ratio_max}] must satisfy 0 < min <= max"
            )

    def make_actor_policy(self, observation_space: gym.Space, action_space: gym.Space) -> nn.Module:
        """The actor side: the SAC policy network (encoder + tanh-Gaussian head)."""
        return make_policy(SACConfig(hidden_dims=self.hidden_dims), observation_space, action_space)


class DynamicsClassifier(nn.Module):
    """Two bounded logits (real, sim) of one input vector; noise on the input in training."""

    def __init__(self, in_dim: int, hidden_dims: tuple[int, ...], bound: float) -> None:
        super().__init__()
        self.net = MLP(in_dim, hidden_dims, 2)
        self.bound = bound

    def forward(
        self, x: Tensor, noise: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        if noise > 0:
            x = x + noise * torch.randn(x.shape, generator=generator, device=x.device)
        return self.bound * torch.tanh(self.net(x))


class H2OAgent(PolicyAgentMixin):
    def __init__(
        self,
        cfg: H2OConfig,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        torch.manual_seed(seed)  # parameter initialisation only; sampling uses self.generator
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.act_generator = torch.Generator(device=self.device).manual_seed(seed + 1)

        self.policy: ActorPolicy = cfg.make_actor_policy(observation_space, action_space).to(
            self.device
        )
        self.encoder = self.policy.encoder
        if self.encoder.has_images:
            raise ValueError(
                f"H2O takes state observations; {observation_space} holds camera images. "
                "Use a state-observation env (or its state keys) for the dynamics classifiers."
            )
        self.actor = self.policy.head
        action_dim = action_dim_of(action_space)
        obs_dim = self.encoder.out_dim
        self.critic = CriticEnsemble(obs_dim + action_dim, cfg.hidden_dims, cfg.num_qs).to(
            self.device
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        hidden = cfg.discriminator_hidden_dims
        self.d_sa = DynamicsClassifier(obs_dim + action_dim, hidden, cfg.logit_bound)
        self.d_sas = DynamicsClassifier(2 * obs_dim + action_dim, hidden, cfg.logit_bound)
        self.d_sa.to(self.device)
        self.d_sas.to(self.device)
        self.temperature = Temperature(
            cfg.init_temperature,
            cfg.target_entropy_per_dim * action_dim,
            cfg.temperature_lr,
            self.device,
        )
        self.log_alpha = self.temperature.log_value
        self.target_entropy = self.temperature.target_entropy

        adam = {"fused": True}
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, **adam)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, **adam)
        self.temperature_optimizer = self.temperature.optimizer
        self.discriminator_optimizer = torch.optim.Adam(
            [*self.d_sa.parameters(), *self.d_sas.parameters()], lr=cfg.discriminator_lr, **adam
        )
        self.critic_steps = 0
        self.actor_steps = 0
        self.discriminator_steps = 0

    @property
    def alpha(self) -> Tensor:
        return self.temperature.value

    # ----------------------------------------------------------------------------- classifiers
    def _logits(
        self, obs: Tensor, action: Tensor, next_obs: Tensor, noise: float = 0.0
    ) -> tuple[Tensor, Tensor]:
        """(sa logits, sas logits = D_sas + D_sa), each (B, 2) with columns (real, sim)."""
        sa = self.d_sa(torch.cat([obs, action], -1), noise, self.generator)
        sas = self.d_sas(torch.cat([obs, action, next_obs], -1), noise, self.generator)
        return sa, sas + sa

    def log_real_sim_ratio(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        """log P_real(s'|s,a)/P_sim(s'|s,a) from the classifiers (Eq. 7), unclamped, (B,)."""
        with torch.no_grad():
            sa, sas = self._logits(obs, action, next_obs)
            log_sa, log_sas = F.log_softmax(sa, -1), F.log_softmax(sas, -1)
            return log_sas[:, 0] + log_sa[:, 1] - log_sas[:, 1] - log_sa[:, 0]

    def importance_weight(self, obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        """ρ = P_real/P_sim clamped to [ratio_min, ratio_max], (B,)."""
        log_ratio = self.log_real_sim_ratio(obs, action, next_obs)
        return log_ratio.exp().clamp(self.cfg.ratio_min, self.cfg.ratio_max)

    def dynamics_gap(
        self, obs: Tensor, action: Tensor, next_obs: Tensor, real_state_std: Tensor
    ) -> Tensor:
        """u(s,a) ≈ KL(P_sim ‖ P_real) (Eq. 10): mean log(P_sim/P_real) over perturbed s', (B,)."""
        n = self.cfg.gap_samples
        obs_n = obs.repeat_interleave(n, dim=0)
        action_n = action.repeat_interleave(n, dim=0)
        next_n = next_obs.repeat_interleave(n, dim=0)
        noise = torch.randn(next_n.shape, generator=self.generator, device=next_n.device)
        next_n = next_n + noise * real_state_std * self.cfg.gap_noise_scale
        log_sim_real = -self.log_real_sim_ratio(obs_n, action_n, next_n).view(-1, n)
        return log_sim_real.mean(dim=1).clamp(self.cfg.gap_min, self.cfg.gap_max)

    def _discriminator_step(self, real: Batch, sim: Batch) -> dict[str, float]:
        noise = self.cfg.discriminator_noise
        obs = torch.cat([real.obs, sim.obs])
        action = torch.cat([real.action, sim.action])
        next_obs = torch.cat([real.next_obs, sim.next_obs])
        labels = torch.cat(
            [
                torch.zeros(len(real), dtype=torch.long, device=self.device),
                torch.ones(len(sim), dtype=torch.long, device=self.device),
            ]
        )
        sa, sas = self._logits(obs, action, next_obs, noise)
        # Each source weighs half, whatever the row counts (H2O's two per-source means).
        weights = torch.cat(
            [
                torch.full((len(real),), 0.5 / len(real), device=self.device),
                torch.full((len(sim),), 0.5 / len(sim), device=self.device),
            ]
        )
        loss_sa = (F.cross_entropy(sa, labels, reduction="none") * weights).sum()
        loss_sas = (F.cross_entropy(sas, labels, reduction="none") * weights).sum()
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        (loss_sa + loss_sas).backward()
        self.discriminator_optimizer.step()
        self.discriminator_steps += 1
        with torch.no_grad():
            acc_sa = ((sa.argmax(-1) == labels).float() * weights).sum()
            acc_sas = ((sas.argmax(-1) == labels).float() * weights).sum()
        return {
            "h2o/discriminator_sa_loss": loss_sa.item(),
            "h2o/discriminator_sas_loss": loss_sas.item(),
            "h2o/discriminator_sa_accuracy": acc_sa.item(),
            "h2o/discriminator_sas_accuracy": acc_sas.item(),
        }

    # ----------------------------------------------------------------------------- learning
    def update(self, batch: Batch) -> dict[str, float]:
        """Classifier step, one critic step, one actor and temperature step (module docstring)."""
        if len(batch) != self.cfg.batch_size:
            raise ValueError(
                f"update got {len(batch)} rows; H2O's batch_size is {self.cfg.batch_size}"
            )
        batch.check_finite()
        batch = batch.to(self.device)
        batch = Batch(
            self.encoder(batch.obs),
            batch.action,
            batch.reward,
            self.encoder(batch.next_obs),
            batch.terminated,
            batch.prior,
        )
        real, sim = split_sources(batch)
        if len(real) == 0:
            raise ValueError(
                "H2O got a batch without real (prior) rows; start the learner with the "
                "target-dynamics dataset as prior data (Batch.prior == 1 marks its rows)"
            )
        info: dict[str, float] = {}
        if len(sim) > 0:
            info |= self._discriminator_step(real, sim)
        rows = self.cfg.critic_rows_per_source
        real_mb, sim_mb = real._map(lambda t: t[:rows]), sim._map(lambda t: t[:rows])
        real_std = real.obs.std(dim=0) if len(real) > 1 else torch.zeros_like(real.obs[0])
        critic_info = self._critic_step(real_mb, sim_mb if len(sim_mb) else None, real_std)
        states = torch.cat([real_mb.obs, sim_mb.obs]) if len(sim_mb) else real_mb.obs
        actor_info, log_prob = self._actor_step(states)
        temperature_info = self._temperature_step(log_prob)
        return {**info, **critic_info, **actor_info, **temperature_info}

    def _target(self, mb: Batch) -> Tensor:
        with torch.no_grad():
            next_action, _ = self.actor.sample(mb.next_obs, self.generator)
            next_q = self.target_critic(mb.next_obs, next_action).min(dim=0).values
            return mb.reward + self.cfg.discount * (1.0 - mb.terminated) * next_q

    def _critic_step(self, real: Batch, sim: Batch | None, real_std: Tensor) -> dict[str, float]:
        cfg = self.cfg
        y_real = self._target(real)
        q_real = self.critic(real.obs, real.action)  # (N, B_real)
        loss = F.mse_loss(q_real, y_real.expand_as(q_real), reduction="none").mean(1)
        info: dict[str, float] = {"critic/q_real": q_real.detach().mean().item()}
        if sim is not None:
            y_sim = self._target(sim)
            with torch.no_grad():
                rho = self.importance_weight(sim.obs, sim.action, sim.next_obs)
                gap = self.dynamics_gap(sim.obs, sim.action, sim.next_obs, real_std)
                log_omega = torch.log(gap) - torch.log(gap.sum())
            q_sim = self.critic(sim.obs, sim.action)  # (N, B_sim)
            sqrt_rho = rho.sqrt()
            weighted_td = F.mse_loss(
                sqrt_rho * q_sim, (sqrt_rho * y_sim).expand_as(q_sim), reduction="none"
            ).mean(1)
            penalty = torch.logsumexp(q_sim + log_omega, dim=1) - q_real.mean(1)
            penalty = penalty.clamp(-cfg.penalty_clip, cfg.penalty_clip)
            loss = loss + weighted_td + cfg.penalty_weight * penalty
            info |= {
                "critic/q_sim": q_sim.detach().mean().item(),
                "critic/penalty": penalty.detach().mean().item(),
                "h2o/importance_weight_mean": rho.mean().item(),
                "h2o/importance_weight_min": rho.min().item(),
                "h2o/dynamics_gap_mean": gap.mean().item(),
            }
        loss = loss.sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        soft_update(self.target_critic.parameters(), self.critic.parameters(), cfg.tau)
        self.critic_steps += 1
        return {"critic/loss": loss.item(), **info}

    def _actor_step(self, states: Tensor) -> tuple[dict[str, float], Tensor]:
        action, log_prob = self.actor.sample(states, self.generator)
        self.critic.requires_grad_(False)  # gradient flows to the action, not the critic
        q = self.critic(states, action).min(dim=0).values
        self.critic.requires_grad_(True)
        loss = (self.alpha * log_prob - q).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.actor_steps += 1
        entropy = -log_prob.detach().mean()
        return {"actor/loss": loss.item(), "actor/entropy": entropy.item()}, log_prob.detach()

    def _temperature_step(self, log_prob: Tensor) -> dict[str, float]:
        loss = self.temperature.step(log_prob)
        return {"temperature/alpha": self.alpha.item(), "temperature/loss": loss.item()}

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Networks, targets, classifiers, optimizers, RNG and counters (identical resume)."""
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "d_sa": self.d_sa.state_dict(),
            "d_sas": self.d_sas.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optim": {
                "critic": self.critic_optimizer.state_dict(),
                "actor": self.actor_optimizer.state_dict(),
                "temperature": self.temperature_optimizer.state_dict(),
                "discriminator": self.discriminator_optimizer.state_dict(),
            },
            "rng": {"update": self.generator.get_state(), "act": self.act_generator.get_state()},
            "counters": {
                "critic_steps": self.critic_steps,
                "actor_steps": self.actor_steps,
                "discriminator_steps": self.discriminator_steps,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.d_sa.load_state_dict(state["d_sa"])
        self.d_sas.load_state_dict(state["d_sas"])
        self.temperature.load(state["log_alpha"], state["optim"]["temperature"])
        for name, optimizer in (
            ("critic", self.critic_optimizer),
            ("actor", self.actor_optimizer),
            ("discriminator", self.discriminator_optimizer),
        ):
            optimizer.load_state_dict(state["optim"][name])
        self.generator.set_state(state["rng"]["update"])
        self.act_generator.set_state(state["rng"]["act"])
        counters = state["counters"]
        self.critic_steps = int(counters["critic_steps"])
        self.actor_steps = int(counters["actor_steps"])
        self.discriminator_steps = int(counters["discriminator_steps"])
