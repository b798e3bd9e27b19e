"""How good a multi-scale VQVAE is as a tokenizer, measured on held-out images and written to
``tokenizer_quality.json`` (`contracts.tokenizer`, this module is its one writer).

    python -m scaling.tokenizer_quality VQVAE.pt IMAGES_ROOT [--classifier C.pt]
        [--inception-weights W.pth] [--images 500] [--out DIR]

On the first `images` readable images of IMAGES_ROOT/val (the official evaluation transform):
the reconstruction PSNR (and that of the mean-colour baseline), the codes' usage and entropy
per scale (`analysis.tokenizer.scale_codes`), and where a feature network is given, the
Frechet distance of the reconstructions to the originals in its features (the demo
classifier's: ``recon_fd``, with its class accuracy on the reconstructions ``recon_acc``;
Inception's where its weights are given: ``recon_fid``). The sweep's preparation stage
``quality`` runs it for every VQVAE the sweep trains, after the classifier stage.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import numpy as np
import torch

from analysis.sample_metrics import class_accuracy, frechet_distance, gaussian_stats
from analysis.tokenizer import scale_codes
from contracts.tokenizer import FILE, ScaleQuality, TokenizerQuality, read_quality, write_quality
from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.core.provenance import sha256_file
from scaling.core.runtime import pick_device
from scaling.data.images import ImageFolder, read_classes_file
from scaling.training.sample_features import (
    ClassifierFeatures,
    FeatureNet,
    InceptionFeatures,
    extract,
)
from var_core import VQVAE, load_vqvae

log = logging.getLogger(__name__)


def _uint8(x: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3] (as the sample stage stores images)."""
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def reconstruct(
    model: VQVAE, ds: ImageFolder, n: int, batch_size: int = 100
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray, dict]:
    """The first `n` readable images of `ds` through the VQVAE.

    Returns (originals uint8 [N, H, W, 3], reconstructions uint8 [N, H, W, 3], codes per scale
    [N, pn*pn] int64, labels [N], {"psnr", "psnr_mean_colour"} in dB on [0, 1] images)."""
    model.eval()
    dev = next(model.parameters()).device
    loaded = [(ds.try_load(i, ds.load), ds.samples[i][1]) for i in range(min(n, len(ds)))]
    keep = [(x, y) for x, y in loaded if x is not None]  # unreadable files skipped
    if not keep:
        raise InputError(f"{ds.root}: no readable image to measure the tokenizer on")
    orig, recon, labels = [], [], []
    codes: list[list[np.ndarray]] = [[] for _ in model.patch_nums]
    se = se_base = 0.0
    count = 0
    for s in range(0, len(keep), batch_size):
        x = torch.stack([k[0] for k in keep[s : s + batch_size]]).to(dev)
        idx = model.img_to_idx(x)
        rec = model.idx_to_img(idx).clamp(-1, 1)
        se += (rec - x).pow(2).sum().item()
        se_base += (x.mean((2, 3), keepdim=True) - x).pow(2).sum().item()
        count += x.numel()
        for k, t in enumerate(idx):
            codes[k].append(t.cpu().numpy().astype(np.int64))
        orig.append(_uint8(x.cpu()))
        recon.append(_uint8(rec.cpu()))
        labels += [k[1] for k in keep[s : s + batch_size]]

    def psnr(se: float) -> float:  # MSE on [-1, 1] -> PSNR on [0, 1]
        return 10 * math.log10(4.0 / max(se / count, 1e-12))

    return (
        np.concatenate(orig),
        np.concatenate(recon),
        [np.concatenate(c) for c in codes],
        np.asarray(labels),
        {"psnr": psnr(se), "psnr_mean_colour": psnr(se_base)},
    )


def feature_distance(
    net: FeatureNet, orig: np.ndarray, recon: np.ndarray, labels: np.ndarray | None = None
) -> tuple[float, float | None]:
    """(Frechet distance of reconstructions to originals in `net`'s features, the class
    accuracy of its logits on the reconstructions when `labels` are given, else None)."""
    f_orig, _ = extract(net, orig)
    f_rec, logits = extract(net, recon)
    fd = frechet_distance(*gaussian_stats(f_orig), *gaussian_stats(f_rec))
    return fd, (class_accuracy(logits, labels) if labels is not None else None)


