"""The ensemble axis computes exactly what independent per-member networks would."""

from __future__ import annotations

import torch

from algos.networks import MLP, Critic


def member_forward(mlp: MLP, x: torch.Tensor, member: int) -> torch.Tensor:
    """Runs one member by hand with its slice of every batched parameter."""
    for layer in mlp.net:
        name = type(layer).__name__
        if name == "EnsembleLinear":
            x = x @ layer.weight[member] + layer.bias[member]
        elif name == "EnsembleLayerNorm":
            x = torch.nn.functional.layer_norm(x, x.shape[-1:]) * layer.weight[member] + layer.bias[member]
        else:
            x = layer(x)
    return x


def test_ensemble_members_are_independent_networks():
    torch.manual_seed(0)
    mlp = MLP(5, (16, 16), 3, layer_norm=True, ensemble_size=4)
    with torch.no_grad():  # make the LayerNorm affine parameters differ between members
        for p in mlp.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(7, 5)
    out = mlp(x)
    assert out.shape == (4, 7, 3)
    for m in range(4):
        torch.testing.assert_close(out[m], member_forward(mlp, x, m))
    assert not torch.allclose(out[0], out[1])


def test_ensemble_gradients_stay_in_their_member():
    critic = Critic(3, 2, (8,), ensemble_size=2)
    q = critic(torch.randn(4, 3), torch.randn(4, 2))
    assert q.shape == (2, 4)
    q[0].sum().backward()
    first = critic.net.net[0].weight.grad
    assert first[0].abs().sum() > 0 and first[1].abs().sum() == 0


def test_per_member_inputs():
    mlp = MLP(3, (8,), 1, ensemble_size=2)
    x = torch.randn(2, 5, 3)
    out = mlp(x)
    torch.testing.assert_close(out[1], member_forward(mlp, x[1], 1))
