"""H2O checks of ALGORITHMS §4 on the 1-D system real s' = s + a + ε, sim s' = s + 2a + ε."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from serl.agents.h2o import H2OAgent, H2OConfig
from serl.agents.sources import split_sources
from serl.data.batch import Batch

STATE = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
UNIT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
NOISE = 0.1


def transitions(
    rng: np.random.Generator,
    n: int,
    *,
    sim: bool,
    max_action: float = 1.0,
    max_state: float = 1.0,
) -> dict[str, np.ndarray]:
    s = rng.uniform(-max_state, max_state, (n, 1)).astype(np.float32)
    a = rng.uniform(-max_action, max_action, (n, 1)).astype(np.float32)
    gain = 2.0 if sim else 1.0
    s2 = (s + gain * a + rng.normal(0, NOISE, (n, 1))).astype(np.float32)
    return {"obs": s, "action": a, "next_obs": s2}


def analytic_log_real_sim(s: np.ndarray, a: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """log N(s'; s + a, σ²) − log N(s'; s + 2a, σ²)."""
    return (((s2 - s - 2 * a) ** 2 - (s2 - s - a) ** 2) / (2 * NOISE**2))[:, 0]


def mixed_batch(
    rng: np.random.Generator, per_source: int, *, real_max_action: float = 1.0
) -> Batch:
    """Interleaved rows (even sim/online, odd real/prior) with reward 1 and terminal steps."""
    real = transitions(rng, per_source, sim=False, max_action=real_max_action)
    sim = transitions(rng, per_source, sim=True)

    def rows(key: str) -> torch.Tensor:
        both = np.stack([sim[key], real[key]], axis=1).reshape(2 * per_source, -1)
        return torch.from_numpy(both)

    n = 2 * per_source
    prior = torch.tensor([0.0, 1.0]).repeat(per_source)
    return Batch(rows("obs"), rows("action"), torch.ones(n), rows("next_obs"), torch.ones(n), prior)


def trained_classifiers(steps: int = 500, seed: int = 0) -> H2OAgent:
    cfg = H2OConfig(discriminator_hidden_dims=(64, 64), discriminator_lr=2e-3, batch_size=512)
    agent = H2OAgent(cfg, STATE, UNIT, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = mixed_batch(rng, 256)
        agent._discriminator_step(*split_sources(batch))
    return agent


@pytest.fixture(scope="module")
def classifiers() -> H2OAgent:
    return trained_classifiers()


def _tensors(d: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(d[k]) for k in ("obs", "action", "next_obs"))


def test_estimated_log_ratio_correlates_with_the_analytic_one(classifiers):
    rng = np.random.default_rng(1)
    # Transitions of both systems with |a| <= 0.5, where the analytic log-ratio mostly stays
    # inside the classifiers' bounded range (|log ρ| <= 2 × logit_bound).
    points = [transitions(rng, 1000, sim=sim, max_action=0.5) for sim in (False, True)]
    s, a, s2 = (np.concatenate([p[k] for p in points]) for k in ("obs", "action", "next_obs"))
    estimated = classifiers.log_real_sim_ratio(
        torch.from_numpy(s), torch.from_numpy(a), torch.from_numpy(s2)
    ).numpy()
    analytic = analytic_log_real_sim(s, a, s2)
    assert np.corrcoef(estimated, analytic)[0, 1] > 0.95


def test_importance_weight_is_one_for_small_actions_and_zero_for_large(classifiers):
    rng = np.random.default_rng(2)
    sim = transitions(rng, 4000, sim=True)
    rho = classifiers.importance_weight(*_tensors(sim)).numpy()
    small = np.abs(sim["action"][:, 0]) < 0.1
    large = np.abs(sim["action"][:, 0]) > 0.5
    assert rho[small].mean() > 0.8
    assert rho[large].mean() < 0.05


def set_constant_logits(classifier: torch.nn.Module, raw: tuple[float, float]) -> None:
    """Zero weights everywhere, so the raw (real, sim) outputs are the last layer's bias."""
    with torch.no_grad():
        for p in classifier.parameters():
            p.zero_()
        last = [m for m in classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor(raw))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


