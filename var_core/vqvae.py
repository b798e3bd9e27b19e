"""Encoder/decoder conv nets and the multi-scale `VQVAE` (official `vae_ch160v4096z32` layout)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .quantizer import MultiScaleQuantizer
from .scales import DEFAULT_PATCH_NUMS  # its home is var_core.scales; re-exported here


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """GN-SiLU-conv3x3 twice plus a (1x1 `nin_shortcut` when channels change) skip."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with one 1x1 `qkv` conv and a 1x1 `proj_out`."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = _norm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        w = torch.softmax(torch.bmm(q.transpose(1, 2), k) * C**-0.5, dim=2)  # [B, HWq, HWk]
        h = torch.bmm(v, w.transpose(1, 2)).reshape(B, C, H, W)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    """Pad right/bottom by one, then 3x3 stride-2 conv (halves H and W)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then 3x3 conv."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = ResBlock(c, c), AttnBlock(c), ResBlock(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution of the encoder or decoder: res blocks, attention blocks (lowest resolution
    only), and a resampler except at the last level (state-dict keys `down.{i}.block.{j}` ...)."""

    downsample: nn.Module  # set on every encoder level but the last
    upsample: nn.Module  # set on every decoder level but the first

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class Encoder(nn.Module):
    """Image [B, 3, H, W] -> features [B, z_channels, H/2^(n-1), W/2^(n-1)], n = len(ch_mult)."""

    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        z_channels: int,
        in_channels: int = 3,
    ):
        super().__init__()
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            level = _Level()
            for _ in range(num_res_blocks):
                level.block.append(ResBlock(cin, ch * m))
                cin = ch * m
                if i == n - 1:  # attention only at the lowest resolution
                    level.attn.append(AttnBlock(cin))
            if i != n - 1:
                level.downsample = Downsample(cin)
            self.down.append(level)
        self.mid = _Mid(cin)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in cast("list[_Level]", self.down):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Features [B, z_channels, h, w] -> image [B, 3, h*2^(n-1), w*2^(n-1)] (not clamped)."""

    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        z_channels: int,
        out_channels: int = 3,
    ):
        super().__init__()
        n = len(ch_mult)
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = _Mid(cin)
        levels: list[_Level] = []
        for i in reversed(range(n)):
            level = _Level()
            for _ in range(num_res_blocks + 1):
                level.block.append(ResBlock(cin, ch * ch_mult[i]))
                cin = ch * ch_mult[i]
                if i == n - 1:
                    level.attn.append(AttnBlock(cin))
            if i != 0:
                level.upsample = Upsample(cin)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # up[0] is the finest level, run last
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(cast("list[_Level]", self.up)):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class VQVAEOutput:
    """Training output: recon [B, 3, H, W] (not clamped), vq_loss scalar, idx list of [B, pn^2]."""

    recon: torch.Tensor
    vq_loss: torch.Tensor
    idx: list


class VQVAE(nn.Module):
    """Multi-scale residual VQVAE. Images are [B, 3, H, W] in [-1, 1], H = W = image_size."""

    def __init__(
        self,
        vocab_size: int = 4096,
        z_channels: int = 32,
        ch: int = 160,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        beta: float = 0.25,
        phi_ratio: float = 0.5,
        phi_sharing: int = 4,
        patch_nums: Sequence[int] = DEFAULT_PATCH_NUMS,
    ):
        super().__init__()
        if ch % 32:
            raise ValueError(f"ch must be a multiple of 32 (GroupNorm with 32 groups), got {ch}")
        self._config = dict(
            vocab_size=vocab_size,
            z_channels=z_channels,
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            beta=beta,
            phi_ratio=phi_ratio,
            phi_sharing=phi_sharing,
            patch_nums=tuple(int(p) for p in patch_nums),
        )
        self.vocab_size, self.z_channels = vocab_size, z_channels
        self.patch_nums: tuple[int, ...] = tuple(int(p) for p in patch_nums)
        self.downsample = 2 ** (len(ch_mult) - 1)
        self.image_size = self.patch_nums[-1] * self.downsample
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels)
        self.quantize = MultiScaleQuantizer(
            vocab_size, z_channels, self.patch_nums, beta, phi_ratio, phi_sharing
        )
        self.quant_conv = nn.Conv2d(z_channels, z_channels, 3, padding=1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 3, padding=1)

    def config(self) -> dict:
        """Constructor kwargs (JSON-friendly; tuples become lists when serialised)."""
        return dict(self._config)

    def _check_img(self, x: torch.Tensor) -> None:
        s = self.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(
                f"VQVAE expects images [B, 3, {s}, {s}] (patch_nums[-1]={self.patch_nums[-1]} x "
                f"downsample {self.downsample}), got {list(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, 3, H, W] -> features f [B, Cvae, pn_K, pn_K]."""
        self._check_img(x)
        return self.quant_conv(self.encoder(x))

    @torch.no_grad()
    def img_to_idx(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image [B, 3, H, W] in [-1, 1] -> K LongTensors [B, pn_k^2], coarse to fine."""
        return self.quantize.f_to_idx(self.encode(x))

    def idx_to_var_input(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """K index maps -> teacher-forcing input [B, L - pn_0^2, Cvae] float32."""
        return self.quantize.idx_to_var_input(idx)

    def fhat_to_img(self, f_hat: torch.Tensor) -> torch.Tensor:
        """f_hat [B, Cvae, pn_K, pn_K] -> image [B, 3, H, W] clamped to [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)

    def idx_to_img(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """K index maps -> image [B, 3, H, W] in [-1, 1] (all scales summed)."""
        return self.fhat_to_img(self.quantize.idx_to_fhat(idx))

    def forward(self, x: torch.Tensor) -> VQVAEOutput:
        """Training pass (straight-through): image [B, 3, H, W] -> VQVAEOutput."""
        f_hat, vq_loss, idx = self.quantize(self.encode(x))
        return VQVAEOutput(self.decoder(self.post_quant_conv(f_hat)), vq_loss, idx)
