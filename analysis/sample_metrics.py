"""Sample quality in the analysis layer (torch-free), its one home here: the metrics from
features (Frechet distance (FID), Inception Score, precision and recall, class accuracy), the
sample-quality lines joined into the tidy table (`join_sample_evals`), and which columns are
shown and how they are labelled (`SAMPLE_PANELS`: the samples-vs-N figure,
`analysis.plots.plot_samples_vs_n`, and the sample_eval CLI's line). The line's columns are
declared in `contracts.metrics` (`SAMPLE_FIELDS`, `SAMPLE_METRICS`); the stage that measures
them is `scaling.training.sample_eval`.

The definitions are those of the usual evaluation suites (the ADM suite, torch-fidelity):

- Frechet distance between Gaussians fitted to two feature sets (mean, covariance with
  ddof = 1): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). With Inception pool features
  (2048) it is the FID.
- Inception Score: exp(E_x KL(p(y|x) || p(y))) with p(y|x) the softmax of the logits, over
  `splits` equal chunks (mean and standard deviation over the chunks; 10 by convention).
- Precision and recall (Kynkaenniemi et al. 2019): each real feature owns a ball reaching its
  k-th nearest real neighbour (k = 3); precision is the fraction of generated features inside
  some real ball, recall the fraction of real features inside some generated ball.

Why here and not torch-fidelity or clean-fid: both import torchvision at import time, and
torchvision has no CPU wheel matching the CPU build of torch on PyPI (the CUDA one fails to
import), so on CPU-only machines they cannot even be imported. The Inception network itself
does come from torch-fidelity (``scaling.sample_features``) where it installs (GPU nodes).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import linalg

from contracts.metrics import SAMPLE_FIELDS


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features [N, D] -> (mean [D], covariance [D, D] with ddof 1), float64. N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False, ddof=1).reshape(f.shape[1], f.shape[1])


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Frechet distance of N(mu1 [D], sigma1 [D, D]) and N(mu2, sigma2).

    If the product of the covariances is singular, eps is added to their diagonals (as the
    reference implementations do); a tiny imaginary part from round-off is dropped.
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"statistics do not match: means {mu1.shape} and {mu2.shape}, "
            f"covariances {s1.shape} and {s2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products (dead ReLU features) are handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """logits [N, C] -> (mean, std) over `splits` chunks of exp(mean KL(p(y|x) || p(y)))."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < splits:
        raise ValueError(f"logits must be [N, C] with N >= splits ({splits}), got shape {x.shape}")
    x = x - x.max(axis=1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    n = x.shape[0]
    scores = []
    for i in range(splits):
        lp, pp = (
            log_p[i * n // splits : (i + 1) * n // splits],
            p[i * n // splits : (i + 1) * n // splits],
        )
        log_marginal = np.log(pp.mean(axis=0, keepdims=True))
        scores.append(np.exp((pp * (lp - log_marginal)).sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radius(f: np.ndarray, k: int, batch: int) -> np.ndarray:
    out = np.empty(len(f))
    for i in range(0, len(f), batch):
        d = _sqdist(f[i : i + batch], f)
        out[i : i + batch] = np.sqrt(
            np.partition(d, k, axis=1)[:, k]
        )  # index 0 is the point itself
    return out


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0.0)


def _coverage(query: np.ndarray, support: np.ndarray, radii: np.ndarray, batch: int) -> float:
    inside = 0
    for i in range(0, len(query), batch):
        d = np.sqrt(_sqdist(query[i : i + batch], support))
        inside += int((d <= radii[None, :]).any(axis=1).sum())
    return inside / len(query)


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, batch: int = 4096
) -> tuple[float, float]:
    """Improved precision and recall of `fake` [M, D] against `real` [N, D] with k-NN balls."""
    r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(
            f"features must be [N, D] and [M, D] with the same D, got {r.shape} and {f.shape}"
        )
    if min(len(r), len(f)) <= k:
        raise ValueError(
            f"precision/recall with k = {k} needs more than {k} real and generated "
            f"features, got {len(r)} and {len(f)}"
        )
    precision = _coverage(f, r, _kth_neighbour_radius(r, k, batch), batch)
    recall = _coverage(r, f, _kth_neighbour_radius(f, k, batch), batch)
    return precision, recall


def class_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows of logits [N, C] whose argmax equals labels [N]."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"need logits [N, C] and labels [N], got {logits.shape} and {labels.shape}"
        )
    return float((logits.argmax(axis=1) == labels).mean())


def join_sample_evals(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Move the columns of ``eval == "samples"`` rows (scaling.sample_eval) onto the run's
    evaluation row at the same step; a later sample evaluation of the same step wins. Returns
    the table and the sample rows without such an evaluation row ("run step s"), left out."""
    if "eval" not in table.columns or not (table["eval"] == "samples").any():
        return table, []
    is_sample = table["eval"] == "samples"
    samples, base = table[is_sample], table[~is_sample]
    own = [
        c
        for c in samples.columns
        if c not in ("run", "step")
        and samples[c].notna().any()
        and (c not in base.columns or base[c].isna().all())
    ]
    samples = samples.drop_duplicates(["run", "step"], keep="last")[["run", "step", *own]]
    keys = set(zip(base["run"], base["step"]))
    orphans = [
        f"{r} step {s}" for r, s in zip(samples["run"], samples["step"]) if (r, s) not in keys
    ]
    base = base.drop(columns=[c for c in own if c in base.columns])
    return base.merge(samples, on=["run", "step"], how="left"), orphans


# the sample-quality columns shown (figure, the sample_eval CLI's line), with their labels
SAMPLE_PANELS = (
    ("sample_acc", "class accuracy of samples (demo classifier)"),
    ("sample_fd", "Frechet distance to val, classifier features"),
    ("fid", "FID"),
    ("is", "Inception Score"),
    ("precision", "precision"),
    ("recall", "recall"),
)
assert {c for c, _ in SAMPLE_PANELS} <= set(SAMPLE_FIELDS)  # declared in contracts.metrics