@pytest.mark.parametrize(
    ("sas_raw", "ratio_by_hand", "rho"),
    [
        ((-0.05, 0.0), 0.606783, 0.606783),  # e^(10·tanh(−0.05)): inside the clamp
        ((0.05, 0.0), 1.648035, 1.0),  # e^(10·tanh(0.05)): sim data is never up-weighted
        ((-0.9, 0.9), 6.002e-7, 1e-5),  # e^(−20·tanh(0.9)): floored
    ],
)
def test_importance_weight_is_the_clamped_probability_ratio_of_the_classifiers(
    sas_raw, ratio_by_hand, rho
):
    """ρ = p(real|sas)·p(sim|sa) / (p(sim|sas)·p(real|sa)) from hand-set classifier outputs,
    the sas probabilities taken from the sum of both logits; clamped to [1e-5, 1]. The sa terms
    cancel in the exact ratio (it is e^(D_sas,real − D_sas,sim)), but only if each one sits
    where it belongs: D_sa's logits here differ by 20·tanh(0.1) ≈ 2, so a swapped one shows."""
    bound, sa_raw = 10.0, (0.1, -0.1)
    cfg = H2OConfig(hidden_dims=(8,), discriminator_hidden_dims=(8,), logit_bound=bound)
    agent = H2OAgent(cfg, STATE, UNIT, seed=0)
    set_constant_logits(agent.d_sa, sa_raw)
    set_constant_logits(agent.d_sas, sas_raw)
    sa_logits = bound * np.tanh(sa_raw)
    p_sa = softmax(sa_logits)
    p_sas = softmax(bound * np.tanh(sas_raw) + sa_logits)
    ratio = p_sas[0] * p_sa[1] / (p_sas[1] * p_sa[0])
    assert ratio == pytest.approx(ratio_by_hand, rel=1e-3)
    s = torch.tensor([[0.3], [-0.5], [0.0]])
    a = torch.tensor([[0.2], [-0.9], [0.6]])
    weight = agent.importance_weight(s, a, s + a)
    np.testing.assert_allclose(weight.numpy(), np.full(3, rho), rtol=1e-4)


def _train_h2o(penalty_weight: float, steps: int = 300) -> H2OAgent:
    cfg = H2OConfig(
        hidden_dims=(64, 64),
        discriminator_hidden_dims=(64, 64),
        discriminator_lr=2e-3,
        critic_lr=3e-3,
        penalty_weight=penalty_weight,
        batch_size=256,
    )
    agent = H2OAgent(cfg, STATE, UNIT, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        info = agent.update(mixed_batch(rng, 128, real_max_action=0.2))
    assert all(np.isfinite(v) for v in info.values())
    return agent


def test_penalty_lowers_q_on_high_gap_sim_pairs_below_zero_gap_pairs():
    """Every transition has reward 1 and ends the episode, so Q's TD target is 1 everywhere;
    only the gap-weighted penalty separates high-gap (|a| large) from zero-gap pairs."""
    s = torch.linspace(-1, 1, 50)[:, None]

    def q_gap(agent: H2OAgent) -> float:
        with torch.no_grad():
            q_small = agent.critic(s, torch.full_like(s, 0.05)).mean()
            q_large = agent.critic(s, torch.full_like(s, 0.8)).mean()
        return (q_small - q_large).item()

    with_penalty = q_gap(_train_h2o(penalty_weight=0.01))
    without_penalty = q_gap(_train_h2o(penalty_weight=0.0))
    assert with_penalty > 0.1
    assert with_penalty > without_penalty + 0.1


def test_update_reports_finite_h2o_metrics_and_resumes_identically():
    cfg = H2OConfig(
        hidden_dims=(32, 32),
        discriminator_hidden_dims=(32, 32),
        batch_size=64,
        critic_rows_per_source=16,
    )
    agent = H2OAgent(cfg, STATE, UNIT, seed=0)
    rng = np.random.default_rng(0)
    info = agent.update(mixed_batch(rng, 32))
    for key in (
        "h2o/importance_weight_mean",
        "h2o/discriminator_sas_accuracy",
        "h2o/dynamics_gap_mean",
        "critic/penalty",
        "actor/entropy",
        "temperature/alpha",
    ):
        assert np.isfinite(info[key]), key
    clone = H2OAgent(cfg, STATE, UNIT, seed=5)
    clone.load_state_dict(copy.deepcopy(agent.state_dict()))  # as if read from a file
    batch = mixed_batch(rng, 32)
    assert agent.update(batch) == clone.update(batch)
    for a, b in zip(agent.critic.parameters(), clone.critic.parameters(), strict=True):
        assert torch.equal(a, b)


def test_offline_batch_without_sim_rows_trains_on_real_rows_only():
    cfg = H2OConfig(
        hidden_dims=(32, 32),
        discriminator_hidden_dims=(32, 32),
        batch_size=64,
        critic_rows_per_source=16,
    )
    agent = H2OAgent(cfg, STATE, UNIT, seed=0)
    batch = mixed_batch(np.random.default_rng(0), 32)
    batch.prior = torch.ones(64)
    info = agent.update(batch)
    assert agent.discriminator_steps == 0 and agent.critic_steps == 1
    assert "critic/penalty" not in info and np.isfinite(info["critic/loss"])


def test_batch_without_real_rows_is_refused_with_a_fix():
    cfg = H2OConfig(hidden_dims=(32, 32), batch_size=64, critic_rows_per_source=16)
    agent = H2OAgent(cfg, STATE, UNIT, seed=0)
    batch = mixed_batch(np.random.default_rng(0), 32)
    batch.prior = None
    with pytest.raises(ValueError, match="prior data"):
        agent.update(batch)
