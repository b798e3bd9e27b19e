"""Bits per image by hand on a tiny store, and the tokenizer-quality measurement against the
VQVAE trainer's own evaluation and hand-counted codes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from analysis.results import read_runs
from analysis.tokenizer import code_entropy
from contracts.tokenizer import read_quality
from scaling.data.images import ImageFolder
from scaling.data.synthetic import generate
from scaling.data.token_store import load_quantizer
from scaling.data.vqvae_training import evaluate_vqvae, val_images
from scaling.training.inputs import split_scales
from scaling.training.job import train_run
from scaling.training.tokenizer_quality import measure, measure_and_write
from scaling.training.trained_models import load_run_var
from tests.factories import make_token_store, tiny_run_config, write_run
from var_core import VQVAE, save_model


def test_bits_per_image_by_hand_on_a_tiny_store(tmp_path):
    store = make_token_store(tmp_path / "tokens", patch_nums=(1, 2, 3), n_val=48)
    run_dir = write_run(tmp_path / "runs" / "r", tiny_run_config(store, "r", steps=16))
    train_run(run_dir)
    table = read_runs(tmp_path / "runs")
    last = table.iloc[-1]
    # the per-scale CEs of the metrics line times the tokens of each scale (1, 4, 9)
    per_scale = [last[f"ce_s{k}"] for k in range(3)]
    assert last["bits_per_image"] == pytest.approx(
        sum(c * n for c, n in zip(per_scale, (1, 4, 9))) / math.log(2), rel=1e-9
    )
    # and from the trained model itself: each val image's summed token CE, averaged, in bits
    var, _ = load_run_var(run_dir)
    tokens = torch.from_numpy(np.load(store / "val" / "tokens.npy").astype(np.int64))
    labels = torch.from_numpy(np.load(store / "val" / "labels.npy").astype(np.int64))
    x_in = load_quantizer(store).idx_to_var_input(split_scales(tokens, (1, 2, 3)))
    with torch.no_grad():
        logits = var(labels, x_in).float()
    nats = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1).mean()
    assert last["bits_per_image"] == pytest.approx(float(nats) / math.log(2), rel=1e-4)


@pytest.fixture(scope="module")
def tiny_vqvae(tmp_path_factory):
    root = tmp_path_factory.mktemp("tq")
    images = generate(
        root / "images", num_classes=2, train_per_class=4, val_per_class=6, resolution=8, seed=0
    )
    torch.manual_seed(0)
    model = VQVAE(
        vocab_size=16, z_channels=4, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=(1, 2, 4)
    )
    save_model(root / "vqvae" / "vqvae.pt", model)
    return root, images, model


def test_quality_matches_the_vqvae_evaluation_and_counted_codes(tiny_vqvae):
    root, images, model = tiny_vqvae
    q = measure(root / "vqvae" / "vqvae.pt", images, device="cpu")
    assert q.images == 12 and q.patch_nums == (1, 2, 4) and q.vocab_size == 16
    # PSNR and usage: the VQVAE trainer's evaluation of the same val images
    ds = ImageFolder(images / "val", 8, train=False)
    x = val_images(ds, 500)
    ref = evaluate_vqvae(model, x)
    assert q.psnr == pytest.approx(ref["val_psnr"], abs=1e-4)
    assert q.psnr_mean_colour == pytest.approx(ref["val_psnr_mean_colour"], abs=1e-6)
    assert [s.usage for s in q.scales] == pytest.approx(ref["usage_scale"], abs=1e-4)
    # entropy: the codes counted here from img_to_idx
    with torch.no_grad():
        idx = model.eval().img_to_idx(x)
    for s, t in zip(q.scales, idx):
        assert s.count == t.numel()
        assert s.entropy_nats == pytest.approx(code_entropy(t.numpy(), 16))
    assert q.recon_fd is None and q.features is None  # no feature network given


def test_written_once_per_checkpoint(tiny_vqvae, tmp_path):
    root, images, _ = tiny_vqvae
    path = measure_and_write(tmp_path, root / "vqvae" / "vqvae.pt", images, device="cpu")
    first = path.stat().st_mtime_ns
    again = measure_and_write(tmp_path, root / "vqvae" / "vqvae.pt", images, device="cpu")
    assert again == path and path.stat().st_mtime_ns == first  # the same checkpoint: kept
    assert read_quality(path).vqvae_path.endswith("vqvae.pt")
