"""Bootstrap intervals that carry the uncertainty of a fitted irreducible term E.

When E is fitted (`analysis.irreducible`: one E per loss, shared by its law vs N and its law
vs Cmin), holding E at its point estimate in the bootstrap understates the exponents'
uncertainty: a small change of E tilts every log-log line. `shared_bootstrap` redoes the whole
estimate in each draw instead: it draws runs with replacement (one draw shared by both laws,
as the point estimate shares E), rebuilds the law-vs-N points (each drawn run's final
evaluation, counted as often as drawn) and the Cmin frontier of the drawn runs' curves, refits
the shared E by maximum likelihood on the sets that locate it (by default the law vs N's
points alone, `analysis.fitting.e_sources`; the profile likelihood of `analysis.irreducible`,
weighted by the draw's counts) and then each law's (alpha, beta) at that E. The percentile
intervals of those draws (with the small-sample expansion of `analysis.powerlaw`) are the
laws' intervals. Torch-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .frontier import frontier_mask
from .paper import X_SCALE
from .powerlaw import Law, Method, fit_law
from .results import ResultsError


@dataclasses.dataclass(frozen=True)
class PointSet:
    """One law's data in a form every bootstrap draw can rebuild.

    against "N": `final` holds one (run, x, y) row per run (x in billions of params).
    against "Cmin": `curves` holds per run (run, compute [n] in FLOPs ascending, metric [n]).
    """

    against: str
    final: pd.DataFrame | None = None
    curves: tuple[tuple[str, np.ndarray, np.ndarray], ...] = ()

    def runs(self) -> list[str]:
        """The runs this law's points can come from."""
        if self.against == "N":
            assert self.final is not None
            return [str(r) for r in self.final["run"]]
        return [r for r, _, _ in self.curves]

    def draw(self, counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(x, y, weights) of this law for one draw (run -> times drawn); None when the draw
        has fewer than 3 distinct x (no line through it)."""
        if self.against == "N":
            assert self.final is not None
            w = np.array([counts.get(str(r), 0) for r in self.final["run"]], float)
            keep = w > 0
            x = self.final["x"].to_numpy(float)[keep]
            y = self.final["y"].to_numpy(float)[keep]
            w = w[keep]
        else:
            sub = [(c, y, counts[r]) for r, c, y in self.curves if counts.get(r, 0) > 0]
            if len(sub) < 2:
                return None
            _, _, _, masks = frontier_mask([(c, y) for c, y, _ in sub])
            x = np.concatenate([c[m] for (c, _, _), m in zip(sub, masks)]) / X_SCALE["Cmin"]
            y = np.concatenate([y[m] for (_, y, _), m in zip(sub, masks)])
            w = np.concatenate(
                [np.full(int(m.sum()), k, float) for (_, _, k), m in zip(sub, masks)]
            )
        if len(np.unique(x)) < 3:
            return None
        return x, y, w


def profile_E(
    sets: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], grid: int = 200, refine: int = 40
) -> float:
    """The maximum-likelihood shared E for weighted point sets (x [n], y [n], w [n]).

    The model of `analysis.irreducible._profile_nll` (a log-log line per set, log-normal
    noise of its own sd per set), each point counted w times; evaluated on a grid of E in
    [0, min y) dense near min y, then on a finer grid between the best point's neighbours.
    """
    ymin = min(float(y.min()) for _, y, _ in sets)
    top = ymin * (1 - 1e-6)
    prepared = []
    for x, y, w in sets:
        lx = np.log(x)
        W = w.sum()
        mx = (w * lx).sum() / W
        dx = lx - mx
        prepared.append((dx, y, w, W, (w * dx * dx).sum()))

    def nll(es: np.ndarray) -> np.ndarray:
        total = np.zeros(len(es))
        for dx, y, w, W, sxx in prepared:
            lr = np.log(y[None, :] - es[:, None])  # [G, n]
            my = lr @ w / W
            a = (lr * (w * dx)).sum(axis=1) / sxx
            resid = lr - my[:, None] - a[:, None] * dx[None, :]
            sse = np.maximum((resid * resid) @ w, 1e-300)
            total += 0.5 * W * np.log(sse / W) + lr @ w
        return total

    es = np.unique(
        np.concatenate([np.linspace(0.0, top, grid), top - top * np.logspace(-6, 0, grid)])
    )
    es = es[(es >= 0) & (es <= top)]
    costs = nll(es)
    i = int(np.nanargmin(costs))
    fine = np.linspace(es[max(i - 1, 0)], es[min(i + 1, len(es) - 1)], refine)
    fc = nll(fine)
    j = int(np.nanargmin(fc))
    return float(fine[j]) if fc[j] <= costs[i] else float(es[i])


def shared_bootstrap(
    sets: Sequence[PointSet],
    bootstrap: int,
    seed: int = 0,
    method: Method = "ols",
    starts: Sequence[Law] | None = None,
    locate: Sequence[int] | None = None,
) -> tuple[list[np.ndarray], int]:
    """Bootstrap draws of every law in `sets` with E refitted in each draw.

    Runs (the union of the sets' runs) are drawn with replacement, one draw for all sets.
    Returns (per set an array [B_valid, 3] of (alpha, beta, E), the same draws for every
    set; B_valid), a draw being valid when every set has 3 distinct x and a law fits.
    starts: per set the full data's law (the robust fit's starting point).
    locate: the indices of the sets whose points locate E (None: all of them), as the
    point estimate does (`analysis.fitting.e_sources`); every set's law is fitted at that E.
    """
    if not sets:
        raise ResultsError("shared_bootstrap needs at least one law")
    chosen = list(range(len(sets))) if locate is None else list(locate)
    if not chosen or not all(0 <= i < len(sets) for i in chosen):
        raise ResultsError(f"shared_bootstrap: locate {locate} names no set of {len(sets)}")
    runs = sorted(set().union(*(s.runs() for s in sets)))
    rng = np.random.default_rng(seed)
    n = len(runs)
    out: list[list[tuple[float, float, float]]] = [[] for _ in sets]
    for _ in range(bootstrap):
        drawn = np.bincount(rng.integers(0, n, n), minlength=n)
        counts = {runs[k]: int(drawn[k]) for k in np.flatnonzero(drawn)}
        data = [s.draw(counts) for s in sets]
        if any(d is None for d in data):
            continue
        E = profile_E([data[i] for i in chosen])  # type: ignore[misc]
        laws = []
        for k, (x, y, w) in enumerate(data):  # type: ignore[misc]
            try:
                laws.append(
                    fit_law(x, y, E, method, w, start=None if starts is None else starts[k])
                )
            except ResultsError:
                break
        if len(laws) < len(sets):
            continue
        for k, law in enumerate(laws):
            out[k].append((law.alpha, law.beta, law.E))
    valid = len(out[0])
    return [np.array(o, float).reshape(-1, 3) for o in out], valid
