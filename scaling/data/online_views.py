"""`data.views: online`: the VQVAE in the training loop, as the official trainer does.

Each step loads the batch's images, takes one random crop of the official training transform
per image (resize to 1.125x, random crop; no flip), drawn from a generator seeded by
(seed, epoch, image), and encodes it with the frozen VQVAE on the training device. Costlier
per step than a token store (an encoder pass per image per step), no storage, and a fresh
view every epoch. Deterministic and resumable like the store's views: the crop is a function
of (seed, epoch, image), whatever the number of processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scaling.data.images import ImageFolder, crop_views, load_rgb
from scaling.data.tokenize import encode
from var_core import VQVAE


class OnlineViews:
    """Encodes fresh training views of an image folder with a VQVAE, on demand."""

    def __init__(
        self,
        images: str | Path,
        vqvae: VQVAE,
        classes: list[str],
        *,
        seed: int,
        device: torch.device,
    ):
        self.vqvae = vqvae.to(device).eval().requires_grad_(False)
        self.ds = ImageFolder(images, int(vqvae.image_size), train=True, classes=classes)
        self.seed, self.device = int(seed), device

    def __len__(self) -> int:
        return len(self.ds)

    def view(self, image: int, epoch: int) -> tuple[int, torch.Tensor]:
        """(the image used, its crop for `epoch`: [3, res, res] in [-1, 1]): image `image`, or
        the next readable one when it cannot be read (the image skip policy of
        scaling.data.images; skipped files are counted in `self.ds.skipped`)."""

        def crop(i: int) -> torch.Tensor:
            return crop_views(
                load_rgb(self.ds.samples[i][0]),
                self.ds.resolution,
                1,
                (self.seed, int(epoch), int(i)),
                resize_ratio=self.ds.resize_ratio,
            )[0]

        return self.ds.first_readable(int(image), crop)

    def batch(self, images: np.ndarray, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens int64 [B, L] on the device, labels int64 [B]) for `images` (int [B])."""
        views = [self.view(i, epoch) for i in np.asarray(images).tolist()]
        x = torch.stack([v for _, v in views])
        # clone: an inference tensor cannot enter the training graph
        tokens = encode(self.vqvae, x.to(self.device, non_blocking=True)).clone()
        labels = torch.tensor([self.ds.samples[i][1] for i, _ in views], dtype=torch.int64)
        return tokens, labels
