"""Multi-scale residual vector quantizer with the phi refiners (VAR stage 1).

Behaviour and state-dict layout follow the official `VectorQuantizer2` (see
docs/specification.md, sec. 1); the code is written from that description.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def no_autocast(device: torch.device):
    """Quantize in float32 even under mixed precision (argmin ties, residual accuracy)."""
    if device.type in ("cuda", "cpu", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()  # e.g. meta tensors (shape checks)


class Phi(nn.Conv2d):
    """phi(h) = (1 - r) * h + r * conv3x3(h); h: [B, C, h, w] -> same shape."""

    def __init__(self, channels: int, ratio: float):
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


def phi_ticks(n: int) -> np.ndarray:
    """Positions in [0, 1] of n phi refiners (float64, as the official code)."""
    if n == 4:
        return np.linspace(1 / (3 * n), 1 - 1 / (3 * n), n)
    return np.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)


def phi_index(k: int, num_scales: int, n: int) -> int:
    """Which of n phis scale k (of num_scales) uses: argmin |ticks - k/(K-1)| (numpy ties)."""
    at = k / (num_scales - 1) if num_scales > 1 else 0.0
    return int(np.argmin(np.abs(phi_ticks(n) - at)))


class _PhiList(nn.ModuleList):
    """S = 0: one phi per scale; the state-dict keys are `quant_resi.{i}.*`."""


class _PhiShared(nn.Module):
    """S = 1: one phi for every scale; keys `quant_resi.qresi.*`."""

    def __init__(self, phi: nn.Module):
        super().__init__()
        self.qresi = phi


class _PhiPartial(nn.Module):
    """S >= 2: S phis spread over the scales; keys `quant_resi.qresi_ls.{i}.*`."""

    def __init__(self, phis: list[nn.Module]):
        super().__init__()
        self.qresi_ls = nn.ModuleList(phis)


class MultiScaleQuantizer(nn.Module):
    """Residual quantizer over the scales `patch_nums` (coarse to fine).

    Features f are [B, Cvae, H, W] with H = W = patch_nums[-1]. Distances are computed
    as sum(z^2) + sum(e^2) - 2 z e^T (one addmm) so that argmin ties resolve like the
    official code.
    """

    ema_vocab_hit_SV: torch.Tensor  # buffer

    def __init__(
        self,
        vocab_size: int,
        z_channels: int,
        patch_nums: Sequence[int],
        beta: float = 0.25,
        phi_ratio: float = 0.5,
        phi_sharing: int = 4,
    ):
        super().__init__()
        self.vocab_size, self.z_channels = vocab_size, z_channels
        self.patch_nums = tuple(int(p) for p in patch_nums)
        self.beta, self.phi_ratio, self.phi_sharing = beta, phi_ratio, phi_sharing
        K = len(self.patch_nums)

        def make() -> nn.Module:
            return Phi(z_channels, phi_ratio) if abs(phi_ratio) > 1e-6 else nn.Identity()

        if phi_sharing == 0:
            self.quant_resi: nn.Module = _PhiList([make() for _ in range(K)])
            self._phis = list(self.quant_resi)
        elif phi_sharing == 1:
            self.quant_resi = _PhiShared(make())
            self._phis = [self.quant_resi.qresi]
        elif phi_sharing >= 2:
            self.quant_resi = _PhiPartial([make() for _ in range(phi_sharing)])
            self._phis = list(self.quant_resi.qresi_ls)
        else:
            raise ValueError(f"phi_sharing must be >= 0, got {phi_sharing}")
        self.phi_of_scale = [phi_index(k, K, len(self._phis)) for k in range(K)]
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(K, vocab_size))
        # bicubic upsampling pn x pn -> H x H is linear: its matrix [pn^2, H^2] per scale,
        # taken from F.interpolate itself (rows = upsampled basis images). One small matmul
        # instead of the bicubic kernel (~40x faster on CPU for these sizes; equal to it up
        # to float rounding, ~1e-7). Not saved in state dicts (derived from patch_nums).
        H = self.patch_nums[-1]
        for k, pn in enumerate(self.patch_nums[:-1]):
            basis = torch.eye(pn * pn, dtype=torch.float64).view(pn * pn, 1, pn, pn)
            up = F.interpolate(basis, size=(H, H), mode="bicubic").view(pn * pn, H * H)
            self.register_buffer(f"_upsample_{k}", up.float(), persistent=False)
        self.record_hit = 0  # how many EMA updates so far (official schedule)
        self.embedding = nn.Embedding(vocab_size, z_channels)

    # ---- helpers -------------------------------------------------------------------
    @property
    def work_dtype(self) -> torch.dtype:
        """float32 (float64 for a double model): quantization never runs in half precision."""
        return torch.promote_types(self.embedding.weight.dtype, torch.float32)

    def phi(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Apply the phi refiner of scale k to h [B, Cvae, H, W]."""
        return self._phis[self.phi_of_scale[k]](h)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Codebook index of each row of z [N, Cvae] -> LongTensor [N]."""
        e = self.embedding.weight.detach()
        d = z.square().sum(dim=1, keepdim=True) + e.square().sum(dim=1)
        d = torch.addmm(d, z, e.t(), beta=1, alpha=-2)
        return d.argmin(dim=1)

    def embed(self, idx: torch.Tensor, pn: int) -> torch.Tensor:
        """idx [B, pn*pn] -> codes [B, Cvae, pn, pn]."""
        B = idx.shape[0]
        return self.embedding(idx).transpose(1, 2).reshape(B, self.z_channels, pn, pn)

    def _upsample(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Bicubic upsampling of scale k's codes h [B, C, pn, pn] -> [B, C, H, H] (as
        F.interpolate(..., mode="bicubic"), as a matmul with its matrix); the last scale as is."""
        if k == len(self.patch_nums) - 1:
            return h
        H = self.patch_nums[-1]
        up = getattr(self, f"_upsample_{k}")
        return (h.flatten(2) @ up.to(h.dtype)).view(h.shape[0], h.shape[1], H, H)

    def _check_f(self, f: torch.Tensor) -> None:
        H = self.patch_nums[-1]
        if f.ndim != 4 or f.shape[1] != self.z_channels or f.shape[2] != H or f.shape[3] != H:
            raise ValueError(
                f"quantizer expects features [B, {self.z_channels}, {H}, {H}], got {list(f.shape)}"
            )

    # ---- encoding ------------------------------------------------------------------
    def f_to_idx(self, f: torch.Tensor) -> list[torch.Tensor]:
        """Features f [B, Cvae, H, W] -> K index maps, entry k of shape [B, pn_k^2]."""
        self._check_f(f)
        K = len(self.patch_nums)
        B, C = f.shape[:2]
        with no_autocast(f.device):
            f_rest = f.detach().to(self.work_dtype).clone()
            out = []
            for k, pn in enumerate(self.patch_nums):
                z = F.interpolate(f_rest, size=(pn, pn), mode="area") if k < K - 1 else f_rest
                idx = self.nearest(z.permute(0, 2, 3, 1).reshape(-1, C)).view(B, pn * pn)
                h = self.phi(k, self._upsample(self.embed(idx, pn), k))
                f_rest = f_rest - h
                out.append(idx)
        return out

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Training pass: f [B, Cvae, H, W] -> (f_hat straight-through, vq_loss scalar, idx
        list)."""
        self._check_f(f)
        K = len(self.patch_nums)
        B, C = f.shape[:2]
        with no_autocast(f.device):
            f = f.to(self.work_dtype)
            f_ng = f.detach()
            f_rest = f_ng.clone()
            f_hat = torch.zeros_like(f_rest)
            loss = f.new_zeros(())
            idxs = []
            for k, pn in enumerate(self.patch_nums):
                z = F.interpolate(f_rest, size=(pn, pn), mode="area") if k < K - 1 else f_rest
                idx = self.nearest(z.permute(0, 2, 3, 1).reshape(-1, C))
                if self.training:
                    self._record_hits(k, idx)
                idx = idx.view(B, pn * pn)
                h = self.phi(k, self._upsample(self.embed(idx, pn), k))
                f_hat = f_hat + h
                f_rest = f_rest - h.detach()
                loss = loss + self.beta * F.mse_loss(f_hat.detach(), f) + F.mse_loss(f_hat, f_ng)
                idxs.append(idx)
            loss = loss / K
            f_hat = (f_hat.detach() - f_ng) + f  # straight-through estimator
        return f_hat, loss, idxs

    @torch.no_grad()
    def _record_hits(self, k: int, idx: torch.Tensor) -> None:
        """Usage statistic only (no effect on outputs): copy on the first training call, then EMA
        0.9 for 100 calls, then 0.99. Unlike the official code (which counts per scale and only
        under torch.distributed) the counter advances once per call, in every training run."""
        hit = idx.bincount(minlength=self.vocab_size).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(hit)
        if self.record_hit == 0:
            self.ema_vocab_hit_SV[k].copy_(hit)
        elif self.record_hit < 100:
            self.ema_vocab_hit_SV[k].mul_(0.9).add_(hit, alpha=0.1)
        else:
            self.ema_vocab_hit_SV[k].mul_(0.99).add_(hit, alpha=0.01)
        if k == len(self.patch_nums) - 1:
            self.record_hit += 1

    # ---- decoding / teacher forcing ------------------------------------------------
    def idx_to_fhat(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """K index maps -> f_hat [B, Cvae, H, W] (sum of all refined scales)."""
        self._check_idx(idx)
        f_hat: torch.Tensor | None = None
        with no_autocast(idx[0].device):
            for k, pn in enumerate(self.patch_nums):
                h = self.phi(k, self._upsample(self.embed(idx[k], pn).to(self.work_dtype), k))
                f_hat = h if f_hat is None else f_hat + h
        assert f_hat is not None  # _check_idx requires one map per scale
        return f_hat

    def idx_to_var_input(self, idx: Sequence[torch.Tensor]) -> torch.Tensor:
        """K index maps -> teacher-forcing input [B, L - pn_0^2, Cvae] (float32)."""
        self._check_idx(idx)
        B = idx[0].shape[0]
        H = self.patch_nums[-1]
        f_hat = torch.zeros(B, self.z_channels, H, H, device=idx[0].device, dtype=self.work_dtype)
        nxt = []
        with no_autocast(idx[0].device):
            for k in range(len(self.patch_nums) - 1):
                f_hat, x = self.next_input(
                    k, f_hat, self.embed(idx[k], self.patch_nums[k]).to(self.work_dtype)
                )
                nxt.append(x.flatten(2).transpose(1, 2))
        return torch.cat(nxt, dim=1)

    def next_input(
        self, k: int, f_hat: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive step: add scale k's codes h [B, Cvae, pn_k, pn_k] to f_hat.

        Returns (f_hat, next map [B, Cvae, pn_{k+1}, pn_{k+1}]); at the last scale the
        second entry is f_hat itself.
        """
        f_hat = f_hat + self.phi(k, self._upsample(h, k))
        if k == len(self.patch_nums) - 1:
            return f_hat, f_hat
        pn = self.patch_nums[k + 1]
        return f_hat, F.interpolate(f_hat, size=(pn, pn), mode="area")

    def _check_idx(self, idx: Sequence[torch.Tensor]) -> None:
        if len(idx) != len(self.patch_nums):
            raise ValueError(
                f"expected {len(self.patch_nums)} index maps (one per scale), got {len(idx)}"
            )
        for k, (t, pn) in enumerate(zip(idx, self.patch_nums)):
            if t.ndim != 2 or t.shape[1] != pn * pn:
                raise ValueError(f"index map {k} must be [B, {pn * pn}], got {list(t.shape)}")
