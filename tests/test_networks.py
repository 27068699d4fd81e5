"""The seed and ensemble axes compute exactly what independent per-seed, per-member networks would."""

from __future__ import annotations

import torch

from algos.kit import networks
from algos.kit.networks import MLP, Critic


def member_forward(mlp: MLP, x: torch.Tensor, seed: int, member: int | None) -> torch.Tensor:
    """Runs one seed's (and member's) network by hand with its slice of every batched parameter."""
    index = (seed,) if member is None else (seed, member)
    for layer in mlp.net:
        name = type(layer).__name__
        if name == "EnsembleLinear":
            x = x @ layer.weight[index] + layer.bias[index]
        elif name == "EnsembleLayerNorm":
            x = torch.nn.functional.layer_norm(x, x.shape[-1:], eps=layer.eps) * layer.weight[index] + layer.bias[index]
        else:
            x = layer(x)
    return x


def perturbed(mlp: MLP) -> MLP:
    torch.manual_seed(1)
    with torch.no_grad():  # make the LayerNorm affine parameters differ between seeds and members
        for p in mlp.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mlp


def test_seeds_and_ensemble_members_are_independent_networks():
    torch.manual_seed(0)
    mlp = perturbed(MLP(5, (16, 16), 3, layer_norm=True, ensemble_size=4, seeds=3))
    x = torch.randn(3, 7, 5)
    out = mlp(x)
    assert out.shape == (3, 4, 7, 3)
    for s in range(3):
        for m in range(4):
            torch.testing.assert_close(out[s, m], member_forward(mlp, x[s], s, m))
    assert not torch.allclose(out[0, 0], out[0, 1]) and not torch.allclose(out[0, 0], out[1, 0])


def test_seed_axis_without_ensemble_and_extra_batch_axes():
    mlp = perturbed(MLP(4, (8,), 2, layer_norm=True, seeds=2))
    x = torch.randn(2, 5, 6, 4)  # [S, B, M, in]: rows are flattened and restored
    out = mlp(x)
    assert out.shape == (2, 5, 6, 2)
    for s in range(2):
        torch.testing.assert_close(out[s], member_forward(mlp, x[s], s, None))


def test_gradients_stay_in_their_seed_and_member():
    critic = Critic(3, 2, (8,), ensemble_size=2, seeds=2)
    q = critic(torch.randn(2, 4, 3), torch.randn(2, 4, 2))
    assert q.shape == (2, 2, 4)
    q[1, 0].sum().backward()
    first = critic.net.net[0].weight.grad
    assert first[1, 0].abs().sum() > 0
    assert first[1, 1].abs().sum() == 0 and first[0].abs().sum() == 0


def test_fused_bias_activation_path_equals_the_eager_layers(monkeypatch):
    """The path CUDA takes in captured steps (bmm, then activation(z + b) compiled into one kernel) computes
    what the eager baddbmm + activation does, forward and backward, for seed-batched plain and ensemble
    MLPs. Forced on the CPU here, compiled by dynamo + AOT autograd without inductor's code generation (which
    would need a C++ compiler), so that CI checks the wiring without a GPU."""
    monkeypatch.setattr(networks, "FUSION_BACKEND", "aot_eager")
    monkeypatch.setattr(networks, "_FUSED", {})
    torch.manual_seed(0)
    for ensemble in (None, 2):
        mlp = MLP(6, (16, 16), 3, activation="gelu", layer_norm=True, ensemble_size=ensemble, seeds=3)
        x = torch.randn(3, 5, 6)
        monkeypatch.setattr(networks, "FUSED_DEVICE_TYPES", ("cpu",))
        eager = mlp(x)  # outside the context: the eager layers
        eager_grads = torch.autograd.grad(eager.square().sum(), list(mlp.parameters()))
        if ensemble is None:
            assert not networks._FUSED  # nothing compiled outside the context
        with networks.bias_activation_fusion():
            fused = mlp(x)
            fused_grads = torch.autograd.grad(fused.square().sum(), list(mlp.parameters()))
        fused_fn = networks._FUSED[repr(networks.ACTIVATIONS["gelu"]())]  # the compiled path ran
        assert fused_fn.failure is None, fused_fn.failure
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)
        for f, e in zip(fused_grads, eager_grads):
            torch.testing.assert_close(f, e, rtol=1e-5, atol=1e-6)


def test_mish_compiled_form_has_one_exp_and_matches_torch():
    """``networks.Mish`` compiles to its one-``exp`` form (``mish_one_exp``, not torch's mish) and, compiled by
    inductor, computes torch's Mish, forward and backward, within float32 rounding of a float64 reference from
    −30 to 30 (past the softplus threshold at 20), and at −inf, NaN, ±1e30 and 0 as torch does (+inf: inf)."""
    graphs: list[str] = []

    def capture(gm: torch.fx.GraphModule, example_inputs: list) -> torch.fx.GraphModule:
        graphs.append(gm.code)
        return gm

    mish = networks.ACTIVATIONS["mish"]()
    assert isinstance(mish, torch.nn.Mish)
    torch.compile(mish, backend=capture, fullgraph=True)(torch.randn(8))
    assert graphs and graphs[0].count("torch.exp(") == 1 and "mish" not in graphs[0], graphs

    compiled = torch.compile(mish, fullgraph=True)

    def forward_backward(fn: object, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.clone().requires_grad_()
        y = fn(x)
        return y.detach(), torch.autograd.grad(y.sum(), x)[0]

    grid = torch.linspace(-30, 30, 60_001, dtype=torch.float64)
    y64, g64 = forward_backward(torch.nn.functional.mish, grid)
    y, g = forward_backward(compiled, grid.float())
    assert ((y.double() - y64).abs() / (1 + y64.abs())).max() < 2e-7
    assert (g.double() - g64).abs().max() < 1e-5

    special = torch.tensor([float("-inf"), float("nan"), -1e30, 1e30, 0.0])
    for ours, torchs in zip(forward_backward(compiled, special), forward_backward(torch.nn.functional.mish, special)):
        torch.testing.assert_close(ours, torchs, equal_nan=True)
    assert compiled(torch.tensor([float("inf")])).item() == float("inf")
