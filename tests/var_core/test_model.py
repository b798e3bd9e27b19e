"""Behaviour of the VQVAE, the quantizer, the VAR transformer and the sampler (tiny configs,
CPU)."""

import math

import pytest
import torch
import torch.nn.functional as F

from var_core import VAR, VQVAE, sample, sample_idx, top_k_top_p_filter

PN = (1, 2, 3, 4)
VQ_KW = dict(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=PN)
VAR_KW = dict(
    depth=2,
    width=64,
    heads=2,
    num_classes=10,
    vocab_size=64,
    z_channels=8,
    patch_nums=PN,
    drop_path=0.0,
    attn_backend="sdpa",
)


def _randomize(model, std=0.3, seed=0):
    """Give every parameter O(1) random values: the official init (gamma 1e-5, head x0.02)
    makes attention nearly invisible, which would make causality/cache tests vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(0)
    return _randomize(VQVAE(**VQ_KW), std=0.2).eval()


@pytest.fixture(scope="module")
def var():
    torch.manual_seed(0)
    return _randomize(VAR(**VAR_KW)).eval()


def _images(n=2, size=8, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _inputs(var, B=2, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 10, (B,), generator=g), torch.randn(B, var.L - 1, 8, generator=g)


# ---- quantizer --------------------------------------------------------------------------------
def test_encoding_is_greedy_residual_nearest_neighbour(vq):
    """Independent re-derivation of the encoding rule with cdist (random floats: no ties)."""
    x = _images()
    idx = vq.img_to_idx(x)
    q = vq.quantize
    with torch.no_grad():
        f = vq.quant_conv(vq.encoder(x))
        rest = f.clone()
        E = q.embedding.weight
        for k, pn in enumerate(PN):
            z = F.adaptive_avg_pool2d(rest, pn) if k < len(PN) - 1 else rest
            zf = z.permute(0, 2, 3, 1).reshape(-1, 8)
            want = torch.cdist(zf, E).argmin(1).view(2, pn * pn)
            assert torch.equal(idx[k], want), f"scale {k}"
            h = E[want].transpose(1, 2).reshape(2, 8, pn, pn)
            if k < len(PN) - 1:
                h = F.interpolate(h, size=(4, 4), mode="bicubic")
            rest = rest - q.phi(k, h)


def test_var_input_follows_accumulation_rule(vq):
    idx = vq.img_to_idx(_images())
    vi = vq.idx_to_var_input(idx)
    assert vi.shape == (2, sum(p * p for p in PN) - 1, 8) and vi.dtype == torch.float32
    q = vq.quantize
    phis = list(q.quant_resi.qresi_ls)
    ticks = [1 / 12, 1 / 12 + (1 - 2 / 12) / 3, 1 / 12 + 2 * (1 - 2 / 12) / 3, 11 / 12]  # n = 4
    with torch.no_grad():
        f_hat = torch.zeros(2, 8, 4, 4)
        chunks = []
        for k in range(len(PN) - 1):
            h = q.embedding.weight[idx[k]].transpose(1, 2).reshape(2, 8, PN[k], PN[k])
            h = F.interpolate(h, size=(4, 4), mode="bicubic")
            j = min(range(4), key=lambda i: abs(ticks[i] - k / (len(PN) - 1)))
            f_hat = f_hat + phis[j](h)
            chunks.append(F.adaptive_avg_pool2d(f_hat, PN[k + 1]).flatten(2).transpose(1, 2))
        want = torch.cat(chunks, 1)
    assert torch.allclose(vi, want, atol=1e-6)


def test_vqvae_training_forward(vq):
    vq.train()
    try:
        x = _images()
        out = vq(x)
        assert out.recon.shape == x.shape and out.vq_loss.ndim == 0 and out.vq_loss > 0
        assert [t.shape for t in out.idx] == [(2, p * p) for p in PN]
        (out.recon.square().mean() + out.vq_loss).backward()
        assert (
            vq.encoder.conv_in.weight.grad.abs().sum() > 0
        )  # straight-through reaches the encoder
        assert vq.quantize.embedding.weight.grad.abs().sum() > 0  # codebook trained by the vq loss
        hits = vq.quantize.ema_vocab_hit_SV
        assert torch.equal(
            hits.sum(1), torch.tensor([2.0 * p * p for p in PN])
        )  # first update: copy
    finally:
        vq.zero_grad(set_to_none=True)
        vq.eval()


def test_wrong_image_size(vq):
    with pytest.raises(ValueError, match=r"\[B, 3, 8, 8\].*got \[1, 3, 16, 16\]"):
        vq.img_to_idx(torch.zeros(1, 3, 16, 16))


def test_default_256px_shapes():
    """Default (official) config on one 256px image. The ~109M-parameter VQVAE runs on the meta
    device (shapes only: a real 256px encode+decode takes ~30 s on 2 CPU cores); the VAR with the
    default vocab and scales (depth 1) runs for real on the resulting teacher-forcing input."""
    with torch.device("meta"):
        vq = VQVAE().eval()
        x = torch.empty(1, 3, 256, 256)
    with torch.no_grad():
        out = vq(x)
        assert out.recon.shape == (1, 3, 256, 256) and out.vq_loss.shape == ()
        idx = out.idx
        assert [tuple(t.shape) for t in idx] == [
            (1, p * p) for p in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
        ]
        assert all(t.dtype == torch.long for t in idx)
        assert vq.idx_to_var_input(idx).shape == (1, 679, 32)
        assert vq.idx_to_img(idx).shape == (1, 3, 256, 256)
        torch.manual_seed(0)
        var = VAR(1).eval()
        logits = var(torch.tensor([7]), torch.randn(1, 679, 32))
    assert logits.shape == (1, 680, 4096) and logits.dtype == torch.float32
    assert var.L == 680 and var.width == 64 and var.heads == 1 and var.first_l == 1


# ---- VAR ---------------------------------------------------------------------------------------
def test_block_causality(var):
    labels, x = _inputs(var)
    with torch.no_grad():
        base = var(labels, x)
        for k in range(1, len(PN)):
            a, b = var.begin_ends[k]
            x2 = x.clone()
            x2[:, a - 1 :] += torch.randn_like(x2[:, a - 1 :])  # perturb inputs of scales >= k
            out = var(labels, x2)
            assert (out[:, :a] - base[:, :a]).abs().max() <= 1e-6, f"scale {k} leaked backwards"
            assert (out[:, a:b] - base[:, a:b]).abs().max() > 1e-3  # and it does affect scale k


def test_class_dropout_only_in_training():
    m = _randomize(VAR(**{**VAR_KW, "cond_drop": 1.0}))
    labels, x = _inputs(m)
    null = torch.full_like(labels, 10)
    with torch.no_grad():
        m.eval()
        cond, uncond = m(labels, x), m(null, x)
        m.train()
        dropped = m(labels, x)
    assert (cond - uncond).abs().max() > 1e-3
    assert torch.allclose(dropped, uncond, atol=1e-6)  # train: every label -> null class


def test_bad_labels_and_inputs(var):
    _, x = _inputs(var)
    # the range is checked where labels enter (no host sync in forward) ...
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\].*max 11"):
        var.check_label_values(torch.tensor([1, 11]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\].*min -1"):
        var.check_label_values(torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match=r"labels must be a 1-D integer tensor"):
        var(torch.tensor([1.0, 2.0]), x)
    # ... and forward itself still refuses them on CPU (the embedding's own bound check)
    with pytest.raises(IndexError):
        var(torch.tensor([1, 11]), x)
    with pytest.raises(ValueError, match=r"x_in must be .*\[2, 29, 8\].*got \[2, 28, 8\]"):
        var(torch.tensor([1, 2]), x[:, 1:])
    with pytest.raises(ValueError, match="labels must lie"):
        sample(var, VQVAE(**VQ_KW), [3, 12], top_k=1)
    with pytest.raises(ValueError, match="unknown attention backend"):
        VAR(**{**VAR_KW, "attn_backend": "flash9"})


def test_math_backend_equals_sdpa(var):
    labels, x = _inputs(var)
    with torch.no_grad():
        ref = var(labels, x)
        var.set_attn_backend("math")
        try:
            out = var(labels, x)
        finally:
            var.set_attn_backend("sdpa")
    assert (out - ref).abs().max() <= 1e-5


def test_flex_backend_equals_sdpa(var):
    """Flex runs eagerly on CPU in this torch; on CUDA the same test exercises the compiled
    kernel."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    labels, x = _inputs(var)
    m = var.to(dev)
    try:
        with torch.no_grad():
            m.set_attn_backend("sdpa")
            ref = m(labels.to(dev), x.to(dev))
            m.set_attn_backend("flex")
            out = m(labels.to(dev), x.to(dev))
    finally:
        m.set_attn_backend("sdpa")
        var.to("cpu")
    if dev == "cpu":  # eager flex has no backward: asking for one must fail clearly
        var.set_attn_backend("flex")
        try:
            with pytest.raises(RuntimeError, match="'flex' on cpu .* train with backend 'sdpa'"):
                var(labels, x)
        finally:
            var.set_attn_backend("sdpa")
    # CUDA flex kernels may use TF32 for float32 matmuls: allow a relative 1e-3 there
    tol = 1e-4 if dev == "cpu" else 1e-3 * max(1.0, ref.abs().max().item())
    assert (out - ref).abs().max().item() <= tol


