"""Zero-shot editing: sample with a context image and a mask (in-painting, out-painting,
class-conditional editing), as in the VAR paper (sec. 6, "zero-shot task generalisation").

The context image is tokenised by the VQVAE (K token maps, coarse to fine). At every scale the
sampler draws all tokens as usual, then the tokens of the kept region are replaced by the
context's own tokens at that scale (teacher forcing), so every later scale is conditioned on
them. In-painting keeps everything but a hole, out-painting keeps only a region, and
class-conditional editing regenerates a region under another class label.

Mask rule: `keep` is a boolean map of the kept region, [H, W] or [B, H, W], at the image
resolution or at the last scale's token grid. For scale k it is area-downsampled to
pn_k x pn_k and a token is kept when at least half of the area it covers is kept
(`scale_masks`). A mask of all True reproduces the context's tokens exactly; all False is
plain sampling with the same seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .sampling import sample_idx
from .var import VAR
from .vqvae import VQVAE


def scale_masks(keep: torch.Tensor, patch_nums, batch: int, image_size: int) -> list[torch.Tensor]:
    """Kept-region mask [H, W] or [B, H, W] (bool) -> K bool tensors [B, pn_k^2], coarse to fine.

    H = W must be `image_size` or patch_nums[-1]; a token of scale k is kept when the area
    mean of the mask over it is >= 0.5. Raises ValueError naming the expected shapes.
    """
    if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool:
        raise ValueError(
            f"keep mask must be a bool tensor, got {getattr(keep, 'dtype', type(keep).__name__)}"
        )
    grid = int(patch_nums[-1])
    sizes = sorted({int(image_size), grid})
    if keep.ndim == 2:
        keep = keep.unsqueeze(0).expand(batch, -1, -1)
    if (
        keep.ndim != 3
        or keep.shape[0] != batch
        or keep.shape[1] != keep.shape[2]
        or keep.shape[1] not in sizes
    ):
        raise ValueError(
            f"keep mask must be [H, W] or [B, H, W] with B = {batch} and H = W in "
            f"{sizes} (image size or last token grid), got {list(keep.shape)}"
        )
    m = keep.float().unsqueeze(1)  # [B, 1, H, W]
    out = []
    for pn in patch_nums:
        pn = int(pn)
        down = F.interpolate(m, size=(pn, pn), mode="area") if m.shape[-1] != pn else m
        out.append((down >= 0.5).view(batch, pn * pn))
    return out


@torch.no_grad()
def edit_idx(
    var: VAR,
    vqvae: VQVAE,
    labels,
    context: list[torch.Tensor],
    keep: torch.Tensor,
    cfg: float = 1.5,
    top_k: int = 900,
    top_p: float = 0.96,
    seed: int | None = None,
    on_logits: Callable[[int, torch.Tensor], None] | None = None,
) -> list[torch.Tensor]:
    """Edit token maps: context = K LongTensors [B, pn_k^2] (e.g. `vqvae.img_to_idx(img)`),
    keep = kept-region mask (see `scale_masks`). Returns K LongTensors [B, pn_k^2] whose kept
    positions equal the context's tokens and the rest are sampled (cfg, top-k, top-p, seed as
    in `var_core.sample`)."""
    B = context[0].shape[0] if len(context) else 0
    masks = scale_masks(keep.to(context[0].device), var.patch_nums, B, vqvae.image_size)
    return sample_idx(
        var,
        vqvae,
        labels,
        cfg,
        top_k,
        top_p,
        seed,
        context=context,
        keep=masks,
        on_logits=on_logits,
    )


@torch.no_grad()
def edit(
    var: VAR,
    vqvae: VQVAE,
    labels,
    context: torch.Tensor,
    keep: torch.Tensor,
    cfg: float = 1.5,
    top_k: int = 900,
    top_p: float = 0.96,
    seed: int | None = None,
) -> torch.Tensor:
    """Edit images: context [B, 3, H, W] in [-1, 1] (the VQVAE's input range), keep the
    kept-region mask ([H, W] or [B, H, W] bool). Returns images [B, 3, H, W] in [0, 1].

    In-painting: keep = everything but a hole; out-painting: keep = a region only;
    class-conditional editing: `labels` naming another class than the context's.
    """
    idx_ctx = vqvae.img_to_idx(context)  # checks the shape [B, 3, image_size, image_size]
    masks = scale_masks(keep.to(context.device), var.patch_nums, context.shape[0], vqvae.image_size)
    idx = sample_idx(var, vqvae, labels, cfg, top_k, top_p, seed, context=idx_ctx, keep=masks)
    return (vqvae.idx_to_img(idx) + 1) / 2
