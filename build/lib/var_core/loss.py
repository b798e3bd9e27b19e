"""Cross-entropy of the VAR head without materialising fp32 [B, L, V] logits.

The head is a linear map h [N, C] -> logits [N, V] (N = B * L tokens). The plain path
builds all logits in float32, keeps them for the backward pass and allocates a gradient of
the same size there: two N x V float32 tensors (B = 768, L = 680, V = 4096: 2 x 8.6 GB).
Here the rows are processed in chunks of `chunk_rows`; for each chunk the logits, the
loss and the gradient of the loss with respect to the chunk's rows of h and to the head's
weight and bias are computed at once (the gradient of a softmax cross-entropy is
softmax - target), so only grad h [N, C], grad W [V, C] and grad b [V] are kept for the
backward pass and the largest temporary is chunk_rows x V.

Maths per token with label smoothing eps (as `torch.nn.functional.cross_entropy`):
    loss = lse(z) - (1 - eps) z[t] - eps / V * sum(z)
    dloss/dz = softmax(z) - (1 - eps) onehot(t) - eps / V
Under autocast the head's matmuls run in the autocast dtype (as `nn.Linear` would) and the
softmax in float32. A batch whose N rows fit in one chunk (the demo: N = 32 x 30, V = 256)
takes torch's own linear + cross_entropy: its logits are no bigger than one chunk, and
torch's backward is the faster one there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# rows per chunk: ~16 MB of float32 logits per chunk at any vocabulary size
CHUNK_ELEMENTS = 1 << 22


def default_chunk_rows(vocab_size: int) -> int:
    """Rows per chunk so that one chunk of logits holds about CHUNK_ELEMENTS values."""
    return max(1, CHUNK_ELEMENTS // vocab_size)


def _chunk_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """h [n, C] -> logits [n, V] float32 (matmul in the autocast dtype when autocast is on)."""
    return F.linear(h, weight, bias).float()


def _chunk_loss(z: torch.Tensor, t: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """z [n, V] float32, t [n] -> (per-token loss [n], lse [n])."""
    lse = torch.logsumexp(z, dim=-1)
    loss = lse - z.gather(1, t.unsqueeze(1)).squeeze(1)
    if eps:
        loss = lse - (1 - eps) * (lse - loss) - eps * z.mean(dim=-1)
    return loss, lse


class _FusedHeadCE(torch.autograd.Function):
    """Mean cross-entropy of F.linear(h, weight, bias) with gradients computed chunk by chunk."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, eps: float, chunk_rows: int):
        N = h.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        grad_b = (
            None if bias is None else torch.zeros(bias.shape, dtype=torch.float32, device=h.device)
        )
        for start in range(0, N, chunk_rows):
            hc, tc = h[start : start + chunk_rows], targets[start : start + chunk_rows]
            z = _chunk_logits(hc, weight, bias)
            loss, lse = _chunk_loss(z, tc, eps)
            total = total + loss.sum()
            g = torch.exp(z - lse.unsqueeze(1))  # softmax, reusing z's memory budget
            if eps:
                g = g - eps / z.shape[1]
            g = g.scatter_add(
                1,
                tc.unsqueeze(1),
                torch.full((tc.shape[0], 1), -(1 - eps), dtype=g.dtype, device=g.device),
            )
            g = g / N
            grad_h[start : start + chunk_rows] = (g @ weight).to(hc.dtype)
            grad_w = grad_w + (g.t() @ hc).float()
            if grad_b is not None:
                grad_b = grad_b + g.sum(0)
        ctx.save_for_backward(
            grad_h, grad_w.to(weight.dtype), None if grad_b is None else grad_b.to(bias.dtype)
        )
        return total / N

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return (
            grad_h * grad_out,
            grad_w * grad_out,
            None if grad_b is None else grad_b * grad_out,
            None,
            None,
            None,
        )


def head_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the logits F.linear(h, weight, bias) against `targets`.

    h [..., C] (float32), weight [V, C], bias [V] or None, targets [...] int64 in [0, V)
    -> scalar float32, equal to F.cross_entropy(F.linear(h, weight, bias).float() flattened,
    targets flattened, label_smoothing=...) but with at most chunk_rows x V logits alive.
    Differentiable in h, weight and bias (gradients are computed in the forward pass).
    """
    C, V = h.shape[-1], weight.shape[0]
    h2, t2 = h.reshape(-1, C), targets.reshape(-1)
    rows = chunk_rows or default_chunk_rows(V)
    needs_grad = torch.is_grad_enabled() and (
        h.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
    )
    if needs_grad and h2.shape[0] > rows:
        return _FusedHeadCE.apply(h2, weight, bias, t2, float(label_smoothing), rows)
    if needs_grad:  # one chunk: its logits are no bigger than a chunk; torch's own kernels
        return F.cross_entropy(_chunk_logits(h2, weight, bias), t2, label_smoothing=label_smoothing)
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    for start in range(0, h2.shape[0], rows):
        z = _chunk_logits(h2[start : start + rows], weight, bias)
        total = total + _chunk_loss(z, t2[start : start + rows], float(label_smoothing))[0].sum()
    return total / h2.shape[0]


@torch.no_grad()
def head_token_losses(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    chunk_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and error of the head's logits, chunked (evaluation).

    h [B, L, C], weight [V, C], bias [V], targets [B, L] -> (ce [B, L] float32,
    err [B, L] float32: 1 where argmax(logits) != target).
    """
    B, L, C = h.shape
    h2, t2 = h.reshape(-1, C), targets.reshape(-1)
    rows = chunk_rows or default_chunk_rows(weight.shape[0])
    ces, errs = [], []
    for start in range(0, h2.shape[0], rows):
        z = _chunk_logits(h2[start : start + rows], weight, bias)
        t = t2[start : start + rows]
        ces.append(_chunk_loss(z, t, 0.0)[0])
        errs.append((z.argmax(dim=-1) != t).float())
    return torch.cat(ces).view(B, L), torch.cat(errs).view(B, L)