# ---- sampler -----------------------------------------------------------------------------------
def test_kv_cache_sampling_matches_teacher_forcing(vq, var):
    """Greedy (top_k=1) guided sampling with the KV cache picks, at every scale, the argmax of
    the guided teacher-forced logits computed by one full masked forward on the sampled prefix."""
    labels = torch.tensor([3, 7])
    cfg = 1.5
    idx = sample_idx(var, vq, labels, cfg=cfg, top_k=1, top_p=0.0, seed=0)
    vi = vq.idx_to_var_input(idx)
    with torch.no_grad():
        cond = var(labels, vi)
        uncond = var(torch.full_like(labels, 10), vi)
    K = len(PN)
    for k, (a, b) in enumerate(var.begin_ends):
        t = cfg * k / (K - 1)
        guided = (1 + t) * cond[:, a:b] - t * uncond[:, a:b]
        assert torch.equal(guided.argmax(-1), idx[k]), f"scale {k}"


def test_sample_outputs_and_seed(vq, var):
    img, scales = sample(var, vq, [1, 2], top_k=0, top_p=0.0, seed=5, return_scales=True)
    assert img.shape == (2, 3, 8, 8) and 0 <= img.min() and img.max() <= 1
    assert len(scales) == len(PN) and torch.equal(scales[-1], img)
    a = sample_idx(var, vq, [1, 2], top_k=0, top_p=0.0, seed=5)
    b = sample_idx(var, vq, [1, 2], top_k=0, top_p=0.0, seed=5)
    c = sample_idx(var, vq, [1, 2], top_k=0, top_p=0.0, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    with torch.no_grad():
        assert torch.allclose(img, (vq.idx_to_img(a) + 1) / 2, atol=1e-5)


def test_top_k_top_p_filter():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    kept = top_k_top_p_filter(logits, top_k=2).isfinite()
    assert kept.tolist() == [[[False, False, True, True]]]
    p = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    lp = p.log()
    # nucleus: smallest set of most likely tokens with mass >= top_p
    assert top_k_top_p_filter(lp, top_p=0.65).isfinite().tolist() == [[[False, False, True, True]]]
    assert top_k_top_p_filter(lp, top_p=0.75).isfinite().tolist() == [[[False, True, True, True]]]
    assert top_k_top_p_filter(lp, top_p=0.01).isfinite().tolist() == [[[False, False, False, True]]]
    assert top_k_top_p_filter(lp, top_k=3, top_p=0.5).isfinite().tolist() == [
        [[False, False, True, True]]
    ]
    assert math.isclose(
        float(top_k_top_p_filter(lp, top_k=0, top_p=0)[0, 0, 0]), math.log(0.1), rel_tol=1e-6
    )
