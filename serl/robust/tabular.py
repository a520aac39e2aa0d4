"""Exact IWOCS and robust value iteration on small tabular MDPs (the reference for §7).

IWOCS (Zouitine et al. 2024, "Solving robust MDPs as a sequence of static RL problems",
Alg. 1): solve the nominal model T_0 exactly; Q_i = min_{j<=i} Q*_{T_j} (Eq. 5), π_i greedy
w.r.t. Q_i; T_{i+1} = argmin_T V^{π_i}_T(s0) by a search over the parameter box
(`serl.robust.search`); stop when |V^{π_i}_{T_{i+1}}(s0) − Q_i(s0, π_i(s0))| <= ε (Eq. 6).
Robust value iteration (Iyengar 2005; Nilim & El Ghaoui 2005) over the same parameters is the
(s,a)-rectangular answer: Q(s,a) = R(s,a) + γ min_θ Σ_s' P_θ(s'|s,a) V(s'), the min taken over
a fine grid of θ. When one parameter value is the worst everywhere, both agree exactly; the
tests use such a family. Everything here is numpy, discounted and exact to `tol`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from serl.robust.search import Bounds, search

logger = logging.getLogger(__name__)

KernelFamily = Callable[[dict[str, float]], np.ndarray]
"""Parameters -> transition kernel P[s, a, s'] of shape (S, A, S)."""


def _check_kernel(kernel: np.ndarray, reward: np.ndarray) -> None:
    s, a = reward.shape
    if kernel.shape != (s, a, s):
        raise ValueError(f"kernel shape {kernel.shape} does not match reward shape {(s, a)}")
    if not np.allclose(kernel.sum(-1), 1.0, atol=1e-8) or (kernel < 0).any():
        raise ValueError("kernel rows must be probability distributions over next states")


def value_iteration(
    kernel: np.ndarray, reward: np.ndarray, gamma: float, tol: float = 1e-10
) -> np.ndarray:
    """Optimal Q*(s, a) of one model (Bellman optimality operator to a fixed point)."""
    _check_kernel(kernel, reward)
    q = np.zeros_like(reward, dtype=float)
    while True:
        new = reward + gamma * kernel @ q.max(axis=1)
        if np.abs(new - q).max() < tol:
            return new
        q = new


def policy_q(
    kernel: np.ndarray, reward: np.ndarray, gamma: float, policy: np.ndarray
) -> np.ndarray:
    """Q^π(s, a) of a deterministic policy (one action index per state), by a linear solve."""
    _check_kernel(kernel, reward)
    n = reward.shape[0]
    states = np.arange(n)
    p_pi = kernel[states, policy]  # (S, S')
    v = np.linalg.solve(np.eye(n) - gamma * p_pi, reward[states, policy])
    return reward + gamma * kernel @ v


def robust_value_iteration(
    kernels: list[np.ndarray], reward: np.ndarray, gamma: float, tol: float = 1e-10
) -> np.ndarray:
    """Robust Q(s, a) with the adversary choosing among `kernels` independently per (s, a)."""
    stacked = np.stack(kernels)  # (K, S, A, S)
    for k in kernels:
        _check_kernel(k, reward)
    q = np.zeros_like(reward, dtype=float)
    while True:
        new = reward + gamma * (stacked @ q.max(axis=1)).min(axis=0)
        if np.abs(new - q).max() < tol:
            return new
        q = new


@dataclass
class TabularIWOCSResult:
    models: list[dict[str, float]]
    """T_0, T_1, ...: the parameters of every model solved, in order."""
    q_functions: list[np.ndarray] = field(default_factory=list)
    """Q_0, Q_1, ...: the running minimum after each model was added."""
    policy: np.ndarray | None = None
    """π of the last Q_i: greedy action per state."""
    worst_value: float = float("nan")
    """V^π_{T_worst}(s0) of the final policy, from the last search."""
    converged: bool = False
    """True when the stopping rule held (else `max_models` was reached)."""


def tabular_iwocs(
    family: KernelFamily,
    reward: np.ndarray,
    gamma: float,
    bounds: Bounds,
    nominal: dict[str, float],
    *,
    s0: int = 0,
    epsilon: float = 1e-6,
    max_models: int = 10,
    method: str = "grid",
    budget: int = 101,
    seed: int = 0,
) -> TabularIWOCSResult:
    """IWOCS with exact solves: models are added until the worst case is already covered."""
    result = TabularIWOCSResult(models=[dict(nominal)])
    q_min = value_iteration(family(nominal), reward, gamma)
    while True:
        result.q_functions.append(q_min)
        policy = q_min.argmax(axis=1)
        result.policy = policy

        def value_under(params: dict[str, float], policy: np.ndarray = policy) -> float:
            return float(policy_q(family(params), reward, gamma, policy)[s0, policy[s0]])

        found = search(value_under, bounds, method=method, budget=budget, seed=seed)
        result.worst_value = found.value
        predicted = float(q_min[s0, policy[s0]])
        logger.info(
            "IWOCS model %d: worst %s gives V=%.6g, Q_i predicts %.6g",
            len(result.models), found.params, found.value, predicted,
        )  # fmt: skip
        if abs(found.value - predicted) <= epsilon:
            result.converged = True
            return result
        if len(result.models) >= max_models:
            return result
        result.models.append(found.params)
        q_min = np.minimum(q_min, value_iteration(family(found.params), reward, gamma))
