"""The VQVAE trainer's job description (YAML keys = field names), torch-free.

Sweep files check their `prepare.vqvae` section against it and estimates read its defaults
without importing torch; scaling.data.vqvae_training trains what it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from scaling.core.config_io import InvalidValue
from scaling.core.tracking import WandbConfig


@dataclass(frozen=True)
class VQVAETrainConfig:
    """One VQVAE training job (YAML keys = field names)."""

    images: Path  # dataset root with train/ and val/ class folders
    out: Path  # output directory
    resolution: int = 32  # must equal patch_nums[-1] * 2**(len(ch_mult)-1)
    vocab_size: int = 512  # codebook size V
    z_channels: int = 32  # code width
    ch: int = 32  # multiple of 32 (GroupNorm)
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multiplier per resolution
    num_res_blocks: int = 1  # res blocks per resolution
    patch_nums: tuple[int, ...] = (1, 2, 3, 4)  # scales of the token maps
    phi_sharing: int = 4  # number of phi convolutions shared over the scales
    phi_ratio: float = 0.5  # residual ratio of the phi convolutions
    beta: float = 0.25  # commitment loss weight
    batch_size: int = 16  # images per step
    lr: float = 2e-3  # AdamW learning rate of the VQVAE
    warmup_steps: int = 25  # linear warm-up
    steps: int = 600  # training steps
    seed: int = 0  # initialisation and data order
    num_workers: int = 0  # data-loader workers
    log_every: int = 25  # steps between log lines
    ckpt_every: int = 100  # steps between checkpoints
    eval_images: int = 500  # val images used for MSE/PSNR/usage
    restart_every: int = 50  # dead-code restarts (0: off)
    perceptual_weights: Path | None = None  # local torchvision VGG16 state dict
    lpips_weights: Path | None = None  # optional LPIPS linear heads (lin0..lin4)
    perceptual_weight: float = 1.0  # weight of the perceptual loss (with perceptual_weights)
    disc_weight: float = 0.0  # PatchGAN generator-loss weight (0: no discriminator)
    disc_start: int = 0  # step at which the discriminator starts
    device: Literal["auto", "cpu", "cuda"] = "auto"  # cuda when present
    tensorboard: bool = True  # event files in `out` (scaling.tracking)
    wandb: WandbConfig | None = None  # also log to W&B: {project: NAME, mode: offline}

    def __post_init__(self) -> None:
        down = 2 ** (len(self.ch_mult) - 1)
        if self.resolution != self.patch_nums[-1] * down:
            raise InvalidValue(
                "resolution",
                f"must be patch_nums[-1] * 2**(len(ch_mult)-1) = "
                f"{self.patch_nums[-1]} * {down} = {self.patch_nums[-1] * down}, "
                f"got {self.resolution}",
            )
        if self.ch % 32:
            raise InvalidValue("ch", f"must be a multiple of 32, got {self.ch}")
        if list(self.patch_nums) != sorted(set(self.patch_nums)) or self.patch_nums[0] < 1:
            raise InvalidValue(
                "patch_nums", f"must be strictly increasing positive, got {list(self.patch_nums)}"
            )
        if not 2 <= self.vocab_size <= 65536:
            raise InvalidValue(
                "vocab_size",
                f"must be in [2, 65536] (token store is uint16), got {self.vocab_size}",
            )
        for name in ("batch_size", "steps", "log_every", "ckpt_every", "eval_images"):
            if getattr(self, name) < 1:
                raise InvalidValue(name, f"must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise InvalidValue("lr", f"must be > 0, got {self.lr}")
        for name in ("perceptual_weights", "lpips_weights"):
            p = getattr(self, name)
            if p is not None and not Path(p).is_file():
                raise InvalidValue(
                    name,
                    f"file {p} does not exist (weights are never downloaded: give a local file)",
                )
        if self.lpips_weights is not None and self.perceptual_weights is None:
            raise InvalidValue("lpips_weights", "needs perceptual_weights (the VGG16 trunk) too")

    def vqvae_kwargs(self) -> dict:
        """The var_core.VQVAE constructor arguments."""
        return dict(
            vocab_size=self.vocab_size,
            z_channels=self.z_channels,
            ch=self.ch,
            ch_mult=tuple(self.ch_mult),
            num_res_blocks=self.num_res_blocks,
            beta=self.beta,
            phi_ratio=self.phi_ratio,
            phi_sharing=self.phi_sharing,
            patch_nums=tuple(self.patch_nums),
        )
