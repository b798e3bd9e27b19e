"""Tokenizer variants in one sweep (`tokenizers:`): the axis they make, their own folders,
stages and run ids, their estimates from the recipe, and located errors (torch-free loads)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scaling.core.config_io import ConfigError
from scaling.study.sweep.sweep import load_sweep

BASE = """\
name: t
output: {out}
prepare:
  synthetic: {{num_classes: 4, train_per_class: 10, val_per_class: 5, resolution: 16}}
  vqvae: {{resolution: 16, vocab_size: 64, ch_mult: [1, 2, 2], patch_nums: [1, 2, 4]}}
base:
  optim:
    batch_size: 8
  length: {{steps: 10}}
  eval: {{points: 1}}
grid:
  depth: [2, 4]
"""
VARIANTS = """\
tokenizers:
  v128: {vocab_size: 128}
  v256: {vocab_size: 256}
  s124: {patch_nums: [1, 2, 3, 4], ch_mult: [1, 2, 2]}
"""


def write(tmp_path: Path, extra: str = "", base: str = BASE) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(base.format(out=tmp_path / "runs") + textwrap.dedent(extra))
    return path


def error(tmp_path: Path, extra: str, base: str = BASE) -> str:
    with pytest.raises(ConfigError) as e:
        load_sweep(write(tmp_path, extra, base))
    return str(e.value)


def test_each_variant_gets_its_folder_stages_and_run_ids(tmp_path):
    s = load_sweep(write(tmp_path, VARIANTS))
    out = tmp_path / "runs" / "_data"
    # the axis follows the depth: d<depth>-<variant>, variants in file order
    assert [r.run_id for r in s.runs] == [
        "d2-v128",
        "d2-v256",
        "d2-s124",
        "d4-v128",
        "d4-v256",
        "d4-s124",
    ]
    stores = {r.run_id: r.config.data.store for r in s.runs}
    assert stores["d2-v128"] == stores["d4-v128"] == out / "v128" / "tokens"  # shared
    assert stores["d2-s124"] == out / "s124" / "tokens"
    assert s.vqvae_path("v256") == out / "v256" / "vqvae" / "vqvae.pt"
    assert s.stages() == [
        "synthetic",
        "v128.vqvae",
        "v128.tokenize",
        "v256.vqvae",
        "v256.tokenize",
        "s124.vqvae",
        "s124.tokenize",
        "v128.quality",  # each VQVAE measured as a tokenizer
        "v256.quality",
        "s124.quality",
    ]
    # each variant is prepare.vqvae with its overrides; the estimates follow it
    assert s.tokenizer("s124").options == {
        "resolution": 16,
        "vocab_size": 64,
        "ch_mult": [1, 2, 2],
        "patch_nums": [1, 2, 3, 4],
    }
    metas = {t.name: s.expected_meta(t.name) for t in s.tokenizers()}
    assert [(m["vocab_size"], m["patch_nums"]) for m in metas.values()] == [
        (128, [1, 2, 4]),
        (256, [1, 2, 4]),
        (64, [1, 2, 3, 4]),
    ]
    assert metas["v128"]["splits"] == {  # the synthetic set: 4 classes x 10 train, x 5 val
        "train": {"count": 40, "images": 40, "views": 1, "flip": False},
        "val": {"count": 20},
    }
    assert s.warnings == ()


def test_without_tokenizers_nothing_changes(tmp_path):
    s = load_sweep(write(tmp_path))
    assert [r.run_id for r in s.runs] == ["d2", "d4"]
    assert s.runs[0].config.data.store == tmp_path / "runs" / "_data" / "tokens"
    assert s.vqvae_path() == tmp_path / "runs" / "_data" / "vqvae" / "vqvae.pt"
    assert s.stages() == ["synthetic", "vqvae", "tokenize", "quality"]
    assert s.quality_path() == tmp_path / "runs" / "_data" / "vqvae" / "tokenizer_quality.json"
    assert [t.name for t in s.tokenizers()] == [None]


def test_grid_tokenizer_picks_order_and_subset_and_labels_apply(tmp_path):
    extra = VARIANTS + "labels: {tokenizer: tok}\n"
    path = write(tmp_path, extra)
    path.write_text(
        path.read_text().replace("depth: [2, 4]", "depth: [2]\n  tokenizer: [s124, v128]")
    )
    s = load_sweep(path)
    assert [r.run_id for r in s.runs] == ["d2-toks124", "d2-tokv128"]
    assert [t.name for t in s.tokenizers()] == ["s124", "v128"]
    assert s.warnings == (
        "tokenizers v256 are declared but not in grid.tokenizer: not prepared, no runs",
    )


def test_identical_variants_warn(tmp_path):
    """v64 repeats prepare.vqvae (vocabulary 64): the same VQVAE twice, allowed with a warning."""
    s = load_sweep(write(tmp_path, "tokenizers:\n  base: {}\n  v64: {vocab_size: 64}\n"))
    assert len(s.runs) == 4
    assert s.warnings == (
        "tokenizers base and v64 are identical (the same VQVAE options): each is prepared, "
        "so their runs repeat each other",
    )


def test_an_existing_checkpoint_variant_trains_nothing(tmp_path):
    s = load_sweep(write(tmp_path, "tokenizers:\n  mine: {}\n  official: {checkpoint: /x/v.pth}\n"))
    assert s.stages() == [
        "synthetic",
        "mine.vqvae",
        "mine.tokenize",
        "official.tokenize",
        "mine.quality",
        "official.quality",  # measured too, into the sweep's folder, not the checkpoint's
    ]
    assert s.quality_path("official") == tmp_path / "runs" / "_data" / "official" / "vqvae" / (
        "tokenizer_quality.json"
    )
    assert s.vqvae_path("official") == Path("/x/v.pth")
    # not readable here: the official VQVAE's numbers, and the table says so
    assert s.expected_meta("official")["vocab_size"] == 4096
    assert "assumed" in s.expected_source("official")


@pytest.mark.parametrize(
    "extra, line, message",
    [
        (
            "tokenizers:\n  v128: {vocab_sise: 128}\n",
            14,
            "tokenizers.v128.vocab_sise: unknown key (did you mean 'vocab_size'?)",
        ),
        (
            "tokenizers:\n  v128: {vocab_size: 128}\n  v128: {vocab_size: 256}\n",
            15,
            "tokenizers.v128: duplicate key (first given on line 14)",
        ),
        (
            "tokenizers:\n  v1: {vocab_size: 1}\n",
            14,
            "tokenizers.v1.vocab_size: must be in [2, 65536]",
        ),
        ("tokenizers:\n  tokens: {}\n", 14, "tokenizers.tokens: 'tokens' is a shared folder"),
        ("tokenizers:\n  a/b: {}\n", 14, "tokenizers.a/b: tokenizer name 'a/b' must be a plain"),
        (
            "tokenizers:\n  o: {checkpoint: /v.pth, vocab_size: 8}\n",
            14,
            "tokenizers.o.vocab_size: a variant with checkpoint: uses that VQVAE as it is",
        ),
        ("tokenizers:\n  o: {out: /x}\n", 14, "tokenizers.o.out: set by the sweep"),
        ("tokenizers:\n  off: {}\n", 13, "tokenizers: YAML reads a name such as off"),
        ("tokenizers:\n  v: 128\n", 14, "tokenizers.v: expected a mapping, got 128"),
    ],
)
def test_bad_variants_are_located(tmp_path, extra, line, message):
    text = error(tmp_path, extra)
    assert f"s.yaml:{line}: " in text and message in text, text


def test_bad_axis_and_conflicts_are_located(tmp_path):
    path = write(tmp_path, VARIANTS)
    path.write_text(
        path.read_text().replace("depth: [2, 4]", "depth: [2]\n  tokenizer: [v128, v512]")
    )
    with pytest.raises(ConfigError, match=r"s.yaml:13: grid.tokenizer\[1\]: 'v512' is not a"):
        load_sweep(path)
    path.write_text(
        BASE.format(out=tmp_path / "runs").replace("depth: [2, 4]", "depth: [2]\n  tokenizer: [a]")
    )
    with pytest.raises(ConfigError, match=r"s.yaml:13: grid.tokenizer: .*none are declared"):
        load_sweep(path)
    # a run's store is its variant's: a data.store of base would silently replace them all
    text = error(tmp_path, VARIANTS, BASE.replace("  length:", "  data: {{store: /s}}\n  length:"))
    assert "s.yaml:9: base.data.store: the tokenizer axis gives each run" in text, text
    given = BASE.replace(
        "prepare:\n  synthetic", "data: {{images: /i, vqvae: /v.pt}}\nprepare:\n  #"
    )
    given = given.replace("  vqvae: {{resolution", "  #")
    text = error(tmp_path, VARIANTS, given)
    assert "s.yaml:3: data.vqvae: with tokenizers:, give an existing VQVAE as a variant" in text, (
        text
    )


def test_a_missing_checkpoint_stops_the_launch_not_the_dry_run(tmp_path):
    """Loading (and a dry run) may happen where the checkpoint is not; a launch may not."""
    from scaling.study.run.checks import check_data

    s = load_sweep(write(tmp_path, "tokenizers:\n  mine: {}\n  official: {checkpoint: /x/v.pth}\n"))
    with pytest.raises(ConfigError, match=r"s.yaml:15: tokenizers.official.checkpoint: no VQVAE"):
        check_data(s)
