"""Sample-quality metrics against hand-computed values."""

import math

import numpy as np
import pytest

from analysis.sample_metrics import (
    class_accuracy,
    frechet_distance,
    gaussian_stats,
    inception_score,
    precision_recall,
)


def test_frechet_distance_closed_forms():
    # 1-D: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 4 + 9 - 2 * 6)
    # diagonal: sum over dimensions of the 1-D formula
    fd = frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 16.0]))
    assert fd == pytest.approx((1 + 1 + 4 - 4) + (4 + 4 + 16 - 16))
    # rotation-invariant: same covariances in a rotated frame, means equal -> tr(S1+S2-2(S1S2)^1/2)
    c, s = math.cos(0.3), math.sin(0.3)
    R = np.array([[c, -s], [s, c]])
    assert frechet_distance(
        [0, 0], R @ np.diag([1.0, 4.0]) @ R.T, [0, 0], R @ np.diag([4.0, 16.0]) @ R.T
    ) == pytest.approx(1 + 4)
    # identical Gaussians
    assert frechet_distance([1, 2], np.eye(2), [1, 2], np.eye(2)) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


def test_gaussian_stats_by_hand():
    mu, cov = gaussian_stats(np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]]))
    assert mu.tolist() == pytest.approx([2.0, 2.0])
    # var x = (4 + 0 + 4)/2 = 4; var y = (1 + 1 + 4)/2 = 3; cov = (-2*-1 + 0 + 2*2)/2 = 3
    assert cov.tolist() == [pytest.approx([4.0, 3.0]), pytest.approx([3.0, 3.0])]


def test_inception_score_extremes():
    # every sample certain of its own class, classes balanced within each split: IS = C
    C = 5
    logits = np.full((50, C), -1e4)
    logits[np.arange(50), np.arange(50) % C] = 0
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(C) and std == pytest.approx(0, abs=1e-9)
    # every sample the same distribution: KL = 0, IS = 1
    mean, _ = inception_score(np.tile([[1.0, 2.0, 3.0]], (40, 1)), splits=4)
    assert mean == pytest.approx(1.0)
    # two classes, p(y|x) = (3/4, 1/4) or (1/4, 3/4) balanced: IS = exp(KL((3/4,1/4) || (1/2,1/2)))
    lg = np.log(np.array([[0.75, 0.25], [0.25, 0.75]] * 10))
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert inception_score(lg, splits=1)[0] == pytest.approx(math.exp(kl))


def test_precision_recall_by_hand():
    # real: 0..9 on a line; each real ball reaches its 3rd neighbour: radius 3 (ends) ... 2 (inner)
    real = np.arange(10.0)[:, None]
    fake_inside = np.array([[0.5], [4.2], [9.0], [7.7]])
    p, r = precision_recall(real, fake_inside, k=3)
    assert p == 1.0
    # fake balls: sorted 0.5, 4.2, 7.7, 9.0 -> 3rd-neighbour radii 8.5, 4.8, 7.2, 8.5:
    # the real points within one of them: all of 0..9 (ball at 0.5 reaches 9.0)
    assert r == 1.0
    far = np.array([[100.0], [101.0], [102.0], [103.0], [5.0]])
    p, r = precision_recall(real, far, k=3)
    assert p == pytest.approx(1 / 5)  # only 5.0 lies in a real ball
    # fake radii: 100..103 reach 3 units; 5.0's 3rd neighbour is 102 -> radius 97: covers all real
    assert r == 1.0
    with pytest.raises(ValueError, match="same D"):
        precision_recall(real, np.zeros((5, 2)))


def test_class_accuracy():
    assert class_accuracy(np.array([[1, 0], [0, 1], [1, 0]]), np.array([0, 1, 1])) == pytest.approx(
        2 / 3
    )
