"""The VAR transformer: AdaLN blocks with block-causal attention over the scales.

State-dict layout and numerics follow the official release (docs/specification.md, sec. 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import attend, make_block_mask, resolve_backend
from .counting import tokens_per_image
from .loss import head_cross_entropy, head_token_losses
from .quantizer import no_autocast
from .vqvae import DEFAULT_PATCH_NUMS


@dataclass
class KVCache:
    """Keys/values [B, H, l, c] of all tokens seen so far (used by the sampler)."""

    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's k, v (along the token axis); return the full k, v."""
        self.k = k if self.k is None else torch.cat((self.k, k), dim=2)
        self.v = v if self.v is None else torch.cat((self.v, v), dim=2)
        return self.k, self.v


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample (training only)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class SelfAttention(nn.Module):
    """Multi-head attention with q/v biases (k bias fixed at zero) and optional l2-norm q, k."""

    zero_k_bias: torch.Tensor  # buffer

    def __init__(self, width: int, heads: int, l2_norm: bool, backend: str):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads, self.head_dim, self.backend = heads, width // heads, backend
        self.l2_norm = l2_norm
        if l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100.0)
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.register_buffer("zero_k_bias", torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, *, mask=None, block_mask=None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """x [B, n, C] -> [B, n, C]; with `cache`, attends to all cached tokens plus x."""
        B, n, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(B, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, n, c]
        if self.l2_norm:
            q = F.normalize(q, dim=-1) * self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            k = F.normalize(k, dim=-1)
        if cache is not None:
            k, v = cache.extend(k, v)
        o = attend(
            q, k, v, backend=self.backend, mask=mask, block_mask=block_mask, scale=self.scale
        )
        return self.proj(o.transpose(1, 2).reshape(B, n, C))


class FFN(nn.Module):
    """fc1 -> tanh-GELU -> fc2."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorm scale/shift and branch gains come from the class.

    ada output order: gamma1, gamma2, scale1, scale2, shift1, shift2.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_ratio: float,
        drop_path: float,
        l2_norm: bool,
        shared_aln: bool,
        norm_eps: float,
        backend: str,
    ):
        super().__init__()
        self.width, self.shared_aln = width, shared_aln
        self.attn = SelfAttention(width, heads, l2_norm, backend)
        self.ffn = FFN(width, round(width * mlp_ratio))
        self.ln = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.drop_path = DropPath(drop_path)
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, width) / width**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, **attn_kw) -> torch.Tensor:
        """x [B, l, C]; cond [B, C] (own ada_lin) or [B, 1, 6, C] (shared variant) -> [B, l, C]."""
        if self.shared_aln:
            ada = self.ada_gss + cond
        else:
            ada = self.ada_lin(cond).view(-1, 1, 6, self.width)
        g1, g2, s1, s2, b1, b2 = ada.unbind(2)
        x = x + self.drop_path(self.attn(self.ln(x) * (1 + s1) + b1, **attn_kw) * g1)
        x = x + self.drop_path(self.ffn(self.ln(x) * (1 + s2) + b2) * g2)
        return x


class AdaLNHead(nn.Module):
    """LayerNorm whose scale/shift come from the class (`head_nm`)."""

    def __init__(self, width: int, norm_eps: float):
        super().__init__()
        self.width = width
        self.ln = nn.LayerNorm(width, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.width).unbind(2)
        return self.ln(x) * (1 + scale) + shift


class VAR(nn.Module):
    """Class-conditional next-scale prediction transformer.

    forward(labels [B], x_in [B, L - pn_0^2, z_channels]) -> logits [B, L, vocab_size] (float32).
    """

    lvl_1L: torch.Tensor  # buffers
    attn_bias_for_masking: torch.Tensor

    def __init__(
        self,
        depth: int = 16,
        *,
        width: int | None = None,
        heads: int | None = None,
        num_classes: int = 1000,
        vocab_size: int = 4096,
        z_channels: int = 32,
        patch_nums: Sequence[int] = DEFAULT_PATCH_NUMS,
        mlp_ratio: float = 4.0,
        drop_path: float | None = None,
        attn_l2_norm: bool = True,
        shared_aln: bool = False,
        cond_drop: float = 0.1,
        norm_eps: float = 1e-6,
        init_adaln: float = 0.5,
        init_adaln_gamma: float = 1e-5,
        init_head: float = 0.02,
        init_std: float | None = None,
        attn_backend: str = "auto",
    ):
        super().__init__()
        width = 64 * depth if width is None else width
        heads = depth if heads is None else heads
        drop_path = 0.1 * depth / 24 if drop_path is None else drop_path
        init_std = math.sqrt(1 / (3 * width)) if init_std is None else init_std
        resolve_backend(attn_backend, torch.device("cpu"))  # validates the name early
        patch_nums = tuple(int(p) for p in patch_nums)
        self._config = dict(
            depth=depth,
            width=width,
            heads=heads,
            num_classes=num_classes,
            vocab_size=vocab_size,
            z_channels=z_channels,
            patch_nums=patch_nums,
            mlp_ratio=mlp_ratio,
            drop_path=drop_path,
            attn_l2_norm=attn_l2_norm,
            shared_aln=shared_aln,
            cond_drop=cond_drop,
            norm_eps=norm_eps,
            init_adaln=init_adaln,
            init_adaln_gamma=init_adaln_gamma,
            init_head=init_head,
            init_std=init_std,
            attn_backend=attn_backend,
        )
        self.depth, self.width, self.heads = depth, width, heads
        self.num_classes, self.vocab_size, self.z_channels = num_classes, vocab_size, z_channels
        self.patch_nums = patch_nums
        self.L = tokens_per_image(patch_nums)
        self.first_l = patch_nums[0] ** 2
        self.begin_ends = []
        cur = 0
        for p in patch_nums:
            self.begin_ends.append((cur, cur + p * p))
            cur += p * p
        self.cond_drop, self.attn_backend, self.shared_aln = cond_drop, attn_backend, shared_aln

        C = width
        self.word_embed = nn.Linear(z_channels, C)
        self.class_emb = nn.Embedding(num_classes + 1, C)  # index num_classes = null class
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.empty(1, self.L, C))
        self.lvl_embed = nn.Embedding(len(patch_nums), C)
        self.shared_ada_lin = (
            nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C)) if shared_aln else nn.Identity()
        )
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            [
                AdaLNBlock(
                    C, heads, mlp_ratio, rates[i], attn_l2_norm, shared_aln, norm_eps, attn_backend
                )
                for i in range(depth)
            ]
        )
        levels = torch.cat([torch.full((p * p,), k) for k, p in enumerate(patch_nums)])
        self.register_buffer("lvl_1L", levels.view(1, self.L))
        allowed = levels.view(-1, 1) >= levels.view(1, -1)  # [query, key]
        self.register_buffer(
            "attn_bias_for_masking",
            torch.where(allowed, 0.0, -torch.inf).view(1, 1, self.L, self.L),
        )
        self.head_nm = AdaLNHead(C, norm_eps)
        self.head = nn.Linear(C, vocab_size)
        self._block_masks: dict = {}  # flex BlockMask per device (built lazily)
        self.init_weights(init_adaln, init_adaln_gamma, init_head, init_std)

    def block_list(self) -> list[AdaLNBlock]:
        """The transformer blocks, typed (iterating an nn.ModuleList yields plain Modules)."""
        return cast("list[AdaLNBlock]", self.blocks)

    def config(self) -> dict:
        """Constructor kwargs with defaults resolved (width, heads, drop_path, init_std)."""
        return dict(self._config)

    def set_attn_backend(self, backend: str) -> None:
        """Switch the attention backend ("auto", "sdpa", "flex", "math") of every block."""
        resolve_backend(backend, torch.device("cpu"))
        self.attn_backend = self._config["attn_backend"] = backend
        for b in self.block_list():
            b.attn.backend = backend

    @torch.no_grad()
    def init_weights(
        self, init_adaln: float, init_adaln_gamma: float, init_head: float, init_std: float
    ) -> None:
        """Official initialisation (truncated normal, scaled head/proj/fc2/AdaLN rows)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=init_std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=init_std)
        nn.init.trunc_normal_(self.pos_start, std=init_std)
        nn.init.trunc_normal_(self.pos_1LC, std=init_std)
        self.head.weight.mul_(init_head)
        cast(nn.Linear, self.head_nm.ada_lin[1]).weight.mul_(init_adaln)
        C = self.width
        for b in self.block_list():
            b.attn.proj.weight.div_(math.sqrt(2 * self.depth))
            b.ffn.fc2.weight.div_(math.sqrt(2 * self.depth))
            if b.shared_aln:
                b.ada_gss[:, :, 2:].mul_(init_adaln)
                b.ada_gss[:, :, :2].mul_(init_adaln_gamma)
            else:
                ada = cast(nn.Linear, b.ada_lin[1]).weight  # rows: gammas (2C), then the rest
                ada[2 * C :].mul_(init_adaln)
                ada[: 2 * C].mul_(init_adaln_gamma)

    # ---- pieces shared by forward and the sampler -------------------------------------
    def check_labels(self, labels: torch.Tensor) -> None:
        """Labels must be a 1-D integer tensor [B]. Checks shape and dtype only: reading the
        values would cost a device-to-host sync (and a graph break under torch.compile) on
        every call, so their range is checked where data enters (`check_label_values`, the
        token store's loader, the sampler)."""
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
            raise ValueError(
                f"labels must be a 1-D integer tensor [B], got "
                f"{type(labels).__name__} {getattr(labels, 'shape', '')}"
            )

    def check_label_values(self, labels: torch.Tensor) -> None:
        """Labels [B] must lie in [0, num_classes] (num_classes = null class); reads them
        (one host sync): call it where labels enter, not in the step."""
        self.check_labels(labels)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = null "
                f"class), got min {int(labels.min())} max {int(labels.max())}"
            )

    def cond_and_ada(self, cond: torch.Tensor) -> torch.Tensor:
        """Class embedding [B, C] -> what the blocks take (itself, or [B, 1, 6, C] if shared)."""
        if self.shared_aln:
            return self.shared_ada_lin(cond).view(-1, 1, 6, self.width)
        return cond

    def lvl_pos(self) -> torch.Tensor:
        """Level plus position embedding [1, L, C]."""
        return self.lvl_embed(self.lvl_1L) + self.pos_1LC

    def trunk(
        self, x: torch.Tensor, cond: torch.Tensor, *, caches=None, masked: bool = True
    ) -> torch.Tensor:
        """Blocks then the head's AdaLN: x [B, l, C], cond [B, C] -> h [B, l, C] float32
        (the head's input: logits = self.head(h)).

        masked=True: x is the full sequence (block-causal mask); with `caches` (one KVCache
        per block) x is the next scale and attends to every cached token, no mask.
        """
        ada = self.cond_and_ada(cond)
        kw: dict = {}
        if masked and caches is None:
            backend = resolve_backend(self.attn_backend, x.device)
            if backend == "flex":
                kw["block_mask"] = self._flex_mask(x.device)
            else:  # sdpa or math
                kw["mask"] = self.attn_bias_for_masking[:, :, : x.shape[1], : x.shape[1]]
        for i, b in enumerate(self.block_list()):
            x = b(x, ada, cache=None if caches is None else caches[i], **kw)
        return self.head_nm(x.float(), cond).float()

    def run_blocks(
        self, x: torch.Tensor, cond: torch.Tensor, *, caches=None, masked: bool = True
    ) -> torch.Tensor:
        """Blocks then head: x [B, l, C], cond [B, C] -> logits [B, l, V] float32 (see `trunk`)."""
        return self.head(self.trunk(x, cond, caches=caches, masked=masked)).float()

    def _flex_mask(self, device: torch.device):
        key = str(device)
        if key not in self._block_masks:
            self._block_masks[key] = make_block_mask(self.lvl_1L.to(device))
        return self._block_masks[key]

    def hidden(self, labels: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """labels [B] in [0, num_classes]; x_in [B, L - pn_0^2, z_channels] -> the head's input
        h [B, L, C] float32 (logits = self.head(h)).

        In training mode each label becomes the null class with probability cond_drop.
        """
        self.check_labels(labels)
        B = labels.shape[0]
        want = (B, self.L - self.first_l, self.z_channels)
        if x_in.ndim != 3 or tuple(x_in.shape) != want:
            raise ValueError(
                f"x_in must be [B, L - first_l, z_channels] = {list(want)}, got {list(x_in.shape)}"
            )
        if self.training and self.cond_drop > 0:
            drop = torch.rand(B, device=labels.device) < self.cond_drop
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        with no_autocast(labels.device):  # embeddings in float32, as the official code
            cond = self.class_emb(labels)
            sos = cond.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, -1, -1)
            x = torch.cat((sos, self.word_embed(x_in.float())), dim=1)
            x = x + self.lvl_pos()
        return self.trunk(x, cond)

    def forward(
        self,
        labels: torch.Tensor,
        x_in: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
        per_token: bool = False,
    ):
        """labels [B] in [0, num_classes]; x_in [B, L - pn_0^2, z_channels] -> logits [B, L, V]
        float32. With targets [B, L] (int64 token ids) the logits are never materialised
        (chunks from the head's input, var_core.loss): the mean cross-entropy over all
        B x L tokens (scalar float32, differentiable), or with per_token=True the pair
        (ce [B, L], err [B, L]) float32 of evaluation (no gradient; err = argmax != target).

        In training mode each label becomes the null class with probability cond_drop.
        """
        h = self.hidden(labels, x_in)
        if targets is None:
            return self.head(h).float()
        if per_token:
            return head_token_losses(
                h.detach(),
                self.head.weight.detach(),
                None if self.head.bias is None else self.head.bias.detach(),
                targets,
            )
        return head_cross_entropy(
            h, self.head.weight, self.head.bias, targets, label_smoothing=label_smoothing
        )

    def token_losses(
        self, labels: torch.Tensor, x_in: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced per-token cross-entropy and error (evaluation, no gradient):
        labels [B], x_in [B, L - pn_0^2, z_channels], targets [B, L] -> (ce [B, L],
        err [B, L]) float32. The same as self(labels, x_in, targets, per_token=True)."""
        with torch.no_grad():
            return self(labels, x_in, targets, per_token=True)
