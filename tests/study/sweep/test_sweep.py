"""Sweep files: validation with located errors, grid expansion, stable ids, rules, overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scaling.core.config_io import ConfigError
from scaling.study.sweep.expand import format_value
from scaling.study.sweep.sweep import load_sweep
from scaling.training.config import RunConfig
from tests.factories import line_of, merged, sweep_text
from tests.paths import ROOT
from var_core import params as var_params

# the runs of these tests (over the tests' one sweep template): d2 and d4 on a store that
# need not exist, batch 64 for 100 steps; no eval or cluster section (tests append their own)
RUNS = {"optim": {"batch_size": 64, "base_lr": 1.0e-4}, "length": {"steps": 100}}


def text(tmp_path: Path, base: dict | None = None, **sections) -> str:
    """The sweep file of these tests as YAML (one line per mapping of plain values), with
    `base` merged into RUNS and `sections` laid over the template (tests.factories)."""
    sections = {"name": "t", "eval": None, "cluster": None, **sections}
    return sweep_text(
        tmp_path / "runs",
        flow=True,
        store="/data/store",
        depths=(2, 4),
        base=merged(RUNS, base or {}),
        **sections,
    )


def sweep(tmp_path: Path, extra: str = ""):
    path = tmp_path / "s.yaml"
    path.write_text(text(tmp_path) + textwrap.dedent(extra))
    return load_sweep(path)


def error(text_extra: str, tmp_path: Path, base: str | None = None) -> str:
    path = tmp_path / "s.yaml"
    path.write_text((base if base is not None else text(tmp_path)) + textwrap.dedent(text_extra))
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    return str(e.value)


@pytest.mark.parametrize(
    "extra, line, message",
    [
        # unknown keys, at every level, with the line they are on (of the appended text)
        ("clustr:\n  nodes: 2\n", 1, "clustr: unknown key (did you mean 'cluster'?)"),
        (
            "cluster:\n  partion: gpu\n",
            2,
            "cluster.partion: unknown key (did you mean 'partition'?)",
        ),
        (
            "rules:\n  - max_depth: 2\n    set: {optim.batch_sise: 32}\n",
            3,
            "rules[0].set.optim.batch_sise: unknown key (did you mean 'batch_size'?)",
        ),
        # wrong types
        ("cluster:\n  nodes: two\n", 2, "cluster.nodes: expected an integer, got 'two'"),
        ("fit:\n  holdout: [1]\n", 2, "fit.holdout: expected an integer, got [1]"),
        # impossible values
        ("cluster:\n  gpus_per_node: 8\n  nodes: 0\n", 3, "cluster.nodes: must be > 0, got 0"),
        ("cluster:\n  nodes: 2\n", 2, "cluster.nodes: 2 nodes without GPUs"),
        (
            "cluster:\n  backend: kubernetes\n",
            2,
            "cluster.backend: must be one of 'auto', 'slurm'",
        ),
        (
            "overrides:\n  4:\n    optim: {batch_size: -8}\n",
            3,
            "overrides.4.optim.batch_size: must be > 0, got -8 (run d4)",
        ),
        (
            "overrides:\n  12:\n    optim: {batch_size: 8}\n",
            2,
            "overrides.12: depth 12 is not in grid.depth [2, 4]",
        ),
        ("rules:\n  - set: {cluster.nodes: 2}\n", 2, "rules[0].set: a rule needs depths"),
        (
            "rules:\n  - min_depth: 4\n    set: {cluster.gpus: 2}\n",
            3,
            "rules[0].set.cluster.gpus: rules and overrides may set only cluster.",
        ),
        (
            "fit:\n  metrics: [ce_last, kid]\n",
            2,
            "fit.metrics: must be a non-empty list of ce_avg",
        ),
        ("fit:\n  holdouts: 2\n", 2, "fit.holdouts: unknown key (did you mean 'holdout'?)"),
        ("fit:\n  best_over: tblr\n", 2, "fit.best_over: 'tblr' is an old name"),
    ],
)
def test_errors_name_file_line_and_key_path(tmp_path, extra, line, message):
    """`line` counts within the appended text; the file's line is after the template's."""
    at = len(text(tmp_path).splitlines()) + line
    found = error(extra, tmp_path)
    assert found.startswith(f"{tmp_path / 's.yaml'}:{at}: {message}"), found


def test_error_in_base_is_located_in_base(tmp_path):
    base = text(tmp_path, base={"optim": {"batch_size": 0}})
    found = error("", tmp_path, base)
    assert found.startswith(
        f"{tmp_path / 's.yaml'}:{line_of(base, 'batch_size: 0')}: base.optim.batch_size: "
        "must be > 0, got 0 (run d2)"
    ), found


def test_error_from_grid_value_names_the_axis_entry(tmp_path):
    base = text(tmp_path, grid={"depth": [2, 4], "optim.base_lr": [1.0e-4, -3.0e-4]})
    found = error("", tmp_path, base)
    at = line_of(base, "optim.base_lr: [")
    assert found.startswith(f"{tmp_path / 's.yaml'}:{at}: grid.optim.base_lr[1]: must be > 0")


def test_wrong_type_in_grid_depth(tmp_path):
    base = text(tmp_path, grid={"depth": [2, "six"]})
    found = error("", tmp_path, base)
    assert found.startswith(
        f"{tmp_path / 's.yaml'}:{line_of(base, 'depth: [')}: grid.depth[1]: a depth must be "
        "a positive integer, got 'six'"
    ), found


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"name": "../evil"}, "name: sweep name '../evil' must be a plain name"),
        (
            {"grid": {"data.train_split": ["a", "../../etc"]}},
            "grid.data.train_split[1]: value '../../etc' would make the run-id part "
            "'trainsplit../../etc'",
        ),
        (
            {"grid": {"data.train_split": ["/abs", "a"]}},
            "grid.data.train_split[0]: value '/abs' would make the run-id part 'trainsplit/abs'",
        ),
    ],
)
def test_paths_cannot_escape_the_output_folder(tmp_path, sections, message):
    base = text(tmp_path, **sections)
    found = error("", tmp_path, base)
    at = line_of(base, "name:" if "name" in sections else "train_split")
    assert found.startswith(f"{tmp_path / 's.yaml'}:{at}: {message}"), found


def test_yaml_is_read_safely(tmp_path):
    found = error("description: !!python/object/apply:os.system ['echo pwned']\n", tmp_path)
    assert "invalid YAML" in found and f":{len(text(tmp_path).splitlines()) + 1}:" in found


def test_grid_crosses_axes_with_stable_ids(tmp_path):
    s = sweep(tmp_path)
    assert [r.run_id for r in s.runs] == ["d2", "d4"]
    path = tmp_path / "s.yaml"
    path.write_text(
        text(tmp_path, grid={"depth": [2, 4], "optim.base_lr": [3.0e-4, 1.0e-3], "seed": [0, 1]})
    )
    runs = load_sweep(path).runs
    ids = [r.run_id for r in runs]
    assert ids == [
        "d2-lr3e-4-s0",
        "d2-lr3e-4-s1",
        "d2-lr0.001-s0",
        "d2-lr0.001-s1",
        "d4-lr3e-4-s0",
        "d4-lr3e-4-s1",
        "d4-lr0.001-s0",
        "d4-lr0.001-s1",
    ]
    by_id = {r.run_id: r for r in runs}
    r = by_id["d4-lr0.001-s1"]
    assert isinstance(r.config, RunConfig)
    assert (r.config.model.depth, r.config.optim.base_lr, r.config.seed, r.config.run_id) == (
        4,
        1e-3,
        1,
        r.run_id,
    )
    assert r.run_dir == tmp_path / "runs" / "d4-lr0.001-s1"
    # the id depends on the values only: reordering the values changes the order, not the ids
    path.write_text(
        text(tmp_path, grid={"depth": [2, 4], "optim.base_lr": [1.0e-3, 3.0e-4], "seed": [1, 0]})
    )
    again = {r.run_id: r.config for r in load_sweep(path).runs}
    assert again == {k: v.config for k, v in by_id.items()}


def test_format_value():
    assert [
        format_value(v) for v in (3e-4, 1e-4, 8e-5, 0.5, 0.001, 200, 1.0, 2.5e6, "x", True)
    ] == ["3e-4", "1e-4", "8e-5", "0.5", "0.001", "200", "1", "2.5e6", "x", "true"]


def test_rules_overrides_and_grid_precedence(tmp_path):
    s = sweep(
        tmp_path,
        """\
        rules:
          - max_depth: 2
            set: {optim.batch_size: 32, cluster.time_min: 10}
          - min_depth: 3
            set: {optim: {batch_size: 128}, cluster.gpus_per_node: 4, cluster.nodes: 2}
          - depths: [4]
            set: {model.init_adaln_gamma: 1.0e-4}
        overrides:
          d4:
            optim: {batch_size: 256}
            cluster: {time_min: 99}
        """,
    )
    d2, d4 = s.runs
    assert (d2.config.optim.batch_size, d2.resources.time_min, d2.resources.nodes) == (32, 10, 1)
    assert d2.config.model.init_adaln_gamma == 1e-3  # the base's: the rule names d4 only
    assert (d4.config.optim.batch_size, d4.resources.time_min) == (256, 99)  # override beats rule
    assert (d4.resources.nodes, d4.resources.gpus_per_node, d4.resources.processes_per_node) == (
        2,
        4,
        4,
    )
    assert d4.config.model.init_adaln_gamma == 1e-4
    assert d2.resources.shape() != d4.resources.shape()
    # a grid axis beats an override
    path = tmp_path / "s.yaml"
    path.write_text(
        path.read_text().replace("depth: [2, 4]", "depth: [2, 4]\n  optim.batch_size: [512]")
    )
    assert [r.config.optim.batch_size for r in load_sweep(path).runs] == [512, 512]


def test_data_and_prepare_stages(tmp_path):
    s = sweep(tmp_path)
    assert s.stages() == [] and str(s.runs[0].config.data.store) == "/data/store"
    base = text(tmp_path, data={"tokens": None})
    path = tmp_path / "p.yaml"
    path.write_text(
        base + "prepare:\n  synthetic: {num_classes: 4}\n"
        "  vqvae: {vocab_size: 64, patch_nums: [1, 2, 4]}\n  tokenize: {shards: 3}\n"
    )
    s = load_sweep(path)
    assert s.stages() == ["synthetic", "vqvae", "tokenize", "quality"]
    assert s.vqvae_path() == tmp_path / "runs" / "_data" / "vqvae" / "vqvae.pt"
    # estimates before the store exists: what prepare will make (100 train, 20 val images per class)
    assert s.expected_meta() == {
        "num_classes": 4,
        "vocab_size": 64,
        "patch_nums": [1, 2, 4],
        "vqvae_config": {"z_channels": 32},  # train_vqvae's default
        "splits": {
            "train": {"count": 400, "images": 400, "views": 1, "flip": False},
            "val": {"count": 80},
        },
    }
    assert s.runs[0].config.data.store == tmp_path / "runs" / "_data" / "tokens"
    assert s.images_dir() == tmp_path / "runs" / "_data" / "images"
    path.write_text(text(tmp_path, data={"tokens": None, "images": "/img", "vqvae": "/v.pt"}))
    assert load_sweep(path).stages() == ["tokenize"]
    path.write_text(text(tmp_path, data={"tokens": None, "images": "/img"}))
    at = line_of(path.read_text(), "data:")
    with pytest.raises(ConfigError, match=rf"p.yaml:{at}: data: images need a VQVAE"):
        load_sweep(path)
    path.write_text(base)
    with pytest.raises(ConfigError, match=rf"p.yaml:{line_of(base, 'data:')}: data: no data"):
        load_sweep(path)


def test_expected_views_are_the_runs_unless_expect_overrides(tmp_path):
    """A pre-made store's views are written once, in base.data: the launch table's stand-in
    meta takes them from there; data.expect overrides field by field."""
    path = tmp_path / "v.yaml"
    path.write_text(text(tmp_path, base={"data": {"views": 5, "flip": True}}))
    train = load_sweep(path).expected_meta()["splits"]["train"]
    # ImageNet-1k's 1,281,167 train images (the assumption without expect), 5 views, mirrored
    assert train == {"count": 1_281_167 * 5 * 2, "images": 1_281_167, "views": 5, "flip": True}
    path.write_text(
        text(tmp_path, base={"data": {"views": 5, "flip": True}}, data={"expect": {"views": 2}})
    )
    train = load_sweep(path).expected_meta()["splits"]["train"]
    assert (train["views"], train["flip"], train["count"]) == (2, True, 1_281_167 * 2 * 2)
    path.write_text(text(tmp_path))  # nothing says: one view, no mirrors
    train = load_sweep(path).expected_meta()["splits"]["train"]
    assert (train["views"], train["flip"], train["count"]) == (1, False, 1_281_167)


def test_select_only_and_exclude(tmp_path):
    s = sweep(tmp_path)
    assert [r.run_id for r in s.select(only="d2")] == ["d2"]
    assert [r.run_id for r in s.select(only="d*", exclude="d4")] == ["d2"]
    assert [r.run_id for r in s.select()] == ["d2", "d4"]


def test_depth_grid_is_the_papers_study():
    s = load_sweep(ROOT / "sweeps" / "depth_grid.yaml")
    depths = [r.depth for r in s.runs]
    assert depths == [6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 30]  # 28 left out (see file)
    n = {r.depth: var_params(r.depth) for r in s.runs}
    # the exact counts listed in docs/specification.md sec. 2
    assert n[16] == 310_283_520 and n[6] == 18_492_580 and n[30] == 2_010_020_356
    by = {r.depth: r.config for r in s.runs}
    # official recipes (VAR README): d16, d20, d24, d30
    assert (
        by[16].optim.batch_size,
        by[16].length.epochs,
        by[16].model.init_adaln_gamma,
        by[16].optim.final_lr_frac,
        by[16].optim.base_lr,
    ) == (768, 200, 1e-3, 0.1, 1e-4)
    assert (by[20].length.epochs, by[20].optim.final_lr_frac) == (250, 0.1)
    assert (
        by[24].optim.base_lr,
        by[24].length.epochs,
        by[24].model.init_adaln_gamma,
        by[24].optim.final_lr_frac,
    ) == (8e-5, 350, 1e-4, 0.01)
    assert (
        by[30].optim.batch_size,
        by[30].optim.weight_decay_end,
        by[30].model.init_adaln_gamma,
        by[30].optim.base_lr,
    ) == (1024, 0.08, 1e-5, 8e-5)
    assert by[24].optim.weight_decay_end == 0.05
    assert {r.depth: r.resources.nodes * r.resources.gpus_per_node for r in s.runs}[16] == 16


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_loads(path):
    sweep = load_sweep(path)
    assert sweep.runs and len({r.run_id for r in sweep.runs}) == len(sweep.runs)
    assert all(r.run_dir.parent == sweep.output for r in sweep.runs)
