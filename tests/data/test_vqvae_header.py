"""A VQVAE checkpoint's vocabulary, code width and scales, read without torch and without its
weights: toolkit files by their config, official layouts by the codebook's shape (with the
scales `var_core.load_vqvae` builds them with); anything else is refused and nothing runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from scaling.data.vqvae_header import (
    OFFICIAL_PATCH_NUMS,
    HeaderUnreadable,
    VQVAEHeader,
    read_vqvae_header,
)
from tests.paths import ROOT
from var_core import VQVAE, load_vqvae, save_model
from var_core.scales import DEFAULT_PATCH_NUMS


def _tiny(**kw) -> VQVAE:
    args = dict(vocab_size=40, z_channels=8, ch=32, ch_mult=(1, 2, 2), patch_nums=(1, 2, 4))
    return VQVAE(**{**args, **kw})


def test_toolkit_checkpoint_gives_its_config(tmp_path):
    save_model(tmp_path / "v.pt", _tiny(vocab_size=40, z_channels=8, patch_nums=(1, 2, 4)))
    assert read_vqvae_header(tmp_path / "v.pt") == VQVAEHeader(40, 8, (1, 2, 4), "toolkit")


def test_official_layouts_give_the_codebook_shape_and_the_default_scales(tmp_path):
    """Flat and training-checkpoint layouts; the scales are those load_vqvae builds (its
    defaults), checked against the model it really loads."""
    assert OFFICIAL_PATCH_NUMS == DEFAULT_PATCH_NUMS
    model = _tiny(vocab_size=24, z_channels=6, patch_nums=DEFAULT_PATCH_NUMS)
    torch.save(model.state_dict(), tmp_path / "flat.pth")
    torch.save({"trainer": {"vae_local": model.state_dict()}}, tmp_path / "train.pth")
    for name in ("flat.pth", "train.pth"):
        header = read_vqvae_header(tmp_path / name)
        assert header == VQVAEHeader(24, 6, DEFAULT_PATCH_NUMS, "official")
    loaded = load_vqvae(tmp_path / "flat.pth", ch_mult=(1, 2, 2))
    assert (loaded.vocab_size, loaded.z_channels) == (24, 6)
    assert tuple(loaded.patch_nums) == read_vqvae_header(tmp_path / "flat.pth").patch_nums


class _Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "cannot read"),
        ("text", "not a zip-format torch checkpoint"),
        ("var", "not a VQVAE checkpoint"),
        ("code", "is not read here"),
    ],
)
def test_what_is_not_a_vqvae_checkpoint_is_refused(tmp_path, capfd, case, message):
    path = tmp_path / "x.pt"
    if case == "text":
        path.write_text("not a checkpoint")
    elif case == "var":
        torch.save({"head.weight": torch.zeros(3, 2)}, path)
    elif case == "code":
        torch.save({"config": _Boom()}, path)
    with pytest.raises(HeaderUnreadable, match=message):
        read_vqvae_header(path)
    assert "must never run" not in capfd.readouterr().out


def test_reading_a_header_imports_no_torch(tmp_path):
    save_model(tmp_path / "v.pt", _tiny())
    code = (
        "import sys\n"
        "from scaling.data.vqvae_header import read_vqvae_header\n"
        f"print(read_vqvae_header({str(tmp_path / 'v.pt')!r}).vocab_size)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "40"
