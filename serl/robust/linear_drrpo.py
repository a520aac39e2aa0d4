"""DR-RPO with linear function approximation, computed exactly (ALGORITHMS §8).

Gu, He, Liu & Xu 2025, "Policy Regularized Distributionally Robust MDPs with Linear Function
Approximation" (arXiv:2510.14246): an episodic d-rectangular linear MDP, P_h(s'|s,a) =
Σ_i φ_i(s,a) μ_{h,i}(s'), features φ(s,a) on the simplex, each factor μ_{h,i} free to move
within total variation ρ_i. One backward pass over h = H..1 per episode computes:

* ridge regression Λ_h = Σ_k φ_k φ_kᵀ + λ_ridge I over the data of step h;
* the TV dual per factor (the strong-duality form of the d-rectangular DRMDP literature,
  e.g. Liu & Xu 2024), with [V]_α = min(V, α):
  ν_{h,i} = max_{α∈[0,H]} [Λ_h⁻¹ Σ_k φ_k [V_{h+1}]_α(s'_k)]_i − ρ_i (α − min_{s'} [V_{h+1}]_α(s')),
  maximised exactly: the objective is piecewise linear in α with kinks only at the values
  V_{h+1}(s'_k), min_{s'} V_{h+1}, 0 and H, so it is evaluated at those points;
* Q_h = min(r_h + φᵀν_h + Γ_h, H − h + 1) with the bonus Γ_h = β Σ_i φ_i √((Λ_h⁻¹)_ii);
* the reference-regularised softmax policy π_h(a|s) ∝ π_ref(a|s) exp(Q_h(s,a)/λ) and the
  regularised value V_h(s) = max_π E_π[Q_h] − λ KL(π‖π_ref) = λ log Σ_a π_ref exp(Q_h/λ).

TV is the total-variation distance sup_A |P(A) − Q(A)| (half the L1 distance); with it the
dual above equals the linear-programming worst case (checked in the tests). Decisions of this
implementation where the abstract leaves them open: rewards r_h(s,a) are known (as in the
linear-MDP theory), states and actions are finite and indexed so `min_{s'}` is exact, and the
policy is the closed-form softmax of §8 rather than a mirror-descent iterate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def logsumexp(x: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """log Σ exp(x) along `axis`, shifted by the max (no overflow for tiny temperatures)."""
    top = x.max(axis=axis, keepdims=True)
    out = top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))
    return out if keepdims else out.squeeze(axis)


@dataclass(frozen=True)
class LinearDRRPOConfig:
    horizon: int
    """Episode length H."""
    radius: tuple[float, ...]
    """TV radius ρ_i of each of the d factors (one value per factor)."""
    ridge: float = 1.0
    """λ of the ridge regression Λ = Σ φφᵀ + λI."""
    bonus_scale: float = 0.0
    """β of the upper-confidence bonus Γ = β Σ_i φ_i √(Λ⁻¹)_ii (0: no exploration bonus)."""
    temperature: float = 0.1
    """λ of the reference-regularised softmax π ∝ π_ref exp(Q/λ)."""

    def __post_init__(self) -> None:
        if any(not 0.0 <= r <= 1.0 for r in self.radius):
            raise ValueError(f"radius={self.radius}: TV radii must lie in [0, 1]")
        if self.ridge <= 0 or self.temperature <= 0 or self.horizon < 1:
            raise ValueError(
                f"ridge={self.ridge}, temperature={self.temperature} must be > 0 and "
                f"horizon={self.horizon} >= 1"
            )


def tv_worst_case(mu: np.ndarray, values: np.ndarray, radius: float) -> float:
    """inf_{q: TV(q, μ) <= ρ} E_q[V] by the dual max_α E_μ[min(V,α)] − ρ(α − min V)."""
    candidates = np.unique(values)
    capped = np.minimum(values[None, :], candidates[:, None])  # (C, S)
    objective = capped @ mu - radius * (candidates - values.min())
    return float(objective.max())


def ridge_inverse(phi: np.ndarray, ridge: float) -> np.ndarray:
    """Λ⁻¹ for the rows φ_k of `phi` (n, d)."""
    d = phi.shape[1]
    return np.linalg.inv(phi.T @ phi + ridge * np.eye(d))


def tv_dual(
    phi: np.ndarray,
    next_values: np.ndarray,
    min_value: float,
    radius: np.ndarray,
    lam_inv: np.ndarray,
    horizon: float,
) -> np.ndarray:
    """ν_i = max_{α∈[0,H]} [Λ⁻¹ Σ_k φ_k min(V_k, α)]_i − ρ_i(α − min(min V, α)), exactly.

    Args:
        phi: (n, d) features of the data at step h; next_values: (n,) V_{h+1}(s'_k);
        min_value: min over all states of V_{h+1}; radius: (d,); lam_inv: (d, d).
    """
    alphas = np.concatenate([[0.0, horizon, min_value], next_values])
    alphas = np.unique(np.clip(alphas, 0.0, horizon))  # (C,)
    capped = np.minimum(next_values[None, :], alphas[:, None])  # (C, n)
    regressed = capped @ phi @ lam_inv.T  # (C, d): Λ⁻¹ Σ_k φ_k min(V_k, α) per α
    penalty = np.asarray(radius)[None, :] * (alphas - np.minimum(min_value, alphas))[:, None]
    return (regressed - penalty).max(axis=0)


def bonus(phi: np.ndarray, lam_inv: np.ndarray, scale: float) -> np.ndarray:
    """Γ = β Σ_i φ_i √((Λ⁻¹)_ii) for features `phi` (..., d)."""
    return scale * phi @ np.sqrt(np.diag(lam_inv))


def regularised_policy(q: np.ndarray, pi_ref: np.ndarray, temperature: float) -> np.ndarray:
    """π(a|s) ∝ π_ref(a|s) exp(Q(s,a)/λ), over the last axis (stable for small λ)."""
    logits = np.log(np.maximum(pi_ref, 1e-300)) + q / temperature
    return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))


def regularised_value(q: np.ndarray, pi_ref: np.ndarray, temperature: float) -> np.ndarray:
    """V(s) = max_π E_π[Q] − λ KL(π‖π_ref) = λ log Σ_a π_ref exp(Q/λ)."""
    logits = np.log(np.maximum(pi_ref, 1e-300)) + q / temperature
    return temperature * logsumexp(logits, axis=-1)


@dataclass(frozen=True)
class StepData:
    """The transitions of one step h of the episodes collected so far."""

    states: np.ndarray
    """(n,) state indices s_k."""
    actions: np.ndarray
    """(n,) action indices a_k."""
    next_states: np.ndarray
    """(n,) next-state indices s'_k."""


@dataclass(frozen=True)
class BackwardPass:
    q: np.ndarray
    """(H, S, A) Q_h."""
    policy: np.ndarray
    """(H, S, A) π_h(a|s)."""
    value: np.ndarray
    """(H + 1, S) regularised V_h (V_{H+1} = 0)."""


def backward_pass(
    cfg: LinearDRRPOConfig,
    features: np.ndarray,
    rewards: np.ndarray,
    data: list[StepData],
    pi_ref: np.ndarray,
) -> BackwardPass:
    """One DR-RPO policy update from the data of every step (h = H..1).

    Args:
        features: (S, A, d) φ(s,a), each row on the simplex.
        rewards: (H, S, A) r_h(s,a) in [0, 1].
        data: H entries, the transitions observed at each step.
        pi_ref: (S, A) reference policy.
    """
    horizon = cfg.horizon
    n_states, n_actions, d = features.shape
    if len(data) != horizon or rewards.shape != (horizon, n_states, n_actions):
        raise ValueError(
            f"need H={horizon} steps of data and rewards of shape {(horizon, n_states, n_actions)};"
            f" got {len(data)} and {rewards.shape}"
        )
    if len(cfg.radius) != d:
        raise ValueError(f"radius has {len(cfg.radius)} entries; the features have d={d}")
    radius = np.asarray(cfg.radius)
    q = np.zeros((horizon, n_states, n_actions))
    policy = np.zeros_like(q)
    value = np.zeros((horizon + 1, n_states))
    for h in reversed(range(horizon)):
        step = data[h]
        phi = features[step.states, step.actions]  # (n, d)
        lam_inv = ridge_inverse(phi, cfg.ridge)
        next_v = value[h + 1]
        nu = tv_dual(phi, next_v[step.next_states], next_v.min(), radius, lam_inv, horizon)
        raw = rewards[h] + features @ nu + bonus(features, lam_inv, cfg.bonus_scale)
        q[h] = np.minimum(raw, horizon - h)  # H − h + 1 with h counted from 1
        policy[h] = regularised_policy(q[h], pi_ref, cfg.temperature)
        value[h] = regularised_value(q[h], pi_ref, cfg.temperature)
    return BackwardPass(q, policy, value)


def evaluate_policy(
    kernel: np.ndarray, rewards: np.ndarray, policy: np.ndarray, start: int = 0
) -> float:
    """Expected return from `start` of a step-dependent policy (H, S, A) under kernel (S, A, S)."""
    horizon = rewards.shape[0]
    v = np.zeros(kernel.shape[0])
    for h in reversed(range(horizon)):
        q = rewards[h] + kernel @ v
        v = (policy[h] * q).sum(-1)
    return float(v[start])
