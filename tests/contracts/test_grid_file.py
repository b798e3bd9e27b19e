"""grid.yaml: its reader and writer against files written out by hand here."""

from __future__ import annotations

import pytest

from contracts import ContractError
from contracts.grid import GridFile, read_grid, write_grid

GRID = """schema_version: 1
sweep: lr_grid
axes:
- model.depth
- optim.base_lr
labels:
  model.depth: d
  optim.base_lr: lr
runs:
  d1-lr0.1:
    model.depth: 1
    optim.base_lr: 0.1
  d2-lr0.1:
    model.depth: 2
    optim.base_lr: 0.1
"""


def test_round_trip_of_a_hand_written_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    grid = read_grid(path)
    assert grid.sweep == "lr_grid" and grid.axes == ("model.depth", "optim.base_lr")
    assert dict(grid.labels) == {"model.depth": "d", "optim.base_lr": "lr"}
    assert dict(grid.runs["d2-lr0.1"]) == {"model.depth": 2, "optim.base_lr": 0.1}
    copy = tmp_path / "copy.yaml"
    write_grid(copy, grid)
    assert copy.read_text() == GRID


def test_an_old_unversioned_file_reads_as_version_0_and_a_missing_one_is_empty(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("axes: [model.depth]\nruns:\n  d1: {model.depth: 1}\n  d3:\n")
    grid = read_grid(path)
    assert grid.schema_version == 0 and grid.sweep is None and not grid.labels
    assert {k: dict(v) for k, v in grid.runs.items()} == {"d1": {"model.depth": 1}, "d3": {}}
    assert read_grid(tmp_path / "none.yaml") == GridFile()


@pytest.mark.parametrize(
    "text, message",
    [
        ("axes: [depth\nruns: {}\n", r"grid\.yaml:2: unreadable YAML"),
        ("axes: depth\nruns: [1, 2]\n", r"grid\.yaml: expected a mapping with 'axes'"),
        ("axes: [d]\nruns: {}\nlabels: [d]\n", r"grid\.yaml: labels: expected a mapping"),
        ("axes: [d]\nruns: {r1: 3}\n", r"grid\.yaml: runs: r1: expected a mapping"),
        ("schema_version: 7\naxes: []\nruns: {}\n", r"grid\.yaml: schema_version: .* got 7"),
    ],
)
def test_an_unreadable_grid_is_an_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ContractError, match=message):
        read_grid(path)
