"""Checkpoint reading (official flat / nested training / toolkit), safety and error messages."""

import os

import pytest
import torch

from var_core import (
    VAR,
    VQVAE,
    CheckpointError,
    load_state_dict_file,
    load_var,
    load_vqvae,
    save_model,
)

PN = (1, 2, 3, 4)
VAR_KW = dict(
    depth=2, width=64, heads=2, num_classes=10, vocab_size=64, z_channels=8, patch_nums=PN
)
VQ_KW = dict(vocab_size=64, z_channels=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=PN)


class Hostile:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_hostile_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": Hostile(marker)}, path)
    for load in (load_state_dict_file, load_var, load_vqvae):
        with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load"):
            load(path)
    assert not marker.exists()


def test_toolkit_round_trip(tmp_path):
    torch.manual_seed(0)
    var, vq = VAR(**VAR_KW), VQVAE(**VQ_KW)
    save_model(tmp_path / "var.pt", var)
    save_model(tmp_path / "vq.pt", vq)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var.pt", "vq.pt"]  # no temp files left
    raw = torch.load(tmp_path / "var.pt", weights_only=True)
    assert raw["format"] == "var_core.var.v1" and raw["config"]["depth"] == 2
    var2, vq2 = load_var(tmp_path / "var.pt"), load_vqvae(tmp_path / "vq.pt")
    assert var2.config() == var.config() and vq2.config() == vq.config()
    assert _same(var2.state_dict(), var.state_dict()) and _same(vq2.state_dict(), vq.state_dict())
    assert _same(load_state_dict_file(tmp_path / "var.pt"), var.state_dict())
    with pytest.raises(
        CheckpointError, match="format 'var_core.var.v1' is not 'var_core.vqvae.v1'"
    ):
        load_vqvae(tmp_path / "var.pt")


def test_nested_training_checkpoint(tmp_path):
    torch.manual_seed(0)
    var, vq = VAR(**VAR_KW), VQVAE(**VQ_KW)
    path = tmp_path / "ar-ckpt-last.pth"
    torch.save(
        {
            "epoch": 3,
            "trainer": {
                "var_wo_ddp": var.state_dict(),
                "vae_local": vq.state_dict(),
                "var_opt": {"step": 5},
            },
        },
        path,
    )
    assert _same(load_state_dict_file(path), var.state_dict())
    assert _same(load_state_dict_file(path, kind="vqvae"), vq.state_dict())
    loaded = load_var(path, patch_nums=PN)
    assert _same(loaded.state_dict(), var.state_dict())
    assert (loaded.depth, loaded.width, loaded.heads, loaded.num_classes) == (2, 64, 2, 10)
    vq2 = load_vqvae(path, ch_mult=(1, 2), num_res_blocks=1, patch_nums=PN)
    assert _same(vq2.state_dict(), vq.state_dict())


def test_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / "flat.pth"
    torch.save(VAR(**VAR_KW).state_dict(), path)
    with pytest.raises(
        CheckpointError,
        match=r"flat\.pth: key 'head\.weight' has shape \[64, 64\] in "
        r"the checkpoint but \[128, 64\] in the model",
    ):
        load_var(path, patch_nums=PN, vocab_size=128)
    # another depth: default width 64*3 = 192 -> the first parameter already mismatches
    with pytest.raises(
        CheckpointError,
        match=r"key '[\w.]+' has shape \[\d+(, \d+)*\] in the "
        r"checkpoint but \[\d+(, \d+)*\] in the model",
    ):
        load_var(path, patch_nums=PN, depth=3)
    # another depth at the same width: the extra block's keys are listed as missing
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks\.2\.ada_lin\.1\.bias'"):
        load_var(path, patch_nums=PN, depth=3, width=64, heads=2)
    sd = VAR(**VAR_KW).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['extra\.weight'\]"):
        load_var(path, patch_nums=PN)


def test_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_var(tmp_path / "nope.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match=r"list\.pth: expected a dict, got list"):
        load_state_dict_file(tmp_path / "list.pth")
    torch.save({"trainer": {"other": {}}}, tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match=r"no \['trainer'\]\['var_wo_ddp'\]"):
        load_state_dict_file(tmp_path / "t.pth")
    with pytest.raises(TypeError, match="VQVAE or VAR"):
        save_model(tmp_path / "x.pt", torch.nn.Linear(2, 2))


def test_official_512px_scales_inferred(tmp_path):
    pn512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)
    torch.save(VAR(1, patch_nums=pn512).state_dict(), tmp_path / "var_d1_512.pth")
    m = load_var(tmp_path / "var_d1_512.pth")
    assert m.patch_nums == pn512 and m.L == 2240


def test_wrapper_prefixes_are_stripped(tmp_path):
    """State dicts saved from torch.compile / DDP wrappers carry `_orig_mod.` / `module.`
    prefixes."""
    var = VAR(**VAR_KW)
    torch.save(
        {f"module._orig_mod.{k}": v for k, v in var.state_dict().items()}, tmp_path / "w.pth"
    )
    assert _same(load_state_dict_file(tmp_path / "w.pth"), var.state_dict())
    assert _same(load_var(tmp_path / "w.pth", patch_nums=PN).state_dict(), var.state_dict())
    wrapped = torch.nn.Module()
    wrapped._orig_mod = var  # what torch.compile's OptimizedModule holds
    save_model(tmp_path / "u.pt", wrapped)
    assert _same(load_var(tmp_path / "u.pt").state_dict(), var.state_dict())
