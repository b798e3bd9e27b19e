"""The fast path (bf16 autocast, FlexAttention) against the plain fp32 SDPA path, on CPU.

Stated tolerances (scaling.tools.bench.fast_path.fast_path_checks): bf16 autocast with fp32 master
weights
must give the fp32 loss to a relative 1e-2 and the gradients (all parameters, L2) to a
relative 5e-2; kernels compared at fp32 must agree to 1e-5 (loss) and 1e-4 (gradients).
"""

from __future__ import annotations

import pytest
import torch

from scaling.tools.bench import fast_path
from scaling.tools.bench.geometry import TINY, make_vqvae
from scaling.training.inputs import split_scales
from var_core import VAR

GEO = TINY
CPU = torch.device("cpu")


def var_kwargs(depth: int = 2) -> dict:
    kw = VAR(
        depth,
        num_classes=GEO.num_classes,
        vocab_size=GEO.vocab_size,
        z_channels=GEO.z_channels,
        patch_nums=GEO.patch_nums,
    ).config()
    kw.pop("attn_backend")
    return {**kw, **fast_path.CHECK_INIT}


@pytest.fixture(scope="module")
def vqvae(one_thread):  # one thread for this module, restored after it
    return make_vqvae(GEO, CPU)


@pytest.fixture(scope="module")
def batch(vqvae):
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, GEO.vocab_size, (3, GEO.L), generator=gen)
    labels = torch.randint(0, GEO.num_classes, (3,), generator=gen)
    x_in = vqvae.quantize.idx_to_var_input(split_scales(tokens, GEO.patch_nums))
    return tokens, labels, x_in


def twins(backend_a: str, backend_b: str) -> tuple[VAR, VAR]:
    torch.manual_seed(0)
    a = VAR(**var_kwargs(), attn_backend=backend_a).eval()
    b = VAR(**var_kwargs(), attn_backend=backend_b).eval()
    b.load_state_dict(a.state_dict())
    return a, b


def test_bf16_autocast_matches_fp32_loss_and_gradients(batch):
    tokens, labels, x_in = batch
    model, _ = twins("sdpa", "sdpa")
    ref_loss, ref_grads = fast_path.loss_and_grads(model, labels, x_in, tokens, "fp32", CPU)
    loss, grads = fast_path.loss_and_grads(model, labels, x_in, tokens, "bf16", CPU)
    assert abs(loss - ref_loss) / abs(ref_loss) <= 1e-2
    err = fast_path.grad_rel(grads, ref_grads)
    assert err <= 5e-2
    assert err > 0  # bf16 really ran (fp32 would be exact)


def test_gradient_check_is_not_vacuous(batch):
    """A 1% change to one weight matrix is far outside the fp32 gradient tolerance."""
    tokens, labels, x_in = batch
    a, b = twins("sdpa", "sdpa")
    with torch.no_grad():
        b.blocks[0].attn.mat_qkv.weight.mul_(1.01)
    _, ga = fast_path.loss_and_grads(a, labels, x_in, tokens, "fp32", CPU)
    _, gb = fast_path.loss_and_grads(b, labels, x_in, tokens, "fp32", CPU)
    assert fast_path.grad_rel(gb, ga) > 1e-4
    assert fast_path.grad_rel(ga, ga) == 0


def test_flex_loss_matches_sdpa(batch):
    flex_fwd, _, reason = fast_path.flex_supported(CPU)
    if not flex_fwd:
        pytest.skip(reason)
    tokens, labels, x_in = batch
    sdpa, flex = twins("sdpa", "flex")
    ref_loss, _ = fast_path.loss_and_grads(sdpa, labels, x_in, tokens, "fp32", CPU, grads=False)
    loss, _ = fast_path.loss_and_grads(flex, labels, x_in, tokens, "fp32", CPU, grads=False)
    assert abs(loss - ref_loss) / abs(ref_loss) <= 1e-5


