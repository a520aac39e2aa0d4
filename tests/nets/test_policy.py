import math

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


def test_actions_stay_inside_the_unit_box_and_mode_is_deterministic():
    policy = TanhGaussianPolicy(2, 2, (8,))
    features = torch.randn(50, 2) * 100
    action, _ = policy.sample(features)
    assert action.abs().max() <= 1.0
    torch.testing.assert_close(policy.mode(features), policy.mode(features))