def measure(
    vqvae: str | Path,
    images: str | Path,
    *,
    split: str = "val",
    max_images: int = 500,
    classifier: str | Path | None = None,
    inception_weights: str | Path | None = None,
    device: str = "auto",
) -> TokenizerQuality:
    """Measure the VQVAE checkpoint `vqvae` on the first `max_images` images of
    ``images/<split>`` (see the module docstring); feature distances only for the networks
    given."""
    vqvae = Path(vqvae)
    dev = pick_device(device)
    model = load_vqvae(vqvae).to(dev)
    root = Path(images)
    classes = read_classes_file(root)
    ds = ImageFolder(root / split, model.image_size, train=False, classes=classes)
    orig, recon, codes, labels, psnr = reconstruct(model, ds, max_images)
    stats = scale_codes(codes, model.vocab_size, model.patch_nums)
    features = recon_fd = recon_acc = recon_fid = None
    if classifier is not None:
        net = ClassifierFeatures(classifier, dev)
        recon_fd, recon_acc = feature_distance(net, orig, recon, labels)
        features = net.name
    if inception_weights is not None:
        recon_fid, _ = feature_distance(InceptionFeatures(inception_weights, dev), orig, recon)
    return TokenizerQuality(
        vqvae_sha256=sha256_file(vqvae),
        vqvae_path=str(vqvae),
        vocab_size=model.vocab_size,
        patch_nums=tuple(model.patch_nums),
        split=split,
        images=len(orig),
        psnr=psnr["psnr"],
        psnr_mean_colour=psnr["psnr_mean_colour"],
        scales=tuple(
            ScaleQuality(
                pn=s.pn,
                count=s.count,
                used=s.used,
                usage=s.usage,
                entropy_nats=s.entropy_nats,
                entropy_bits=s.entropy_bits,
                bias_nats=s.bias_nats,
            )
            for s in stats
        ),
        features=features,
        recon_fd=recon_fd,
        recon_acc=recon_acc,
        recon_fid=recon_fid,
    )


def measure_and_write(out: str | Path, vqvae: str | Path, images: str | Path, **kwargs) -> Path:
    """`measure` and write `out/tokenizer_quality.json` (atomic); returns its path. A file
    already there for the same checkpoint (same sha256) is kept: the stage resumes."""
    path = Path(out) / FILE
    old = read_quality(path)
    if old is not None and old.vqvae_sha256 == sha256_file(vqvae):
        return path
    quality = measure(vqvae, images, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_quality(path, quality)
    log.info("tokenizer quality: %s", quality.summary())
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m scaling.tokenizer_quality VQVAE IMAGES_ROOT [options] (exit 2: a bad
    checkpoint, image folder or feature network)."""
    p = argparse.ArgumentParser(
        prog="python -m scaling.tokenizer_quality", description=__doc__.split("\n")[0]
    )
    p.add_argument("vqvae", help="VQVAE checkpoint (var_core.load_vqvae)")
    p.add_argument("images", help="image root with a <split>/ folder of class folders")
    p.add_argument("--split", default="val")
    p.add_argument("--images", dest="max_images", type=int, default=500)
    p.add_argument("--classifier", default=None, help="the demo classifier (recon_fd)")
    p.add_argument("--inception-weights", default=None, help="torch-fidelity weights (recon_fid)")
    p.add_argument("--out", default=None, help="folder of the file (default: the VQVAE's)")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    setup_logging()

    def run() -> None:
        out = Path(a.out) if a.out else Path(a.vqvae).parent
        path = measure_and_write(
            out,
            a.vqvae,
            a.images,
            split=a.split,
            max_images=a.max_images,
            classifier=a.classifier,
            inception_weights=a.inception_weights,
            device=a.device,
        )
        quality = read_quality(path)
        assert quality is not None
        print(f"{path}: {quality.summary()}")

    return run_cli(run)
