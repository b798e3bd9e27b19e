"""The evaluator's standard errors: sample sd of the per-image values / sqrt(images)."""

from __future__ import annotations

import numpy as np
import torch

from scaling.training.evaluate import evaluate


def test_standard_errors_from_per_image_values():
    patch_nums = (1, 2)  # L = 5 tokens: 1 of scale 0, 4 of the last scale
    rng = np.random.default_rng(0)
    ce = rng.uniform(0.5, 3.0, size=(7, 5))
    err = (rng.uniform(size=(7, 5)) < 0.6).astype(float)
    batches = [
        (torch.zeros(4, 5, dtype=torch.long), torch.zeros(4, dtype=torch.long)),
        (torch.zeros(3, 5, dtype=torch.long), torch.zeros(3, dtype=torch.long)),
    ]
    rows = iter([slice(0, 4), slice(4, 7)])

    def losses(tokens, labels):
        s = next(rows)
        return torch.tensor(ce[s], dtype=torch.float32), torch.tensor(err[s], dtype=torch.float32)

    out = evaluate(losses, batches, patch_nums, torch.device("cpu"))
    per_image = {
        "ce_avg": ce.mean(1),
        "ce_last": ce[:, 1:].mean(1),
        "err_avg": err.mean(1),
        "err_last": err[:, 1:].mean(1),
    }
    for m, v in per_image.items():
        assert out[m] == np.float32(v.mean()) or abs(out[m] - v.mean()) < 1e-6
        assert abs(out[f"{m}_se"] - v.std(ddof=1) / np.sqrt(7)) < 1e-6, m
