"""Teacher-forced test metrics, exactly as the paper defines them.

For every test image the model sees the ground-truth tokens of all coarser scales (teacher
forcing, class dropout off) and predicts every token. Per token:
  cross-entropy  -log softmax(logits)[target]   (natural log, float32)
  error          argmax(logits) != target
`*_avg` averages over all L tokens of all images, `*_last` over the tokens of the last scale
(the final token map, e.g. 256 of 680 at 256px), `*_by_scale[k]` over the tokens of scale k.
`*_se` is the standard error of each of the four over the test images: the sample sd of the
per-image values / sqrt(images), the test set's sampling error (what `analysis.overfit`
measures a rise against).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from scaling.core.cli import InputError
from var_core.counting import tokens_per_image


def scale_index(patch_nums: tuple[int, ...]) -> torch.Tensor:
    """LongTensor [L]: the scale of each token, coarse to fine."""
    return torch.cat(
        [torch.full((pn * pn,), k, dtype=torch.long) for k, pn in enumerate(patch_nums)]
    )


@torch.no_grad()
def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and error from full logits (the plain reference path; the
    trainer uses `VAR.token_losses`, chunked from the trunk's output).
    logits [B, L, V], targets [B, L] -> two [B, L] float32."""
    logits = logits.float()
    ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    err = (logits.argmax(dim=-1) != targets).float()
    return ce, err


@torch.no_grad()
def evaluate(
    losses: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    patch_nums: tuple[int, ...],
    device: torch.device,
    autocast: contextlib.AbstractContextManager | None = None,
    all_reduce: Callable[[torch.Tensor], None] | None = None,
) -> dict:
    """Test CE and token error over `batches` of (tokens [B, L], labels [B]).

    `losses(tokens, labels) -> (ce [B, L], err [B, L])` runs the model teacher-forced in eval
    mode (e.g. `VAR.token_losses`, or `token_losses` on full logits).
    Nothing is read back to the host until all batches are done.
    `all_reduce` sums a tensor across ranks in place (each image is on exactly one rank).
    Returns ce_avg, ce_last, err_avg, err_last, their standard errors ce_avg_se ... err_last_se,
    ce_by_scale, err_by_scale (lists) and images.
    """
    K = len(patch_nums)
    scales = scale_index(patch_nums).to(device)
    # sums per scale: [0] cross-entropy, [1] errors; then the image count
    sums = torch.zeros(2, K, dtype=torch.float64, device=device)
    images = torch.zeros(1, dtype=torch.float64, device=device)
    # per-image values of ce_avg, ce_last, err_avg, err_last: [0] their sums, [1] of squares
    moments = torch.zeros(2, 4, dtype=torch.float64, device=device)
    last = scales == K - 1
    for tokens, labels in batches:
        tokens, labels = tokens.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with autocast or contextlib.nullcontext():
            ce, err = losses(tokens, labels)
        sums[0].index_add_(0, scales, ce.sum(0).double())
        sums[1].index_add_(0, scales, err.sum(0).double())
        per_image = torch.stack(
            [ce.mean(1), ce[:, last].mean(1), err.mean(1), err[:, last].mean(1)], 1
        ).double()  # [B, 4]
        moments[0] += per_image.sum(0)
        moments[1] += (per_image * per_image).sum(0)
        images += tokens.shape[0]
    if all_reduce is not None:
        all_reduce(sums)
        all_reduce(moments)
        all_reduce(images)
    n = images.item()  # the one host read of the evaluation (with the sums below)
    if n == 0:
        raise InputError("evaluation saw no test images (an empty evaluation split?)")
    per_scale_tokens = torch.tensor(
        [pn * pn for pn in patch_nums], dtype=torch.float64, device=device
    )
    by_scale = (sums / (n * per_scale_tokens)).cpu()
    total_tokens = n * tokens_per_image(patch_nums)
    totals = sums.sum(1).cpu()
    mean, square = (moments / n).cpu()
    var = (square - mean * mean).clamp(min=0) * (n / max(n - 1, 1))  # sample variance
    se = (var / n).sqrt().tolist()
    return dict(
        ce_avg=totals[0].item() / total_tokens,
        ce_last=by_scale[0, -1].item(),
        err_avg=totals[1].item() / total_tokens,
        err_last=by_scale[1, -1].item(),
        ce_by_scale=by_scale[0].tolist(),
        err_by_scale=by_scale[1].tolist(),
        images=int(n),
        **{f"{k}_se": v for k, v in zip(SE_OF, se, strict=True)},
    )


SE_OF = ("ce_avg", "ce_last", "err_avg", "err_last")  # the order of `moments` above
