import torch

from serl.nets.ensemble import CriticEnsemble


def _member_forward(ens: CriticEnsemble, i: int, x: torch.Tensor) -> torch.Tensor:
    for j, layer in enumerate(ens.hidden):
        x = x @ layer.weight[i] + layer.bias[i]
        if ens.norms:
            norm = ens.norms[j]
            x = torch.nn.functional.layer_norm(x, (norm.dim,)) * norm.weight[i] + norm.bias[i]
        x = torch.relu(x)
    return (x @ ens.out.weight[i] + ens.out.bias[i]).squeeze(-1)


def test_batched_ensemble_equals_each_member_evaluated_alone():
    torch.manual_seed(0)
    ens = CriticEnsemble(5 + 2, (32, 32), 4, layer_norm=True)
    s, a = torch.randn(16, 5), torch.randn(16, 2)
    q = ens(s, a)
    assert q.shape == (4, 16)
    for i in range(4):
        torch.testing.assert_close(q[i], _member_forward(ens, i, torch.cat([s, a], -1)))


def test_member_subset_evaluates_only_the_chosen_members():
    torch.manual_seed(0)
    ens = CriticEnsemble(3, (16,), 10)
    s, a = torch.randn(8, 2), torch.randn(8, 1)
    members = torch.tensor([7, 2])
    torch.testing.assert_close(ens(s, a, members), ens(s, a)[members])


def test_layer_norm_bounds_q_as_actions_grow_and_plain_critic_does_not():
    """ALGORITHMS §2: with LayerNorm |Q(s, c·a)| stays bounded as c grows; without it grows."""
    torch.manual_seed(0)
    s, a = torch.randn(64, 4), torch.randn(64, 2)
    with_ln = CriticEnsemble(6, (64, 64), 2, layer_norm=True)
    without = CriticEnsemble(6, (64, 64), 2, layer_norm=False)
    scales = [1.0, 10.0, 100.0, 1000.0]
    ln = [with_ln(s, c * a).abs().max().item() for c in scales]
    plain = [without(s, c * a).abs().max().item() for c in scales]
    # The LN output is bounded by its features' norm: the same bound holds at every scale.
    bound = sum(p.abs().sum().item() for p in with_ln.out.parameters()) * 8
    assert max(ln) < bound
    assert ln[-1] < 2 * ln[1] + 1.0
    assert plain[-1] > 50 * plain[0]
