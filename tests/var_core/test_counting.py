"""forward_flops against torch's FlopCounterMode on tiny models.

FlopCounterMode counts every matmul over the full L x L attention (it does not know the
mask), and on CPU it does not see inside F.scaled_dot_product_attention, so the models run
with the explicit "math" attention backend; the counted total then equals forward_flops
minus the masked-pair convention (4 P C per block) plus the dense attention (4 L^2 C per block).
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from var_core import VAR, attention_pairs, forward_flops, train_flops_per_image
from var_core.counting import flops_6nd, tokens_per_image

PN = (1, 2, 3, 4)


def _counted(kw, B):
    torch.manual_seed(0)
    m = VAR(**kw, attn_backend="math").eval()
    labels, x = torch.randint(0, m.num_classes, (B,)), torch.randn(B, m.L - m.first_l, m.z_channels)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(labels, x)
    return fc.get_total_flops(), m


@pytest.mark.parametrize(
    "kw",
    [
        dict(
            depth=2, width=64, heads=2, num_classes=10, vocab_size=64, z_channels=8, patch_nums=PN
        ),
        dict(
            depth=3,
            width=96,
            heads=3,
            num_classes=10,
            vocab_size=50,
            z_channels=4,
            patch_nums=(1, 2, 4),
            mlp_ratio=2.5,
        ),
    ],
)
def test_forward_flops_matches_flop_counter(kw):
    counted, m = _counted(kw, B=1)
    L, C, d = m.L, m.width, m.depth
    P = attention_pairs(m.patch_nums)
    assert counted == forward_flops(**kw) - 4 * P * C * d + 4 * L * L * C * d


def test_per_image_scaling_and_shared_aln():
    kw = dict(
        depth=2, width=64, heads=2, num_classes=10, vocab_size=64, z_channels=8, patch_nums=PN
    )
    one, m = _counted(kw, B=1)
    two, _ = _counted(kw, B=2)
    assert two == 2 * one  # everything, ada_lin included, is per image
    # shared AdaLN: the 6C x C projection runs once per image instead of once per block
    shared, _ = _counted({**kw, "shared_aln": True}, B=1)
    C = m.width
    assert shared == one - (kw["depth"] - 1) * 2 * C * 6 * C
    assert (
        forward_flops(**kw, shared_aln=True)
        == forward_flops(**kw) - (kw["depth"] - 1) * 2 * C * 6 * C
    )


def test_attention_pairs_and_defaults():
    # hand count for scales (1, 2): 1*1 + 4*(1+4)
    assert attention_pairs((1, 2)) == 21
    ns = [p * p for p in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)]
    assert attention_pairs() == sum(n * sum(ns[: i + 1]) for i, n in enumerate(ns))
    assert train_flops_per_image(depth=16) == 3 * forward_flops(depth=16)
    assert tokens_per_image() == 680 and tokens_per_image((1, 2, 3)) == 14
    assert flops_6nd(params=10, tokens=7) == 420
    with pytest.raises(TypeError, match="depth"):
        forward_flops(width=64)


def test_unknown_kwargs_are_rejected():
    with pytest.raises(TypeError, match=r"unknown VAR kwargs \['widht'\]"):
        forward_flops(depth=2, widht=64)
    from var_core import params

    assert params(2, drop_path=0.3, attn_backend="sdpa") == params(2)  # no-effect kwargs accepted
