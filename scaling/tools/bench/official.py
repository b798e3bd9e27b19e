"""Rows of the official VAR code, timed beside ours: imported at run time from a checkout
outside the repository (never copied): a checkout of github.com/FoundationVision/VAR
given as `--official PATH`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.core.cli import InputError
from scaling.tools.bench.geometry import Geometry
from scaling.tools.bench.report import Row
from scaling.tools.bench.timing import peak_memory, time_median

# the official build function replaces these classes' reset_parameters process-wide
_PATCHED = (
    nn.Linear,
    nn.LayerNorm,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.Conv1d,
    nn.Conv2d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
)


def check_checkout(path: Path) -> None:
    """Raise FileNotFoundError unless `path` looks like a checkout of the official code."""
    if not (Path(path) / "models" / "__init__.py").exists():
        raise FileNotFoundError(
            f"--official {path}: not a checkout of the official VAR code (no models/__init__.py)"
        )


@contextlib.contextmanager
def _official_import_path(path: Path) -> Iterator[None]:
    """Make the official checkout importable; its build function patches torch.nn classes'
    reset_parameters globally, so those are restored on exit (our models need them)."""
    saved = {c: c.__dict__.get("reset_parameters") for c in _PATCHED}
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        for c, fn in saved.items():
            if fn is not None:
                c.reset_parameters = fn  # type: ignore[method-assign]  # restore the patch
            elif "reset_parameters" in c.__dict__:  # inherited before (Conv2d from _ConvNd)
                delattr(c, "reset_parameters")


def official_rows(
    path: Path,
    geometry: Geometry,
    depth: int,
    batch: int,
    device: torch.device,
    *,
    warmup: int,
    repeats: int,
    steps: int,
    flops: tuple[float, float],
) -> list[Row]:
    """Time the official VAR code's training step, imported from the checkout at `path`.

    Two rows: the official trainer's step (VQVAE encodes the images every step, fp16 autocast
    with GradScaler on CUDA, fp32 elsewhere) and the same step on pre-tokenised data.
    `flops`: (exact, 6NL) training FLOPs per image for the table. The models are built from
    seed 0 on a forked RNG (the caller's torch RNG is left as it was).
    """
    path = Path(path)
    check_checkout(path)
    cuda = device.type == "cuda"
    with _official_import_path(path), torch.random.fork_rng(devices=[device] if cuda else []):
        try:
            from models import build_vae_var  # the official package, from `path`
        except ImportError as e:
            raise InputError(
                f"--official {path}: importing the official code failed ({e}); install "
                f"its requirements (pip install -r {path / 'requirements.txt'})"
            ) from e

        torch.manual_seed(0)
        vae, var = build_vae_var(
            device=device,
            patch_nums=geometry.patch_nums,
            V=geometry.vocab_size,
            Cvae=geometry.z_channels,
            ch=geometry.vqvae_ch,
            share_quant_resi=4,
            num_classes=geometry.num_classes,
            depth=depth,
            shared_aln=False,
            attn_l2_norm=True,
        )
    vae.eval().requires_grad_(False)
    var.train()
    opt = torch.optim.AdamW(
        var.parameters(),
        lr=1e-4 * batch / 256,
        betas=(0.9, 0.95),
        weight_decay=0.05,
        fused=cuda or None,
    )
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**11) if cuda else None
    amp = torch.autocast("cuda", dtype=torch.float16) if cuda else contextlib.nullcontext()
    size = geometry.patch_nums[-1] * 16
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)
    labels = torch.randint(0, geometry.num_classes, (batch,), generator=gen).to(device)
    with torch.no_grad():
        fixed_idx = vae.img_to_idxBl(images)

    def step(encode: bool) -> None:
        with torch.no_grad():
            idx = vae.img_to_idxBl(images) if encode else fixed_idx
            x_in = vae.quantize.idxBl_to_var_input(idx)
        with amp:
            logits = var(labels, x_in)
            loss = F.cross_entropy(logits.view(-1, geometry.vocab_size), torch.cat(idx, 1).view(-1))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(var.parameters(), 2.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(var.parameters(), 2.0)
            opt.step()
        opt.zero_grad(set_to_none=True)

    rows = []
    for encode, label in (
        (
            True,
            "official trainer (fp16 AMP, VQVAE encode)"
            if cuda
            else "official trainer (fp32, VQVAE encode)",
        ),
        (False, "official, pre-tokenised"),
    ):
        with peak_memory(device) as mem:
            sec, _ = time_median(
                lambda: step(encode), device, warmup=warmup, repeats=repeats, inner=steps
            )
        rows.append(
            Row(
                "train",
                f"d{depth}",
                batch,
                label,
                sec,
                batch,
                geometry.L,
                flops[0],
                flops[1],
                mem["gb"],
            )
        )
    return rows
