"""How a run reads an image's stored views over epochs, and which images a subset holds.

`permuted_views`: without replacement, every view once before any repeats (each of K views
read floor(E/K) or ceil(E/K) times in E epochs); `draw_views`: the independent draw, whose
repeat counts are binomial (checked against the binomial tail, computed here by hand).
`subset_order` / `train_subset`: seeded, nested, class-balanced subsets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from scaling.data.token_store import (
    TokenStoreError,
    draw_views,
    permuted_views,
    subset_order,
    train_subset,
)


def _counts(draw, seed: int, epochs: int, images: np.ndarray, k: int) -> np.ndarray:
    """[images, k]: how often each image read each view over `epochs` epochs."""
    counts = np.zeros((images.size, k), dtype=np.int64)
    for e in range(epochs):
        np.add.at(counts, (np.arange(images.size), draw(seed, e, images, k)), 1)
    return counts


@pytest.mark.parametrize("k, epochs", [(2, 7), (3, 3), (5, 23), (88, 350), (88, 40)])
def test_every_view_once_before_any_repeats(k, epochs):
    images = np.arange(300) * 7919  # any image ids
    counts = _counts(permuted_views, 11, epochs, images, k)
    assert counts.min() == epochs // k and counts.max() == -(-epochs // k)
    assert (counts.sum(axis=1) == epochs).all()
    # within each cycle of k epochs, an image reads k distinct views
    for cycle in range(epochs // k):
        seq = np.stack([permuted_views(11, cycle * k + p, images, k) for p in range(k)], axis=1)
        assert (np.sort(seq, axis=1) == np.arange(k)).all()


def test_permuted_views_is_a_pure_uniform_function_of_seed_epoch_image():
    images = np.arange(20000)
    a = permuted_views(3, 5, images, 4)
    assert a.dtype == np.int64 and a.min() == 0 and a.max() == 3
    # the same (seed, epoch, image) gives the same view whatever batch or order it comes in
    perm = np.random.default_rng(0).permutation(images)
    assert np.array_equal(permuted_views(3, 5, perm, 4), a[perm])
    assert np.array_equal(permuted_views(3, 5, images[7:9], 4), a[7:9])
    # each position of the permutation is uniform over the views (4.5 sigma at n = 20000)
    assert np.abs(np.bincount(a, minlength=4) / a.size - 0.25).max() < 0.015
    # another seed gives other permutations; the next cycle another permutation
    assert (permuted_views(4, 5, images, 4) != a).mean() == pytest.approx(0.75, abs=0.02)
    assert (permuted_views(3, 9, images, 4) != a).mean() == pytest.approx(0.75, abs=0.02)
    # a permutation of 3 views is one of 3! = 6 orders, each with probability 1/6
    seq = np.stack([permuted_views(1, e, images, 3) for e in range(3)], axis=1)
    codes = seq[:, 0] * 9 + seq[:, 1] * 3 + seq[:, 2]
    freq = np.unique(codes, return_counts=True)[1] / images.size
    assert freq.size == 6 and np.abs(freq - 1 / 6).max() < 0.012
    assert (permuted_views(0, 3, images, 1) == 0).all()


def _binomial_tail(n: int, p: float, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed by hand."""
    return 1.0 - sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k))


def test_depth_grid_passes_old_draw_binomial_new_draw_at_most_four():
    """depth_grid: 88 stored views, 350 epochs. The independent draw reads a view X ~
    Bin(350, 1/88) times (36.7% of views 5+ times); the permutation reads each 3 or 4 times."""
    k, epochs, images = 88, 350, np.arange(400)
    old = _counts(draw_views, 0, epochs, images, k).ravel()
    tail = _binomial_tail(epochs, 1 / k, 5)
    assert tail == pytest.approx(0.3667, abs=1e-4)
    se = math.sqrt(tail * (1 - tail) / old.size)  # 35,200 views (nearly independent)
    assert abs((old >= 5).mean() - tail) < 5 * se
    assert old.max() >= 10
    new = _counts(permuted_views, 0, epochs, images, k).ravel()
    assert set(np.unique(new).tolist()) == {3, 4}
    assert (new == 4).mean() == pytest.approx((epochs % k) / k, abs=0.02)


def test_subset_is_seeded_nested_and_class_balanced():
    labels = np.repeat(np.arange(5), [40, 40, 40, 40, 7])  # class 4 has only 7 images
    order = subset_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(labels.size))  # a permutation
    assert np.array_equal(order, subset_order(labels, seed=3))
    assert not np.array_equal(order, subset_order(labels, seed=4))
    small, large = train_subset(labels, 20, 3), train_subset(labels, 60, 3)
    assert set(small.tolist()) <= set(large.tolist())  # nested
    assert np.bincount(labels[small], minlength=5).tolist() == [4] * 5
    # 60 images: class 4 gives its 7, the other four share the rest as evenly as possible
    per_class = np.bincount(labels[large], minlength=5)
    assert per_class[4] == 7 and per_class[:4].max() - per_class[:4].min() <= 1
    assert per_class.sum() == 60
    # within a class, images come in a seeded order, not the file order
    assert not np.array_equal(small[labels[small] == 0], np.arange(4))
    assert len(train_subset(labels, labels.size, 3)) == labels.size
    with pytest.raises(TokenStoreError, match="data.subset: 168 images asked of a split of 167"):
        train_subset(labels, 168, 3)
