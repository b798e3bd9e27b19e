"""The benchmark's sizes: the token geometry and VQVAE of a run, and random inputs of it.

OFFICIAL is the official 256px release (V = 4096, scales 1..16, L = 680, 1000 classes,
VQVAE ch 160); TINY is small enough for a CPU test (30 tokens, 8px images).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from scaling.data.token_store import save_quantizer, split_meta, store_identity, write_meta
from var_core import VQVAE
from var_core.counting import tokens_per_image


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Token geometry and VQVAE size of the benchmark (default: the official 256px release)."""

    vocab_size: int = 4096
    z_channels: int = 32
    vqvae_ch: int = 160
    vqvae_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # downsample 2^(len - 1)
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    num_classes: int = 1000

    @property
    def L(self) -> int:
        """Tokens per image: sum of pn^2 over the scales."""
        return tokens_per_image(self.patch_nums)

    @property
    def image_size(self) -> int:
        """Image side in pixels: the finest scale times the VQVAE's downsampling."""
        return self.patch_nums[-1] * 2 ** (len(self.vqvae_ch_mult) - 1)


OFFICIAL = Geometry()
TINY = Geometry(
    vocab_size=64,
    z_channels=8,
    vqvae_ch=32,
    vqvae_ch_mult=(1, 2),
    patch_nums=(1, 2, 3, 4),
    num_classes=10,
)


def make_vqvae(geometry: Geometry, device: torch.device, seed: int = 0) -> VQVAE:
    """A randomly initialised VQVAE of the geometry's size, eval mode, frozen, on `device`.

    The weights come from `seed` on a forked RNG: the caller's torch RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):  # built on the CPU, then moved
        torch.manual_seed(seed)
        vqvae = VQVAE(
            vocab_size=geometry.vocab_size,
            z_channels=geometry.z_channels,
            ch=geometry.vqvae_ch,
            ch_mult=geometry.vqvae_ch_mult,
            patch_nums=geometry.patch_nums,
        )
    return vqvae.to(device).eval().requires_grad_(False)


def write_random_store(
    path: Path,
    geometry: Geometry,
    quantizer: torch.nn.Module,
    *,
    n_train: int,
    n_val: int,
    seed: int = 0,
) -> Path:
    """A complete token store (scaling.data.token_store layout) of uniformly random tokens.

    Tokens [n, L] uint16 and labels [n] int32 per split (numpy generator from `seed`);
    `quantizer` is saved with it (the trainer builds its teacher-forcing input from it);
    meta.json through the data layer's writer, last.
    """
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        (path / split).mkdir(parents=True, exist_ok=True)
        np.save(
            path / split / "tokens.npy",
            rng.integers(0, geometry.vocab_size, size=(n, geometry.L)).astype(np.uint16),
        )
        np.save(
            path / split / "labels.npy",
            rng.integers(0, geometry.num_classes, size=n).astype(np.int32),
        )
        splits[split] = split_meta(n)
    save_quantizer(path, quantizer)
    identity = store_identity(
        vqvae_sha256="0" * 64,
        vocab_size=geometry.vocab_size,
        patch_nums=geometry.patch_nums,
        image_size=geometry.image_size,
        classes=[f"class{i}" for i in range(geometry.num_classes)],
        vqvae_config={
            "vocab_size": geometry.vocab_size,
            "z_channels": geometry.z_channels,
            "patch_nums": list(geometry.patch_nums),
        },
    )
    write_meta(path, identity, splits)
    return path
