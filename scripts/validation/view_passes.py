"""How often each stored token sequence is read: the two view draws of `data.view_draw`.

    python scripts/validation/view_passes.py [--views 88] [--epochs 350] [--images 20000]

For a store of K views per image and a run of E epochs, counts how many times each (image,
view) row is read under the independent draw (`token_store.draw_views`, a fresh uniform
draw per epoch) and under the permutation (`token_store.permuted_views`, every view once
before any repeats), and prints the share of rows read 0, 5 or more times, the largest count,
and the binomial tail P(Bin(E, 1/K) >= 5) the independent draw should match. Defaults are
sweeps/depth_grid.yaml's: 88 views, 350 epochs.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from scaling.data.token_store import draw_views, permuted_views


def counts(draw, views: int, epochs: int, images: int, seed: int) -> np.ndarray:
    """int [images * views]: how often each row is read over `epochs` epochs."""
    ids = np.arange(images)
    out = np.zeros((images, views), dtype=np.int64)
    for epoch in range(epochs):
        np.add.at(out, (ids, draw(seed, epoch, ids, views)), 1)
    return out.ravel()


def main() -> None:
    """Print the repeat counts of both draws."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--views", type=int, default=88)
    p.add_argument("--epochs", type=int, default=350)
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    K, E = a.views, a.epochs
    tail = 1 - sum(math.comb(E, i) * K**-i * (1 - 1 / K) ** (E - i) for i in range(5))
    print(
        f"{a.images:,} images x {K} views, {E} epochs (seed {a.seed}); "
        f"floor/ceil(E/K) = {E // K}/{-(-E // K)}"
    )
    print("| draw | rows read 5+ times | never read | most reads of one row | reads per row |")
    print("|---|---|---|---|---|")
    for name, draw in (("independent", draw_views), ("permutation", permuted_views)):
        c = counts(draw, K, E, a.images, a.seed)
        values = ", ".join(
            f"{v}: {n / c.size:.1%}"
            for v, n in zip(*np.unique(c, return_counts=True))
            if n / c.size >= 0.001
        )
        print(f"| {name} | {(c >= 5).mean():.2%} | {(c == 0).mean():.2%} | {c.max()} | {values} |")
    print(f"binomial P(Bin({E}, 1/{K}) >= 5) = {tail:.2%}, P(0) = {(1 - 1 / K) ** E:.2%}")


if __name__ == "__main__":
    main()
