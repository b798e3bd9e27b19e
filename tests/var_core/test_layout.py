"""State-dict layout and exact parameter counts versus the published official numbers."""

import pytest
import torch

from tests.paths import FIXTURES
from var_core import VAR, VQVAE, main_params, params

FIXTURE = FIXTURES / "official_var_tiny.pt"
PUBLISHED = {
    6: 18_492_580,
    8: 41_315_904,
    16: 310_283_520,
    20: 600_917_136,
    24: 1_033_399_360,
    30: 2_010_020_356,
}


def _numel(m):
    return sum(p.numel() for p in m.parameters())


def test_default_vqvae_layout():
    with torch.device("meta"):
        vq = VQVAE()
    sd = vq.state_dict()
    assert len(sd) == 324 and _numel(vq) == 108_948_355
    # The official file's key set does not depend on ch/vocab: compare with the fixture's.
    official = torch.load(FIXTURE, weights_only=True)["vqvae_state_dict"]
    assert set(sd) == set(official)
    assert sd["quantize.embedding.weight"].shape == (4096, 32)
    assert sd["quantize.ema_vocab_hit_SV"].shape == (10, 4096)
    for i in range(4):
        assert sd[f"quantize.quant_resi.qresi_ls.{i}.weight"].shape == (32, 32, 3, 3)
    assert sd["encoder.down.4.attn.1.qkv.weight"].shape == (3 * 640, 640, 1, 1)
    assert sd["decoder.up.4.attn.2.proj_out.weight"].shape == (640, 640, 1, 1)
    assert "encoder.down.1.block.0.nin_shortcut.weight" not in sd  # 160 -> 160: identity skip
    assert sd["encoder.down.2.block.0.nin_shortcut.weight"].shape == (320, 160, 1, 1)
    assert sd["quant_conv.weight"].shape == sd["post_quant_conv.weight"].shape == (32, 32, 3, 3)
    assert vq.downsample == 16 and vq.image_size == 256


