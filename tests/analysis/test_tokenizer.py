"""Code usage, code entropy and bits per image against values worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.tokenizer import (
    add_bits_per_image,
    bits_per_image,
    code_entropy,
    code_usage,
    scale_codes,
)


def test_usage_and_entropy_of_a_hand_made_code_array():
    # 8 codes of a vocabulary of 16: code 3 four times, codes 0 and 7 twice each
    codes = np.array([[3, 3, 0, 7], [3, 3, 7, 0]])
    assert code_usage(codes, 16) == 3 / 16
    # p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2 nats = 1.5 bits
    assert code_entropy(codes, 16) == pytest.approx(1.5 * math.log(2))
    # one code only: no uncertainty; all of V equally often: ln V
    assert code_entropy([5, 5, 5], 8) == 0.0
    assert code_entropy(np.arange(8).repeat(3), 8) == pytest.approx(math.log(8))


def test_scale_codes_by_hand():
    # two images, scales 1x1 and 2x2, V = 4
    s0 = np.array([[2], [2]])  # one code: usage 1/4, H = 0
    s1 = np.array([[0, 1, 2, 3], [0, 0, 1, 1]])  # counts 3, 3, 1, 1 of 8
    out = scale_codes([s0, s1], 4, patch_nums=[1, 2])
    assert [s.pn for s in out] == [1, 2] and [s.count for s in out] == [2, 8]
    assert [s.used for s in out] == [1, 4] and [s.usage for s in out] == [0.25, 1.0]
    h = -(2 * 3 / 8 * math.log(3 / 8) + 2 * 1 / 8 * math.log(1 / 8))
    assert out[0].entropy_nats == 0.0 and out[1].entropy_nats == pytest.approx(h)
    assert out[1].entropy_bits == pytest.approx(h / math.log(2))
    assert out[1].bias_nats == pytest.approx(3 / 16)  # (used - 1) / (2 n)


def test_bad_codes_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        code_usage([0, 4], 4)
    with pytest.raises(ValueError, match="integers"):
        code_entropy([0.5], 4)
    with pytest.raises(ValueError, match="empty"):
        code_entropy([], 4)
    with pytest.raises(ValueError, match="patch_nums says 2x2"):
        scale_codes([np.zeros((1, 1), int), np.zeros((1, 9), int)], 4, patch_nums=[1, 2])


def test_bits_per_image_by_hand():
    # scales 1, 2, 3: 1 + 4 + 9 tokens at 2, 1 and 0.5 nats per token -> (2 + 4 + 4.5) / ln 2
    assert bits_per_image([2.0, 1.0, 0.5], [1, 4, 9]) == pytest.approx(10.5 / math.log(2))
    with pytest.raises(ValueError, match="2 per-scale CEs for 3 scales"):
        bits_per_image([1.0, 2.0], [1, 4, 9])


def test_the_table_column_is_the_per_scale_sum():
    # a run with scales 1, 2 (L = 5): ce_avg is the token-weighted mean of the per-scale CEs
    ce = [3.0, 1.5]
    ce_avg = (3.0 * 1 + 1.5 * 4) / 5
    table = pd.DataFrame(
        {"run": ["a", "b"], "ce_avg": [ce_avg, np.nan], "tokens": [50, 50], "images": [10, 10]}
    )
    out = add_bits_per_image(table)
    assert out["bits_per_image"].iloc[0] == pytest.approx(bits_per_image(ce, [1, 4]))
    assert np.isnan(out["bits_per_image"].iloc[1])
    assert "bits_per_image" not in table.columns  # a copy
    # without tokens or images nothing is added
    assert "bits_per_image" not in add_bits_per_image(table.drop(columns="images")).columns