def test_flex_gradients_match_sdpa(batch):
    _, flex_bwd, reason = fast_path.flex_supported(CPU)
    if not flex_bwd:
        pytest.skip(reason)
    tokens, labels, x_in = batch
    sdpa, flex = twins("sdpa", "flex")
    ref_loss, ref_grads = fast_path.loss_and_grads(sdpa, labels, x_in, tokens, "fp32", CPU)
    loss, grads = fast_path.loss_and_grads(flex, labels, x_in, tokens, "fp32", CPU)
    assert abs(loss - ref_loss) / abs(ref_loss) <= 1e-5
    assert fast_path.grad_rel(grads, ref_grads) <= 1e-4


def test_sampler_agrees_with_the_teacher_forced_flex_forward(vqvae):
    """The KV-cache sampler's logits against the block-masked forward of FlexAttention on the
    tokens it drew: flex really runs here (with its BlockMask), the sampler does not need it."""
    flex_fwd, _, reason = fast_path.flex_supported(CPU)
    if not flex_fwd:
        pytest.skip(reason)
    _, flex = twins("sdpa", "flex")
    labels = torch.tensor([0, 5, 9])
    calls = []
    real = flex_attention_module().flex_attention

    def counted(*a, **k):
        calls.append(k.get("block_mask"))
        return real(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flex_attention_module(), "flex_attention", counted)
        assert fast_path.sampler_vs_teacher_forced(flex, vqvae, labels, CPU) <= 1e-4
    assert calls and all(m is not None for m in calls)  # flex ran, with its block mask


def test_sampler_check_fails_on_a_broken_cache(vqvae):
    """A cache that forgets the previous scales' keys/values: the sampler's logits then
    disagree with the teacher-forced forward far beyond the tolerance."""
    from var_core import KVCache

    model, _ = twins("sdpa", "sdpa")
    labels = torch.tensor([0, 5, 9])
    assert fast_path.sampler_vs_teacher_forced(model, vqvae, labels, CPU) <= 1e-4
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(KVCache, "extend", lambda self, k, v: (k, v))
        assert (
            fast_path.sampler_vs_teacher_forced(model, vqvae, labels, CPU) > 1e-3
        )  # 5e-3 here, 1e-7 intact


def flex_attention_module():
    from torch.nn.attention import flex_attention as fa

    return fa


def test_sampler_tokens_do_not_depend_on_batch_order(vqvae):
    sdpa, _ = twins("sdpa", "sdpa")
    labels = torch.tensor([0, 5, 9])
    ref = fast_path.sampled_tokens(sdpa, vqvae, labels, "fp32", CPU)
    assert ref.shape == (3, GEO.L) and int(ref.min()) >= 0 and int(ref.max()) < GEO.vocab_size
    # top_k=1 is the argmax: tokens do not depend on the labels' order in the batch
    swapped = fast_path.sampled_tokens(sdpa, vqvae, labels.flip(0), "fp32", CPU)
    assert torch.equal(swapped.flip(0), ref)
    # and the recorder left the quantizer as it was
    assert "embed" not in vars(vqvae.quantize)


def test_fast_path_checks_report(vqvae):
    checks = fast_path.fast_path_checks(
        var_kwargs(), GEO, fast_path.FastPath("bf16", "sdpa"), CPU, batch=2, vqvae=vqvae
    )
    by_name = {c.name: c for c in checks}
    assert by_name["loss rel diff, bf16+sdpa vs fp32 sdpa"].tolerance == 1e-2
    assert by_name["grad rel L2 error, bf16+sdpa vs fp32 sdpa"].tolerance == 5e-2
    assert all(c.passed for c in checks if c.tolerance is not None)
    sampler = by_name["sampler (KV cache) logits vs teacher-forced fp32 sdpa, rel max error"]
    assert sampler.tolerance == 1e-4 and sampler.passed
    info = by_name["sampler top_k=1 tokens equal, bf16 vs fp32 (fraction)"]
    assert info.passed is None and 0 <= info.value <= 1