def test_phi_sharing_variants_layout():
    """S=0: quant_resi.{k}; S=1: quant_resi.qresi; S>=2: quant_resi.qresi_ls.{i}."""
    kw = dict(
        vocab_size=16,
        z_channels=8,
        ch=32,
        ch_mult=(1, 1),
        num_res_blocks=1,
        patch_nums=(1, 2, 3, 4),
    )
    keys = lambda m: {k for k in m.state_dict() if "quant_resi" in k}  # noqa: E731
    assert keys(VQVAE(phi_sharing=0, **kw)) == {
        f"quantize.quant_resi.{k}.{p}" for k in range(4) for p in ("weight", "bias")
    }
    assert keys(VQVAE(phi_sharing=1, **kw)) == {
        "quantize.quant_resi.qresi.weight",
        "quantize.quant_resi.qresi.bias",
    }
    assert keys(VQVAE(phi_sharing=3, **kw)) == {
        f"quantize.quant_resi.qresi_ls.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    }
    assert keys(VQVAE(phi_ratio=0.0, **kw)) == set()  # r = 0: identity, no weights


def test_phi_index_rule():
    """K=10, S=4 (docs/specification.md, sec. 1): 0-1 -> 0, 2-4 -> 1, 5-6 -> 2, 7-9 -> 3."""
    q = VQVAE(vocab_size=16, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1).quantize
    assert q.phi_of_scale == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    q0 = VQVAE(
        vocab_size=16, z_channels=8, ch=32, ch_mult=(1, 1), num_res_blocks=1, phi_sharing=0
    ).quantize
    assert q0.phi_of_scale == list(range(10))  # one per scale


def _expected_var_shapes(d):
    C, L, V = 64 * d, 680, 4096
    shapes = {
        "word_embed.weight": (C, 32),
        "word_embed.bias": (C,),
        "class_emb.weight": (1001, C),
        "pos_start": (1, 1, C),
        "pos_1LC": (1, L, C),
        "lvl_embed.weight": (10, C),
        "lvl_1L": (1, L),
        "attn_bias_for_masking": (1, 1, L, L),
        "head_nm.ada_lin.1.weight": (2 * C, C),
        "head_nm.ada_lin.1.bias": (2 * C,),
        "head.weight": (V, C),
        "head.bias": (V,),
    }
    for i in range(d):
        b = f"blocks.{i}."
        shapes.update(
            {
                b + "attn.q_bias": (C,),
                b + "attn.v_bias": (C,),
                b + "attn.zero_k_bias": (C,),
                b + "attn.scale_mul_1H11": (1, d, 1, 1),
                b + "attn.mat_qkv.weight": (3 * C, C),
                b + "attn.proj.weight": (C, C),
                b + "attn.proj.bias": (C,),
                b + "ffn.fc1.weight": (4 * C, C),
                b + "ffn.fc1.bias": (4 * C,),
                b + "ffn.fc2.weight": (C, 4 * C),
                b + "ffn.fc2.bias": (C,),
                b + "ada_lin.1.weight": (6 * C, C),
                b + "ada_lin.1.bias": (6 * C,),
            }
        )
    return shapes


def test_var_d16_layout():
    with torch.device("meta"):
        m = VAR(16)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert got == _expected_var_shapes(16)
    assert m.state_dict()["lvl_1L"].dtype == torch.int64


def test_var_fixture_keys_match():
    official = torch.load(FIXTURE, weights_only=True)["var_state_dict"]
    m = VAR(2, width=128, heads=2, vocab_size=512)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == {
        k: tuple(v.shape) for k, v in official.items()
    }


def test_shared_aln_layout():
    with torch.device("meta"):
        m = VAR(4, shared_aln=True)
    sd = m.state_dict()
    assert sd["shared_ada_lin.1.weight"].shape == (6 * 256, 256)
    assert sd["blocks.3.ada_gss"].shape == (1, 1, 6, 256)
    assert not any("blocks.0.ada_lin" in k for k in sd)


@pytest.mark.parametrize("d", sorted(PUBLISHED))
def test_published_param_counts(d):
    C = 64 * d
    formula = 18 * d * C * C + 14 * d * C + d * d + 2 * C * C + 5823 * C + 4096
    with torch.device("meta"):
        m = VAR(d)
    assert params(d) == PUBLISHED[d] == formula == _numel(m)


@pytest.mark.parametrize(
    "kw",
    [
        dict(
            depth=3,
            width=96,
            heads=3,
            num_classes=10,
            vocab_size=64,
            z_channels=8,
            patch_nums=(1, 2, 4),
        ),
        dict(depth=2, shared_aln=True),
        dict(depth=2, attn_l2_norm=False, mlp_ratio=2.5),
        dict(depth=5, patch_nums=(1, 2, 3, 4, 6, 9, 13, 18, 24, 32)),
    ],
)
def test_param_count_equals_module_for_any_config(kw):
    with torch.device("meta"):
        m = VAR(**kw)
    assert params(**kw) == _numel(m)


def test_main_params():
    assert main_params(16) == 18 * 16 * 1024**2 == 73728 * 16**3


def test_official_init_statistics():
    torch.manual_seed(0)
    d, C = 4, 256
    m = VAR(d, init_adaln_gamma=1e-3)
    std = (1 / (3 * C)) ** 0.5
    rel = lambda t, s: abs(t.std().item() / s - 1)  # noqa: E731
    assert rel(m.class_emb.weight, std) < 0.05 and rel(m.pos_1LC, std) < 0.05
    assert rel(m.blocks[0].attn.mat_qkv.weight, std) < 0.05
    assert rel(m.head.weight, 0.02 * std) < 0.05
    assert rel(m.blocks[1].attn.proj.weight, std / (2 * d) ** 0.5) < 0.05
    assert rel(m.blocks[1].ffn.fc2.weight, std / (2 * d) ** 0.5) < 0.05
    w = m.blocks[2].ada_lin[1].weight
    assert rel(w[: 2 * C], 1e-3 * std) < 0.05 and rel(w[2 * C :], 0.5 * std) < 0.05
    assert rel(m.head_nm.ada_lin[1].weight, 0.5 * std) < 0.05
    assert m.blocks[0].ffn.fc1.bias.abs().max() == 0 and m.head.bias.abs().max() == 0
    assert torch.allclose(m.blocks[3].attn.scale_mul_1H11, torch.full((1, d, 1, 1), 4.0).log())
    assert (
        m.blocks[0].attn.q_bias.abs().max() == 0 and m.blocks[0].attn.zero_k_bias.abs().max() == 0
    )
    rates = [b.drop_path.p for b in m.blocks]
    assert rates[0] == 0 and abs(rates[-1] - 0.1 * d / 24) < 1e-7
    assert all(abs(r - rates[-1] * i / (d - 1)) < 1e-7 for i, r in enumerate(rates))
