"""Zero-shot editing (var_core.editing): masked sampling with a context image's tokens."""

import pytest
import torch

from var_core import VAR, VQVAE, edit, edit_idx, sample_idx, scale_masks

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


def _randomize(model, std, seed=0):
    # O(1) weights: the official init makes attention almost invisible (vacuous cache tests)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


@pytest.fixture(scope="module")
def models():
    return _randomize(VQVAE(**VQ_KW), 0.2), _randomize(VAR(**VAR_KW), 0.3)


@pytest.fixture(scope="module")
def context(models):
    vq, _ = models
    img = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return img, vq.img_to_idx(img)


def test_scale_masks_by_hand():
    """Area rule, checked on a 4x4 token-grid mask keeping the left column pair (half the area)."""
    keep = torch.zeros(4, 4, dtype=torch.bool)
    keep[:, :2] = True
    m = scale_masks(keep, PN, batch=1, image_size=8)
    assert m[0].tolist() == [[True]]  # mean 0.5 >= 0.5
    assert m[1].view(2, 2).tolist() == [[True, False], [True, False]]
    # 3x3: area weights over 4 columns are 4/3 per cell: left col fully kept, middle 1/2 kept
    assert m[2].view(3, 3).tolist() == [[True, True, False]] * 3
    assert torch.equal(m[3].view(4, 4), keep)
    # the same mask at image resolution (8x8) gives the same per-scale masks
    big = keep.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert all(torch.equal(a, b) for a, b in zip(m, scale_masks(big, PN, batch=1, image_size=8)))


def test_keep_everything_reproduces_context(models, context):
    vq, var = models
    _, ctx = context
    out = edit_idx(var, vq, [1, 2, 3], ctx, torch.ones(8, 8, dtype=torch.bool), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(out, ctx))


def test_keep_nothing_equals_plain_sampling(models, context):
    vq, var = models
    _, ctx = context
    for seed in (0, 3):
        out = edit_idx(
            var,
            vq,
            [1, 2, 3],
            ctx,
            torch.zeros(3, 4, 4, dtype=torch.bool),
            seed=seed,
            top_k=0,
            top_p=0.0,
        )
        ref = sample_idx(var, vq, [1, 2, 3], seed=seed, top_k=0, top_p=0.0)
        assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_kept_tokens_never_change_and_rest_is_sampled(models, context):
    """In-painting (hole in the middle) and out-painting (keep the centre only), and a
    class-conditional edit (other labels): kept positions equal the context at every scale."""
    vq, var = models
    _, ctx = context
    hole = torch.ones(8, 8, dtype=torch.bool)
    hole[2:6, 2:6] = False
    for keep in (hole, ~hole):
        masks = scale_masks(keep, PN, 3, 8)
        changed = 0
        for seed in range(4):
            out = edit_idx(var, vq, [9, 0, 4], ctx, keep, seed=seed, top_k=0, top_p=0.0)
            for k in range(len(PN)):
                assert torch.equal(out[k][masks[k]], ctx[k][masks[k]]), f"scale {k}"
                changed += int((out[k][~masks[k]] != ctx[k][~masks[k]]).sum())
        assert changed > 0  # the free region really is sampled


def test_kv_cache_path_equals_teacher_forced_recomputation(models, context):
    """The logits the cached sampler used at each scale equal one masked teacher-forced forward
    pass over the edited tokens (cond and null class), to float32 round-off."""
    vq, var = models
    _, ctx = context
    keep = torch.zeros(8, 8, dtype=torch.bool)
    keep[:, :4] = True
    labels = torch.tensor([5, 6, 7])
    seen = {}
    out = edit_idx(
        var, vq, labels, ctx, keep, seed=1, on_logits=lambda k, lg: seen.__setitem__(k, lg.clone())
    )
    vi = vq.idx_to_var_input(out)
    with torch.no_grad():
        cond = var(labels, vi)
        null = var(torch.full_like(labels, var.num_classes), vi)
    for k, (a, b) in enumerate(var.begin_ends):
        assert torch.allclose(seen[k][:3], cond[:, a:b], atol=1e-4, rtol=1e-4), f"scale {k} cond"
        assert torch.allclose(seen[k][3:], null[:, a:b], atol=1e-4, rtol=1e-4), f"scale {k} null"


def test_edit_images(models, context):
    vq, var = models
    img, ctx = context
    out = edit(var, vq, [1, 2, 3], img, torch.ones(8, 8, dtype=torch.bool), seed=0)
    assert out.shape == (3, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(out, (vq.idx_to_img(ctx) + 1) / 2, atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 5), (8, 4), (2, 8, 8), (1, 3, 8, 8)])
def test_mask_of_wrong_shape(models, context, shape):
    vq, var = models
    img, ctx = context
    with pytest.raises(ValueError, match="keep mask must be"):
        edit_idx(var, vq, [1, 2, 3], ctx, torch.ones(shape, dtype=torch.bool))


def test_bad_mask_dtype_and_context(models, context):
    vq, var = models
    img, ctx = context
    with pytest.raises(ValueError, match="bool"):
        edit_idx(var, vq, [1, 2, 3], ctx, torch.ones(8, 8))
    with pytest.raises(ValueError, match="VQVAE expects images"):
        edit(var, vq, [1, 2, 3], img[:, :, :6, :6], torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"context\[1\] must be"):
        edit_idx(
            var,
            vq,
            [1, 2, 3],
            [ctx[0], ctx[1][:, :2], *ctx[2:]],
            torch.ones(8, 8, dtype=torch.bool),
        )
    with pytest.raises(ValueError, match="outside"):
        edit_idx(var, vq, [1, 2, 3], [ctx[0] + 64, *ctx[1:]], torch.ones(8, 8, dtype=torch.bool))
