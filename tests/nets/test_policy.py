import math

import numpy as np
import torch

from serl.nets.policy import TanhGaussianPolicy, tanh_log_det


def test_sample_log_prob_equals_log_prob_of_the_same_action():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(4, 3, (32,))
    features = torch.randn(100, 4)
    action, log_prob = policy.sample(features, torch.Generator().manual_seed(1))
    torch.testing.assert_close(policy.log_prob(features, action), log_prob, atol=2e-3, rtol=1e-3)


def test_tanh_log_det_matches_the_analytic_jacobian():
    u = torch.linspace(-5, 5, 101).unsqueeze(-1)
    expected = torch.log(1 - torch.tanh(u) ** 2).squeeze(-1)
    torch.testing.assert_close(tanh_log_det(u), expected, atol=1e-4, rtol=1e-4)


def test_log_prob_of_one_dimensional_policy_integrates_to_one():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(1, 1, (8,))
    features = torch.zeros(1, 1)
    grid = torch.linspace(-0.9999, 0.9999, 20001).unsqueeze(-1)
    density = policy.log_prob(features.expand(len(grid), 1), grid).exp()
    integral = torch.trapezoid(density, grid.squeeze(-1)).item()
    assert math.isclose(integral, 1.0, abs_tol=1e-2)


def hand_made_policy(mean_bias: list[float], log_std_bias: list[float]) -> TanhGaussianPolicy:
    """2 features -> 2 hidden units (ReLU) -> 3 action dims with known weights."""
    policy = TanhGaussianPolicy(2, 3, (2,))
    with torch.no_grad():
        policy.trunk.net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.5, -1.0]]))
        policy.trunk.net[0].bias.copy_(torch.tensor([0.0, 0.1]))
        policy.mean.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        policy.mean.bias.copy_(torch.tensor(mean_bias))
        policy.log_std.weight.zero_()
        policy.log_std.bias.copy_(torch.tensor(log_std_bias))
    return policy


# Features (1, 2) and (-1, 0.5): hidden relu(x1, 0.5·x1 − x2 + 0.1) = (1, 0) and (0, 0)
# (0.5·(−1) − 0.5 + 0.1 = −0.9, cut by the ReLU); mean = (h1, h2, h1 − h2) + bias.
FEATURES = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
HIDDEN = np.array([[1.0, 0.0], [0.0, 0.0]])


def test_mode_is_tanh_of_the_mean_head_computed_by_hand():
    bias = [0.2, -0.3, 0.0]
    policy = hand_made_policy(bias, [0.0, 0.0, 0.0])
    mean = np.stack([HIDDEN[:, 0], HIDDEN[:, 1], HIDDEN[:, 0] - HIDDEN[:, 1]], 1) + bias
    # Row 0: tanh(1.2, −0.3, 1.0); row 1: tanh(0.2, −0.3, 0.0).
    np.testing.assert_allclose(policy.mode(FEATURES).detach().numpy(), np.tanh(mean), rtol=1e-6)


def test_sample_is_squashed_mean_plus_clamped_std_noise_with_change_of_variables_log_prob():
    # Dim 0: log-std 0.5 as is. Dim 1: log-std 5 clamped to 2. Dim 2: log-std −30 clamped to
    # −20 with means 12 and 11, whose tanh rounds to 1 in float32: log(1 − a²) computed from
    # the action would be −inf, so the log-prob must come from the pre-tanh value.
    mean_bias, log_std_bias = [0.2, -0.3, 11.0], [0.5, 5.0, -30.0]
    policy = hand_made_policy(mean_bias, log_std_bias)
    generator = torch.Generator().manual_seed(3)
    eps = torch.randn((2, 3), generator=torch.Generator().manual_seed(3)).double().numpy()
    with torch.no_grad():
        action, log_prob = policy.sample(FEATURES, generator)

    mean = np.stack([HIDDEN[:, 0], HIDDEN[:, 1], HIDDEN[:, 0] - HIDDEN[:, 1]], 1) + mean_bias
    log_std = np.array([0.5, 2.0, -20.0])
    u = mean + np.exp(log_std) * eps
    # log π(a) = Σ_i [log N(u_i; μ_i, σ_i) − log(1 − tanh² u_i)], with
    # log(1 − tanh² u) = 2 (log 2 − |u| − log(1 + e^{−2|u|})) (cosh is even; exact for all u).
    gaussian = -0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2 * (math.log(2) - np.abs(u) - np.log1p(np.exp(-2 * np.abs(u))))
    np.testing.assert_allclose(action.numpy(), np.tanh(u), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_prob.numpy(), (gaussian - log_det).sum(1), rtol=1e-5)
    assert np.isfinite(log_prob.numpy()).all()
