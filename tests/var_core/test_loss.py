"""The chunked head cross-entropy against the plain path (full fp32 logits + F.cross_entropy)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from var_core import VAR, head_cross_entropy, head_token_losses

torch.set_num_threads(1)


def _head(N=37, C=12, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, C, generator=g, dtype=torch.float64).float().requires_grad_()
    w = (torch.randn(V, C, generator=g) / 3).requires_grad_()
    b = torch.randn(V, generator=g).requires_grad_()
    t = torch.randint(0, V, (N,), generator=g)
    return h, w, b, t


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("chunk_rows", [1, 8, 36, 1000])  # 1000: one chunk, the plain path
def test_loss_and_grads_equal_plain_path(eps, chunk_rows):
    h, w, b, t = _head()
    ref = F.cross_entropy(F.linear(h, w, b).float(), t, label_smoothing=eps)
    ref_grads = torch.autograd.grad(ref, (h, w, b))
    got = head_cross_entropy(h, w, b, t, label_smoothing=eps, chunk_rows=chunk_rows)
    grads = torch.autograd.grad(got, (h, w, b))
    assert abs(got.item() - ref.item()) <= 1e-6 * abs(ref.item())
    for g, r in zip(grads, ref_grads):
        assert (g - r).abs().max().item() <= 1e-6 * r.abs().max().item()
    # without a gradient the same value comes back (the no-grad chunk loop)
    with torch.no_grad():
        assert abs(
            head_cross_entropy(h, w, b, t, label_smoothing=eps, chunk_rows=chunk_rows).item()
            - ref.item()
        ) <= 1e-6 * abs(ref.item())


def test_grad_output_is_applied():
    """d(3 * loss) = 3 * d(loss): the saved gradients are scaled by the incoming gradient."""
    h, w, b, t = _head()
    (g1,) = torch.autograd.grad(head_cross_entropy(h, w, b, t, chunk_rows=5), (w,))
    (g3,) = torch.autograd.grad(3 * head_cross_entropy(h, w, b, t, chunk_rows=5), (w,))
    assert torch.allclose(g3, 3 * g1, rtol=1e-6, atol=0)


def test_token_losses_equal_plain_per_token_values():
    h, w, b, t = _head(N=24)
    logits = F.linear(h, w, b).detach()
    t[::2] = logits.argmax(-1)[::2]  # half the targets are the argmax: both outcomes occur
    ce, err = head_token_losses(h.view(4, 6, -1), w, b, t.view(4, 6), chunk_rows=7)
    ref_ce = F.cross_entropy(logits, t, reduction="none").view(4, 6)
    assert (ce - ref_ce).abs().max().item() <= 1e-6 * ref_ce.abs().max().item()
    assert torch.equal(err, (logits.argmax(-1) != t).float().view(4, 6))
    assert 0 < err.mean().item() < 1  # both outcomes occur: the comparison is not vacuous


def test_model_loss_equals_plain_logits_path():
    """VAR(labels, x_in, targets) against F.cross_entropy on VAR(labels, x_in): loss and
    every parameter's gradient to 1e-6 (fp32)."""
    torch.manual_seed(0)
    kw = dict(
        depth=2,
        width=32,
        heads=2,
        num_classes=10,
        vocab_size=64,
        z_channels=8,
        patch_nums=(1, 2, 3),
        drop_path=0.0,
        init_head=1.0,
        init_adaln_gamma=0.5,
    )
    model = VAR(**kw).eval()
    labels = torch.tensor([0, 3, 9])
    x_in = torch.randn(3, model.L - 1, 8)
    tokens = torch.randint(0, 64, (3, model.L))
    ref = F.cross_entropy(model(labels, x_in).flatten(0, 1), tokens.flatten(), label_smoothing=0.1)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()), allow_unused=True)
    model.zero_grad()
    got = model(labels, x_in, tokens, label_smoothing=0.1)
    grads = torch.autograd.grad(got, list(model.parameters()), allow_unused=True)
    assert abs(got.item() - ref.item()) <= 1e-6 * abs(ref.item())
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        if r is None:
            assert g is None, name
            continue
        assert (g - r).abs().max().item() <= 1e-6 * max(r.abs().max().item(), 1e-12), name
    ce, err = model.token_losses(labels, x_in, tokens)
    ref_ce = F.cross_entropy(model(labels, x_in).detach().transpose(1, 2), tokens, reduction="none")
    assert (ce - ref_ce).abs().max().item() <= 1e-5


def test_bf16_autocast_close_to_plain_autocast_path():
    h, w, b, t = _head(N=64, C=32, V=128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy(F.linear(h, w, b).float(), t)
        ref_gw = torch.autograd.grad(ref, (w,))[0]
        got = head_cross_entropy(h, w, b, t, chunk_rows=16)
        gw = torch.autograd.grad(got, (w,))[0]
    assert abs(got.item() - ref.item()) <= 1e-3 * abs(ref.item())
    assert ((gw - ref_gw).norm() / ref_gw.norm()).item() <= 2e-2
