"""The VQVAE trainer's extra losses: a perceptual (LPIPS-style) distance on local VGG16
weights and a PatchGAN discriminator. Nothing is downloaded: weights are local files.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from scaling.core.cli import InputError
from scaling.core.safe_load import load_checkpoint_file

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (features index)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on a frozen VGG16 trunk; images [B, 3, H, W] in [-1, 1] -> scalar.

    `vgg_path`: a torchvision-layout VGG16 state dict (`features.<i>.weight/bias`); with
    `lpips_path` (LPIPS `lin<k>.model.1.weight` [1, C, 1, 1]) the per-channel weights are
    LPIPS's, else uniform (a plain normalised-feature distance).
    """

    shift: torch.Tensor  # buffers
    scale: torch.Tensor

    def __init__(self, vgg_path: Path, lpips_path: Path | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CFG:
            if isinstance(v, str):  # "M": max pooling
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        sd = load_checkpoint_file(vgg_path, "VGG16 weights file")
        own = {k[len("features.") :]: v for k, v in sd.items() if k.startswith("features.")}
        missing = set(self.features.state_dict()) - set(own)
        if missing:
            raise InputError(
                f"{vgg_path}: not a torchvision VGG16 state dict (missing "
                f"features.{sorted(missing)[0]})"
            )
        self.features.load_state_dict({k: own[k] for k in self.features.state_dict()})
        widths = (64, 128, 256, 512, 512)
        lins = [torch.ones(1, c, 1, 1) / c for c in widths]
        if lpips_path is not None:
            lp = load_checkpoint_file(lpips_path, "LPIPS weights file")
            try:
                lins = [
                    lp[f"lin{k}.model.1.weight"].float().reshape(1, c, 1, 1)
                    for k, c in enumerate(widths)
                ]
            except KeyError as e:
                raise InputError(f"{lpips_path}: not an LPIPS weights file (missing {e})") from None
        for k, w in enumerate(lins):
            self.register_buffer(f"lin{k}", w)
        # LPIPS input scaling (ImageNet statistics expressed on [-1, 1] inputs)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.MaxPool2d) and min(h.shape[-2:]) < 2:
                break  # small images: use the layers that still have pixels
            h = layer(h)
            if i in VGG16_TAPS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            if i == VGG16_TAPS[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self._taps(x), self._taps(y)
        return sum(
            (getattr(self, f"lin{k}") * (a - b).pow(2)).sum(1).mean()
            for k, (a, b) in enumerate(zip(fx, fy))
        )


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: image [B, 3, H, W] -> logits [B, 1, h, w] (one per patch)."""

    def __init__(self, ch: int = 64, n_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ch
        for i in range(1, n_layers + 1):
            c_next = ch * min(2**i, 8)
            layers += [
                nn.Conv2d(c, c_next, 4, 2 if i < n_layers else 1, 1),
                nn.GroupNorm(8, c_next),
                nn.LeakyReLU(0.2),
            ]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
