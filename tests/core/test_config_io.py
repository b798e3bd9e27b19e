from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from scaling.core.config_io import (
    ConfigError,
    InvalidValue,
    build,
    dump_yaml,
    load_config,
    parse_yaml,
)


@dataclasses.dataclass(frozen=True)
class Inner:
    depth: int = 6
    lr: float = 1e-4
    mode: Literal["a", "b"] = "a"

    def __post_init__(self):
        if self.depth < 1:
            raise InvalidValue("depth", f"must be >= 1, got {self.depth}")


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = Inner()
    sizes: tuple[int, ...] = (1, 2)
    out: Path | None = None


def _load(text: str):
    data, loc = parse_yaml(text, "f.yaml")
    return build(Outer, data, loc)


def test_builds_nested_types_and_scientific_notation():
    cfg = _load("name: x\ninner:\n  depth: 8\n  lr: 3e-4\nsizes: [3, 4]\nout: runs/a\n")
    assert cfg == Outer("x", Inner(8, 3e-4, "a"), (3, 4), Path("runs/a"))


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "name: x\ninner:\n  dept: 8\n",
            "f.yaml:3: inner.dept: unknown key (did you mean 'depth'?)",
        ),
        (
            "name: x\ninner:\n  depth: six\n",
            "f.yaml:3: inner.depth: expected an integer, got 'six'",
        ),
        ("name: x\nsizes: [1, 2.5]\n", "f.yaml:2: sizes[1]: expected an integer, got 2.5"),
        ("name: x\ninner:\n  depth: 0\n", "f.yaml:3: inner.depth: must be >= 1, got 0"),
        ("name: x\ninner:\n  mode: c\n", "f.yaml:3: inner.mode: must be one of 'a', 'b'; got 'c'"),
        ("inner: {}\n", "f.yaml:1: name: required key missing in Outer"),
        ("name: x\nname: y\n", "f.yaml:2: name: duplicate key (first given on line 1)"),
        ("name: [x\n", "f.yaml:2: invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(text, expected):
    with pytest.raises(ConfigError) as e:
        _load(text)
    assert str(e.value).startswith(expected)


def test_safe_loader_refuses_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="evil.yaml:1: invalid YAML"):
        load_config(Outer, path)


def test_round_trip_through_yaml(tmp_path):
    cfg = Outer("x", Inner(4, 2e-4, "b"), (5,), Path("o"))
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(Outer, path) == cfg


def test_old_spellings_of_the_learning_rate_name_the_one_key(tmp_path):
    """optim.base_lr is the learning rate's only key: the official "tblr", "lr" and the like
    are located errors naming it, in a run config and in a sweep's --set alike."""
    from scaling.study.sweep.sweep import load_sweep
    from scaling.training.config import RunConfig
    from tests.factories import write_sweep

    for old in ("lr", "tblr", "peak_lr", "learning_rate"):
        data, loc = parse_yaml(
            f"run_id: x\ndata: {{store: /s}}\noptim:\n  {old}: 3.0e-3\n", "r.yaml"
        )
        with pytest.raises(ConfigError) as e:
            build(RunConfig, data, loc)
        assert str(e.value) == (
            f"r.yaml:4: optim.{old}: not a key: the setting is spelled optim.base_lr "
            "(the peak lr is base_lr x batch_size / 256)"
        )
    path = tmp_path / "s.yaml"
    write_sweep(path, tmp_path, store="/t", depths=(2,))
    with pytest.raises(
        ConfigError, match=r"optim\.lr: not a key: the setting is spelled optim\.base_lr"
    ):
        load_sweep(path, sets=["optim.lr=3e-3"])
