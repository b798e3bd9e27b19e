"""The bad-input battery: distinct bad inputs across the entry points (sweep YAML, run
config, image folders, token store files, checkpoints -- a hostile pickle among them --,
status files, results tables, CLI flags). Each one must give a clear message that names what
is wrong and where (file, line, key), and leave every file already written unchanged.

Every case plants its bad input in a fresh copy of one small "world" (a token store, a
finished run, images and a VQVAE), calls the entry point as a user would (the CLI's `main`),
and compares a hash of every file before and after. `test_battery_count` prints the count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from scaling.core.cli import RuntimeFailure
from scaling.data import tokenize as tokenize_mod
from scaling.study.laws import fit as fit_mod
from scaling.study.run import launch as launch_mod
from scaling.study.run import status as status_mod
from scaling.study.run import submit as submit_mod
from scaling.training import job as train_mod
from tests.factories import line_of, make_token_store, sweep_text, write_sweep

pytestmark = pytest.mark.usefixtures("one_thread")

# the world's sweep over the tests' one template: d1, 6 steps, run by the debug backend; one
# line per mapping of plain values, so that a case edits one value in place
WORLD = {
    "name": "w",
    "depths": (1,),
    "base": {"length": {"steps": 6}, "runtime": {"checkpoint_every_steps": 3}},
    "eval": {"points": 2, "first_frac": 0.5},
    "cluster": {"backend": "debug", "cpus_per_task": None},
}
WORLD_TEXT = sweep_text("OUT", store="STORE", flow=True, **WORLD)  # the lines of s.yaml
END = len(WORLD_TEXT.splitlines())  # text a case appends starts on line END + 1


def line(needle: str) -> int:
    """The line of the world's s.yaml holding `needle` (where a located error must point)."""
    return line_of(WORLD_TEXT, needle)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A token store, a sweep whose run d1 is done, images and a VQVAE checkpoint."""
    from scaling.data.synthetic import generate
    from var_core import VQVAE, save_model

    root = tmp_path_factory.mktemp("world")
    make_token_store(root / "store")
    write_sweep(root / "s.yaml", root / "out", store=root / "store", flow=True, **WORLD)
    assert launch_mod.main([str(root / "s.yaml")]) == 0
    assert json.loads((root / "out" / "d1" / "status.json").read_text())["state"] == "done"
    generate(root / "images", num_classes=2, train_per_class=2, val_per_class=2, resolution=16)
    (root / "images" / "classes.json").unlink()  # let tokenize write it
    torch.manual_seed(0)
    save_model(
        root / "vq.pt",
        VQVAE(
            vocab_size=32,
            z_channels=8,
            ch=32,
            ch_mult=(1, 2),
            num_res_blocks=1,
            patch_nums=(1, 2, 4),
        ),
    )
    return root


def digest(root: Path) -> dict[str, str]:
    """{relative path: sha256 and mode} of every file under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() + oct(
                p.stat().st_mode
            )
    return out


@dataclasses.dataclass
class Case:
    name: str
    plant: Callable[[Path], None]  # write the bad input into the world copy
    call: Callable[[Path], object]  # the entry point; returns its exit code or raises
    expect: tuple[str, ...]  # substrings the message must hold ({w} = the world's path)
    code: object = 2  # expected exit code (None: an exception is expected instead)


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        p = w / path
        text = p.read_text()
        old_, new_ = old.replace("{w}", str(w)), new.replace("{w}", str(w))
        assert old_ in text, (path, old_)
        p.write_text(text.replace(old_, new_, 1))

    return plant


def add(path: str, text: str) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        (w / path).write_text((w / path).read_text() + textwrap.dedent(text))

    return plant


def write(path: str, data: bytes | str) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        p = w / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())

    return plant


def both(*plants: Callable[[Path], None]) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        for p in plants:
            p(w)

    return plant


def nothing(w: Path) -> None:
    pass


def launch(*extra: str) -> Callable[[Path], object]:
    return lambda w: launch_mod.main([str(w / "s.yaml"), *extra])


def dry(w: Path) -> object:
    return launch_mod.main([str(w / "s.yaml"), "--dry-run"])


def status(w: Path) -> object:
    return status_mod.main([str(w / "s.yaml")])


def train(config: str = "out/d1/config.yaml", run_dir: str | None = None):
    def call(w: Path) -> object:
        argv = [str(w / config)] + (["--run-dir", str(w / run_dir)] if run_dir else [])
        return train_mod.main(argv)

    return call


def new_run(store_path: str = "store", **changes) -> Callable[[Path], None]:
    """A fresh run directory `bad/r` with the finished run's config, on `store_path`."""

    def plant(w: Path) -> None:
        from scaling.core.config_io import dump_yaml
        from scaling.training.config import load_run_config

        cfg = load_run_config(w / "out" / "d1" / "config.yaml")
        cfg = dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, store=w / store_path), **changes
        )
        (w / "bad" / "r").mkdir(parents=True)
        (w / "bad" / "r" / "config.yaml").write_text(dump_yaml(cfg))

    return plant


def copy_store(w: Path) -> None:
    shutil.copytree(w / "store", w / "bad" / "store")


def store_edit(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        copy_store(w)
        fn(w / "bad" / "store")
        new_run("bad/store")(w)

    return plant


def bad_token(store: Path) -> None:
    t = np.load(store / "train" / "tokens.npy")
    t[7, 2] = 999
    np.save(store / "train" / "tokens.npy", t)


def bad_label(store: Path) -> None:
    lab = np.load(store / "val" / "labels.npy")
    lab[3] = 9
    np.save(store / "val" / "labels.npy", lab)


def meta_change(**kw) -> Callable[[Path], None]:
    def fn(store: Path) -> None:
        meta = json.loads((store / "meta.json").read_text())
        meta.update(kw)
        (store / "meta.json").write_text(json.dumps(meta))

    return fn


def meta_z_channels(z: int) -> Callable[[Path], None]:
    def fn(store: Path) -> None:
        meta = json.loads((store / "meta.json").read_text())
        meta["vqvae_config"]["z_channels"] = z
        (store / "meta.json").write_text(json.dumps(meta))

    return fn


class Hostile:
    """Unpickling this runs a shell command (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_checkpoint(w: Path) -> None:
    torch.save(
        {"format": "var-scaling-train/1", "payload": Hostile(w / "PWNED")},
        w / "out" / "d1" / "checkpoint.pt",
    )


def foreign_checkpoint(w: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, w / "out" / "d1" / "checkpoint.pt")


def other_config_checkpoint(w: Path) -> None:
    state = torch.load(w / "out" / "d1" / "checkpoint.pt", weights_only=True)
    state["config"]["optim"]["base_lr"] = 0.123
    torch.save(state, w / "out" / "d1" / "checkpoint.pt")


def tokenize(w: Path, images: str = "images", vqvae: str = "vq.pt") -> object:
    return tokenize_mod.main(
        [
            "--images",
            str(w / images),
            "--vqvae",
            str(w / vqvae),
            "--out",
            str(w / "bad" / "tok"),
            "--batch-size",
            "4",
            "--device",
            "cpu",
        ]
    )


def fit(*args: str) -> Callable[[Path], object]:
    return lambda w: fit_mod.main([a.format(w=w) for a in args])


def ckpt_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    """Change the finished run's checkpoint.pt (a field the resume must check)."""

    def plant(w: Path) -> None:
        path = w / "out" / "d1" / "checkpoint.pt"
        state = torch.load(path, weights_only=True)
        fn(state)
        torch.save(state, path)

    return plant


def first_weight_nan(state: dict) -> None:
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.numel() > 1)
    state["model"][name].view(-1)[0] = float("nan")


def other_shape(state: dict) -> None:
    name = next(k for k, v in state["model"].items() if v.ndim == 2)
    state["model"][name] = torch.zeros(3, 3)


def cut_metrics(w: Path) -> None:
    """A partial copy: metrics.jsonl shorter than the checkpoint's offset."""
    path = w / "out" / "d1" / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:40])


def truncated_copy(src: str, dst: str) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        data = (w / src).read_bytes()
        (w / dst).parent.mkdir(parents=True, exist_ok=True)
        (w / dst).write_bytes(data[: len(data) // 2])

    return plant


def hostile_file(dst: str) -> Callable[[Path], None]:
    def plant(w: Path) -> None:
        (w / dst).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": "var_core.vqvae.v1", "x": Hostile(w / "PWNED")}, w / dst)

    return plant


def sample_eval(run: str = "out/d1") -> Callable[[Path], object]:
    def call(w: Path) -> object:
        from scaling.training import sample_eval as sample_eval_mod

        return sample_eval_mod.main([str(w / run), "--device", "cpu"])

    return call


# nine levels of nine aliases: 9**9 (387 million) strings once expanded
ALIAS_BOMB = "zz:\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)
)


Y = "s.yaml"
CASES = [
    # ---- sweep YAML (located: file:line: key)
    Case(
        "unknown cluster key",
        edit(Y, "{backend: debug}", "{nodez: 1, backend: debug}"),
        dry,
        (f"s.yaml:{line('cluster:')}: cluster.nodez: unknown key (did you mean 'nodes'?)",),
    ),
    Case(
        "hold_frac 1 (divided by zero after the whole run)",
        edit(Y, "base_lr: 0.005,", "base_lr: 0.005, hold_frac: 1.0,"),
        dry,
        (f"s.yaml:{line('optim:')}: base.optim.hold_frac: must be in [0, 1), got 1.0",),
    ),
    Case(
        "warmup_frac 1",
        edit(Y, "base_lr: 0.005,", "base_lr: 0.005, warmup_frac: 1,"),
        dry,
        (f"s.yaml:{line('optim:')}: base.optim.warmup_frac: must be in [0, 1)",),
    ),
    Case(
        "label_smoothing 1",
        edit(Y, "base_lr: 0.005,", "base_lr: 0.005, label_smoothing: 1,"),
        dry,
        ("base.optim.label_smoothing: must be in [0, 1)",),
    ),
    Case(
        "final_lr_frac > 1",
        edit(Y, "final_lr_frac: 0.1}", "final_lr_frac: 2}"),
        dry,
        (f"s.yaml:{line('optim:')}: base.optim.final_lr_frac: must be in [0, 1]",),
    ),
    Case(
        "eps 0",
        edit(Y, "base_lr: 0.005,", "base_lr: 0.005, eps: 0,"),
        dry,
        ("base.optim.eps: must be > 0",),
    ),
    Case(
        "more eval points than steps",
        edit(Y, "eval: {points: 2", "eval: {points: 7"),
        dry,
        (f"s.yaml:{line('eval:')}: eval.points: 7 evaluations but the run has only 6 steps",),
    ),
    Case(
        "batch size 0",
        edit(Y, "batch_size: 16", "batch_size: 0"),
        dry,
        (f"s.yaml:{line('optim:')}: base.optim.batch_size: must be > 0, got 0",),
    ),
    Case(
        "learning rate not a number",
        edit(Y, "base_lr: 0.005", "base_lr: fast"),
        dry,
        (f"s.yaml:{line('optim:')}: base.optim.base_lr: expected a number, got 'fast'",),
    ),
    Case(
        "negative seed",
        add(Y, "rules:\n  - {min_depth: 1, set: {seed: -1}}\n"),
        dry,
        (f"s.yaml:{END + 2}: rules[0].set.seed: must be >= 0, got -1",),
    ),
    Case(
        "micro-batch above the batch",
        edit(Y, "num_threads: 1,", "num_threads: 1, micro_batch: 64,"),
        dry,
        ("base.runtime.micro_batch: 64 is larger than optim.batch_size 16",),
    ),
    Case(
        "log interval 0",
        edit(Y, "num_threads: 1,", "num_threads: 1, log_every_s: 0,"),
        dry,
        (f"s.yaml:{line('runtime:')}: base.runtime.log_every_s: must be > 0",),
    ),
    Case(
        "class dropout 1",
        edit(Y, "heads: 2,", "heads: 2, cond_drop: 1.0,"),
        dry,
        (f"s.yaml:{line('model:')}: base.model.cond_drop: must be in [0, 1)",),
    ),
    Case(
        "unknown precision",
        edit(Y, "num_threads: 1,", "num_threads: 1, precision: fp16,"),
        dry,
        ("base.runtime.precision: must be one of 'auto', 'fp32', 'bf16'; got 'fp16'",),
    ),
    Case(
        "override key d01 (never applied)",
        add(Y, "overrides:\n  d01: {optim.batch_size: 8}\n"),
        dry,
        (f"s.yaml:{END + 2}: overrides.d01: override keys are depths written 16 or d16",),
    ),
    Case(
        "overrides 1 and d1 for one depth",
        add(Y, "overrides:\n  1: {model.width: 16}\n  d1: {optim.batch_size: 8}\n"),
        dry,
        (f"s.yaml:{END + 3}: overrides.d1: depth 1 already has overrides under key '1'",),
    ),
    Case(
        "override for a depth not in the grid",
        add(Y, "overrides:\n  d5: {optim.batch_size: 8}\n"),
        dry,
        (f"s.yaml:{END + 2}: overrides.d5: depth 5 is not in grid.depth [1]",),
    ),
    Case(
        "depth 0",
        edit(Y, "depth: [1]", "depth: [0]"),
        dry,
        (f"s.yaml:{line('depth:')}: grid.depth[0]: a depth must be a positive integer, got 0",),
    ),
    Case(
        "duplicate key",
        edit(Y, "name: w", "name: w\nname: v"),
        dry,
        (f"s.yaml:{line('name:') + 1}: name: duplicate key (first given on line {line('name:')})",),
    ),
    Case("broken YAML", edit(Y, "depth: [1]", "depth: [1"), dry, ("s.yaml:", "invalid YAML")),
    Case(
        "signal delay beyond the time limit",
        edit(Y, "backend: debug", "backend: debug, time_min: 1"),
        dry,
        ("cluster.signal_delay_s: 120 s is not less than the time limit (1 min)",),
    ),
    Case(
        "grid value that leaves the output folder",
        edit(Y, "depth: [1]", "depth: [1]\n  tag: ['../x']"),
        dry,
        (f"s.yaml:{line('depth:') + 1}: grid.tag[0]: value '../x' would make the run-id part",),
    ),
    Case(
        "label for a non-axis",
        add(Y, "labels: {nope: n}\n"),
        dry,
        (f"s.yaml:{END + 1}: labels: 'nope' is not a grid axis",),
    ),
    Case(
        "store split that does not exist",
        edit(Y, "length: {steps: 6}", "length: {steps: 6}\n  data: {eval_split: test}"),
        launch(),
        ("s.yaml: data.eval_split: run d1 asks for split 'test'",),
    ),
    Case(
        "missing token store",
        edit(Y, "/store}\n", "/nostore}\n"),
        launch(),
        (
            "s.yaml: data.tokens: token store ",
            "/nostore does not exist",
        ),
    ),
    Case(
        "output is a file",
        both(write("bad/out-file", "x"), edit(Y, "output: {w}/out", "output: {w}/bad/out-file")),
        launch(),
        ("error: output {w}/bad/out-file (the sweep's `output:`) is a file",),
        None,
    ),
    Case(
        "changed config of a finished run",
        edit(Y, "length: {steps: 6}", "length: {steps: 9}"),
        launch(),
        (
            "out/d1/config.yaml holds another config than the sweep now gives for run "
            "d1 (state done)",
        ),
        None,
    ),
    # ---- status files
    Case(
        "corrupt status.json",
        write("out/d1/status.json", '{"state": "do'),
        status,
        ("error: {w}/out/d1/status.json: corrupt status file",),
        1,
    ),
    Case(
        "status.json with an unknown state",
        write("out/d1/status.json", '{"state": "great"}'),
        launch(),
        ("error: {w}/out/d1/status.json: not a status record",),
        1,
    ),
    # ---- run config (python -m scaling.train)
    Case(
        "run config with an unknown key",
        both(new_run(), edit("bad/r/config.yaml", "  base_lr:", "  wd: 1\n  base_lr:")),
        train("bad/r/config.yaml"),
        ("bad/r/config.yaml:", "optim.wd: unknown key"),
        2,
    ),
    Case(
        "run config missing",
        nothing,
        train("bad/none.yaml"),
        ("{w}/bad/none.yaml: cannot read",),
        2,
    ),
    Case(
        "another config for an existing run directory",
        both(new_run(), edit("bad/r/config.yaml", "steps: 6", "steps: 5")),
        train("bad/r/config.yaml", "out/d1"),
        ("out/d1/config.yaml already holds another config",),
        None,
    ),
    # ---- token store files (found when the trainer starts: nothing trains)
    Case(
        "token outside the vocabulary",
        store_edit(bad_token),
        train("bad/r/config.yaml"),
        ("bad/store/train/tokens.npy: row 7 holds token 999, outside the vocabulary [0, 32)",),
        2,
    ),
    Case(
        "meta vocab disagrees with the quantizer",
        store_edit(meta_change(vocab_size=64)),
        train("bad/r/config.yaml"),
        ("bad/store: meta.json says vocab_size 64 but its quantizer (quantizer.pt) has 32",),
        2,
    ),
    Case(
        "meta code width disagrees with the quantizer",
        store_edit(meta_z_channels(4)),
        train("bad/r/config.yaml"),
        ("bad/store: meta.json says z_channels 4 but its quantizer (quantizer.pt) has 8",),
        2,
    ),
    Case(
        "label outside the classes",
        store_edit(bad_label),
        train("bad/r/config.yaml"),
        ("bad/store/val/labels.npy: labels outside [0, 4)",),
        2,
    ),
    Case(
        "meta.json not JSON",
        store_edit(lambda s: (s / "meta.json").write_text("{")),
        train("bad/r/config.yaml"),
        ("bad/store/meta.json", "not valid JSON"),
        2,
    ),
    Case(
        "tokens.npy of the wrong shape",
        store_edit(lambda s: np.save(s / "val" / "tokens.npy", np.zeros((3, 14), np.uint16))),
        train("bad/r/config.yaml"),
        ("bad/store/val/tokens.npy: expected uint16 [64, 14]",),
        2,
    ),
    Case(
        "empty quantizer file",
        store_edit(lambda s: (s / "quantizer.pt").write_bytes(b"")),
        train("bad/r/config.yaml"),
        ("bad/store/quantizer.pt: the token-store quantizer is empty (0 bytes",),
        2,
    ),
    # ---- checkpoints
    Case(
        "empty checkpoint",
        write("out/d1/checkpoint.pt", b""),
        train(),
        ("out/d1/checkpoint.pt: the training checkpoint is empty (0 bytes",),
        2,
    ),
    Case(
        "checkpoint that is not a torch file",
        write("out/d1/checkpoint.pt", b"PK\x03\x04junk"),
        train(),
        ("out/d1/checkpoint.pt: not a readable training checkpoint",),
        2,
    ),
    Case(
        "hostile pickle checkpoint",
        hostile_checkpoint,
        train(),
        (
            "out/d1/checkpoint.pt: refusing to load the training checkpoint: it holds Python "
            "objects other than tensors",
            "nothing in it was run",
        ),
        2,
    ),
    Case(
        "checkpoint of another program",
        foreign_checkpoint,
        train(),
        ("out/d1/checkpoint.pt: not a training checkpoint of this toolkit",),
        2,
    ),
    Case(
        "checkpoint of another config",
        other_config_checkpoint,
        train(),
        ("out/d1/checkpoint.pt: was written with another config",),
        2,
    ),
    # ---- image folders and the VQVAE (python -m scaling.tokenize)
    Case(
        "empty class folder in val (classes.json not written)",
        lambda w: [p.unlink() for p in (w / "images" / "val" / "class_001").iterdir()],
        tokenize,
        ("images/val/class_001",),
    ),
    Case(
        "missing VQVAE checkpoint",
        nothing,
        lambda w: tokenize(w, vqvae="none.pt"),
        ("tokenize: VQVAE checkpoint {w}/none.pt does not exist",),
    ),
    Case(
        "corrupt classes.json",
        write("images/classes.json", "[1,"),
        tokenize,
        ("images/classes.json: not valid JSON",),
    ),
    # ---- results tables (python -m scaling.fit)
    Case(
        "results table of an unknown format",
        write("bad/t.txt", "a,b\n"),
        fit("{w}/bad/t.txt"),
        ("bad/t.txt: unknown table format; use .csv or .parquet",),
    ),
    Case("results table missing", nothing, fit("{w}/bad/none.csv"), ("bad/none.csv: no such ",)),
    Case(
        "fit --set E_from of an unknown source",
        write("bad/t.csv", "run,params,step,flops,ce_avg\nd1,10,1,1,3\n"),
        fit("{w}/bad/t.csv", "--set", "E_from=Q"),
        ("--set E_from=Q: E_from: must be one of 'N', 'all'; got 'Q'",),
    ),
    Case(
        "--set an unknown view draw",
        nothing,
        launch("--set", "data.view_draw=sometimes"),
        ("data.view_draw: must be one of 'permutation', 'independent'; got 'sometimes'",),
    ),
    # ---- CLI flags
    Case(
        "--reconfigure without --retry-failed",
        nothing,
        launch("--reconfigure"),
        ("--reconfigure only goes with --retry-failed",),
        None,
    ),
    # ---- numbers: finite, in range, whole where counts (also through --set and the grid)
    Case(
        "NaN grid value",
        edit(Y, "  depth: [1]", "  depth: [1]\n  optim.base_lr: [.nan]"),
        dry,
        (f"s.yaml:{line('depth:') + 1}: grid.optim.base_lr[0]: must be a finite number, got nan",),
    ),
    Case(
        "infinite grid value",
        edit(Y, "  depth: [1]", "  depth: [1]\n  optim.base_lr: [0.01, .inf]"),
        dry,
        (f"s.yaml:{line('depth:') + 1}: grid.optim.base_lr[1]: must be a finite number, got inf",),
    ),
    Case(
        "--set a NaN learning rate",
        nothing,
        launch("--set", "optim.base_lr=nan"),
        ("--set 'optim.base_lr=nan': must be a finite number",),
    ),
    Case(
        "--set an infinite learning rate",
        nothing,
        launch("--set", "optim.base_lr=-.inf"),
        ("--set 'optim.base_lr=-.inf': must be a finite number",),
    ),
    Case(
        "base_lr .nan in the sweep file",
        edit(Y, "base_lr: 0.005,", "base_lr: .nan,"),
        dry,
        (f"s.yaml:{line('optim:')}: base.optim.base_lr: must be a finite number, got nan",),
    ),
    Case(
        "length.steps 1e30",
        edit(Y, "length: {steps: 6}", "length: {steps: 1e30}"),
        dry,
        (f"s.yaml:{line('length:')}: base.length.steps: 1e+30 is too large",),
    ),
    Case(
        "length.steps .inf",
        edit(Y, "length: {steps: 6}", "length: {steps: .inf}"),
        dry,
        (
            f"s.yaml:{line('length:')}: base.length.steps: expected an integer, "
            "got inf (not finite)",
        ),
    ),
    Case(
        "YAML alias bomb under an unknown key",
        add(Y, ALIAS_BOMB),
        dry,
        ("s.yaml:", "aliases expand to more than 100,000 values (an alias bomb?)"),
    ),
    Case(
        "samples.seed negative",
        edit(Y, "length: {steps: 6}", "length: {steps: 6}\n  samples: {seed: -1}"),
        dry,
        (f"s.yaml:{line('length:') + 1}: base.samples.seed: must be >= 0, got -1",),
    ),
    # ---- checkpoint fields checked against the run before anything is loaded or cut
    Case(
        "checkpoint with a negative step",
        ckpt_edit(lambda st: st.update(step=-3)),
        train(),
        ("out/d1/checkpoint.pt: step is -3, expected a whole number >= 0",),
    ),
    Case(
        "checkpoint with a step past the end",
        ckpt_edit(lambda st: st.update(step=10**9)),
        train(),
        ("out/d1/checkpoint.pt: step 1000000000 is past the run's last step 6",),
    ),
    Case(
        "checkpoint for another number of steps",
        ckpt_edit(lambda st: st.update(total_steps=400)),
        train(),
        ("out/d1/checkpoint.pt: total_steps is 400, but this run has 6 steps",),
    ),
    Case(
        "metrics.jsonl shorter than the checkpoint says",
        cut_metrics,
        train(),
        ("out/d1/metrics.jsonl is shorter (40 bytes) than", "out/d1/checkpoint.pt says"),
    ),
    Case(
        "checkpoint metrics offset inside a line",
        ckpt_edit(lambda st: st.update(metrics_offset=st["metrics_offset"] - 5)),
        train(),
        ("out/d1/checkpoint.pt: its metrics offset", "is not at the end of a line"),
    ),
    Case(
        "checkpoint with NaN weights",
        ckpt_edit(first_weight_nan),
        train(),
        ("out/d1/checkpoint.pt: model.", "holds NaN or infinite weights"),
    ),
    Case(
        "checkpoint with another model shape",
        ckpt_edit(other_shape),
        train(),
        ("out/d1/checkpoint.pt: model.", "has shape (3, 3)"),
    ),
    Case(
        "checkpoint with a NaN wall time",
        ckpt_edit(lambda st: st.update(wall_s=float("nan"))),
        train(),
        ("out/d1/checkpoint.pt: wall_s is nan, expected a finite number >= 0",),
    ),
    # ---- one error mapping: library errors exit 2 with the file named, never a traceback
    Case(
        "tokenize with a truncated VQVAE file",
        truncated_copy("vq.pt", "bad/vq.pt"),
        lambda w: tokenize(w, vqvae="bad/vq.pt"),
        ("bad/vq.pt: not a readable checkpoint (truncated or not a torch file",),
    ),
    Case(
        "tokenize with a hostile VQVAE file",
        hostile_file("bad/vq.pt"),
        lambda w: tokenize(w, vqvae="bad/vq.pt"),
        ("bad/vq.pt: refused to load: it holds Python objects", "nothing in it was run"),
    ),
    Case(
        "sample_eval on a run whose checkpoint is truncated",
        truncated_copy("out/d1/checkpoint.pt", "out/d1/checkpoint.pt"),
        sample_eval(),
        ("out/d1/checkpoint.pt: not a readable training checkpoint (truncated",),
    ),
    Case(
        "launch with an output folder under a file",
        both(
            write("afile", "not a folder"),
            edit(Y, "output: {w}/out", "output: {w}/afile/out"),
        ),
        launch(),
        ("{w}/afile/out (the sweep's `output:`): {w}/afile is a file, not a folder",),
    ),
    Case(
        "--only that matches nothing",
        nothing,
        launch("--only", "d9"),
        ("error: --only/--exclude leave no runs",),
    ),
    Case(
        "unknown backend", nothing, launch("--backend", "cloud"), ("invalid choice: 'cloud'",), None
    ),
    Case(
        "--watch not a number",
        nothing,
        lambda w: status_mod.main([str(w / Y), "--watch", "x"]),
        ("argument --watch: invalid float value: 'x'",),
        None,
    ),
]


def run_case(case: Case, w: Path, capsys) -> str:
    """Plant, call, check the exit code; return stdout + stderr + any exception text."""
    case.plant(w)
    capsys.readouterr()
    try:
        code = case.call(w)
        text = ""
    except SystemExit as e:
        code, text = e.code, str(e.code)
    except Exception as e:  # noqa: BLE001 -- a typed error is a fine answer from a library call
        code, text = None, f"{type(e).__name__}: {e}"
    out, err = capsys.readouterr()
    text = f"{out}\n{err}\n{text}"
    assert "Traceback" not in text, text
    assert "weights_only=False" not in text, text
    if case.code is not None:
        assert code == case.code, (case.name, code, text)
    return text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, world: Path, tmp_path: Path, capsys):
    w = tmp_path / "w"
    shutil.copytree(world, w, symlinks=True)
    # the copy's sweep writes into the copy; the runs read the world's store, as the finished
    # run's config and checkpoint say (cases that break a store break a copy of it)
    (w / Y).write_text((w / Y).read_text().replace(f"output: {world}", f"output: {w}"))
    before = None

    def planted(_w: Path) -> None:
        nonlocal before
        case.plant(_w)
        before = digest(_w)

    text = run_case(dataclasses.replace(case, plant=planted), w, capsys)
    for needle in case.expect:
        needle = needle.replace("{w}", str(w))
        assert needle in text, (case.name, needle, text)
    after = digest(w)
    changed = {
        k
        for k in before.keys() | after.keys()
        if before.get(k) != after.get(k)
        and not k.startswith(("bad/r/", "bad/tok/"))
        and not k.endswith((".lock",))
        and "/_submitit/" not in f"/{k}"
    }
    assert not changed, (case.name, sorted(changed))
    assert not (w / "PWNED").exists()  # the hostile pickle never ran
    if "classes.json not written" in case.name:
        assert not (w / "images" / "classes.json").exists()


def test_battery_count():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names) >= 40
    print(f"bad-input battery: {len(names)} distinct bad inputs")


def test_hostile_file_is_really_hostile(world, tmp_path):
    """The hostile checkpoint of the battery does run code when unpickled without the
    tensors-only guard (so its refusal above means something)."""
    w = tmp_path / "w"
    w.mkdir()
    (w / "out" / "d1").mkdir(parents=True)
    hostile_checkpoint(w)
    torch.load(w / "out" / "d1" / "checkpoint.pt", weights_only=False)  # what we never do
    assert (w / "PWNED").exists()


def test_retraining_a_finished_run_keeps_its_final_summary(world, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(world, w)
    cfg = w / "out" / "d1" / "config.yaml"  # reads the world's store, like its checkpoint
    before = json.loads((w / "out" / "d1" / "status.json").read_text())
    metrics_before = (w / "out" / "d1" / "metrics.jsonl").read_bytes()
    assert train_mod.main([str(cfg)]) == 0
    after = json.loads((w / "out" / "d1" / "status.json").read_text())
    assert after["state"] == "done" and after["final"] == before["final"]
    assert after["final"]["step"] == 6 and "ce_avg" in after["final"]
    assert (w / "out" / "d1" / "metrics.jsonl").read_bytes() == metrics_before


def test_atomic_writes_leave_no_stale_temp_files_and_a_readable_mode(tmp_path):
    import socket
    import subprocess

    from contracts.atomic import atomic_write_text

    host = socket.gethostname().replace(".", "_")
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f".status.json.{host}.{dead.pid}.abc.tmp"
    stale.write_text("half")
    live = tmp_path / f".status.json.{host}.{os.getpid()}.xyz.tmp"  # a write in progress
    live.write_text("half")
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "status.json", "{}")
    finally:
        os.umask(old)
    assert not stale.exists() and live.exists()
    assert (tmp_path / "status.json").stat().st_mode & 0o777 == 0o644
    os.chmod(tmp_path / "status.json", 0o664)  # a group-writable file keeps its mode
    atomic_write_text(tmp_path / "status.json", "{}")
    assert (tmp_path / "status.json").stat().st_mode & 0o777 == 0o664


def test_a_refused_submission_is_recorded_and_submits_nothing(world, tmp_path, monkeypatch):
    """sbatch (here: the executor) refuses: the runs say so, none is left queued without a
    job id, and the launch fails with the reason."""
    w = tmp_path / "w"
    shutil.copytree(world, w)
    (w / Y).write_text(
        (w / Y)
        .read_text()
        .replace(f"output: {world}", f"output: {w}")
        .replace("depth: [1]", "depth: [1, 2]")
    )
    from scaling.core.rundir import RunDir
    from scaling.study.sweep.sweep import load_sweep

    class Refusing:
        def submit(self, *a, **k):
            raise RuntimeError("sbatch: error: Batch job submission failed: Invalid account")

    monkeypatch.setattr(submit_mod, "executor_for", lambda *a, **k: Refusing())
    sweep = load_sweep(w / Y)
    with pytest.raises(RuntimeFailure, match="submitting 1 runs failed .*Invalid account"):
        launch_mod.launch(sweep, log=lambda s: None)
    rec = RunDir(w / "out" / "d2").read_status()
    assert rec["state"] == "pending" and "submission failed: sbatch: error" in rec["error"]
    assert not rec.get("job_ids")
    assert RunDir(w / "out" / "d1").read_status()["state"] == "done"


def test_an_alias_bomb_is_refused_in_well_under_a_second(tmp_path):
    from scaling.core.config_io import ConfigError, load_yaml

    path = tmp_path / "bomb.yaml"
    # twelve levels of nine: 9**12 (282 billion) strings once expanded
    path.write_text(
        "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 12))
    )
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml:\d+: invalid YAML: its aliases expand"):
        load_yaml(path)
    assert time.perf_counter() - t0 < 0.5
    # a recursive alias is refused too, and ordinary aliases still load
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="refers to the node that holds it"):
        load_yaml(path)
    path.write_text("base: &b {x: 1}\nother: *b\n")
    assert load_yaml(path)[0] == {"base": {"x": 1}, "other": {"x": 1}}


def test_status_leaves_out_nan_and_absurd_metrics_lines(world, tmp_path, capsys):
    """A metrics file with NaN lines (and a line of 1e282 tokens): status shows the last
    sound line, never inf or 1e+282, and does not call the run data-limited."""
    w = tmp_path / "w"
    shutil.copytree(world, w, symlinks=True)
    (w / Y).write_text((w / Y).read_text().replace(f"output: {world}", f"output: {w}"))
    path = w / "out" / "d1" / "metrics.jsonl"
    good = [json.loads(x) for x in path.read_text().splitlines()]
    bad = [
        {**good[-1], "step": good[-1]["step"] + 1, "tokens": float("inf"), "ce_avg": float("nan")},
        {**good[-1], "step": good[-1]["step"] + 2, "tokens": 1e282, "ce_avg": 99.0},
        {**good[-1], "step": good[-1]["step"] + 3, "ce_avg": float("nan"), "train_loss": 0.1},
    ]
    with open(path, "a") as f:
        for rec in bad:
            f.write(json.dumps(rec) + "\n")  # json writes NaN and Infinity literals
    capsys.readouterr()
    assert status_mod.main([str(w / Y)]) == 0
    out = capsys.readouterr().out
    assert "inf" not in out.lower().replace("info", "") and "e+282" not in out, out
    assert "data-limited" not in out, out
    assert f"step {good[-1]['step']}," in out, out


def test_a_truncated_token_shard_is_named_at_merge(tmp_path):
    from scaling.data.token_store import TokenStoreError, merge_split, shard_dir

    store = tmp_path / "store"
    for i in range(2):
        d = shard_dir(store, "train", i, 2)
        d.mkdir(parents=True)
        np.save(d / "tokens.npy", np.zeros((4, 6), np.uint16))
        np.save(d / "labels.npy", np.zeros(4, np.int32))
        (d / "done.json").write_text(json.dumps({"inputs": 4, "rows": 4, "skipped": []}))
    bad = shard_dir(store, "train", 1, 2) / "tokens.npy"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(TokenStoreError, match=rf"{bad}: unreadable token shard \(truncated"):
        merge_split(store, "train", 2, num_inputs=8, rows_per_input=1, L=6)
    assert not (store / "train" / "tokens.npy").exists()  # nothing merged


def test_a_full_disk_names_the_file_and_says_no_space(tmp_path, monkeypatch, capsys):
    """ENOSPC from the kernel (/dev/full), and torch's own error on a full disk ("unexpected
    pos"), both end as "no space left on <path>", exit 1, the old file intact."""
    from contracts import atomic  # the home of atomic writes
    from contracts.atomic import atomic_write
    from contracts.jsonl import append_jsonl
    from scaling.core.cli import run_cli

    target = tmp_path / "metrics.jsonl"
    target.symlink_to("/dev/full")
    assert run_cli(lambda: append_jsonl(target, {"step": 1})) == 1
    err = capsys.readouterr().err
    assert f"error: no space left on {target}" in err and "Traceback" not in err

    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"old")

    def torch_on_a_full_disk(f):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0")

    class Full:  # what os.statvfs says of a full file system
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(atomic.os, "statvfs", lambda p: Full())
    assert run_cli(lambda: atomic_write(ckpt, torch_on_a_full_disk)) == 1
    err = capsys.readouterr().err
    assert f"error: no space left on {ckpt}" in err and "unexpected pos" not in err
    assert ckpt.read_bytes() == b"old"  # the old file intact, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


def test_library_value_errors_exit_2_and_bugs_keep_their_traceback(capsys):
    from scaling.core.cli import run_cli
    from var_core.checkpoint import CheckpointError as CoreCheckpointError

    def core_error():
        raise CoreCheckpointError("x.pt: not a readable checkpoint")

    assert run_cli(core_error) == 2
    assert "error: x.pt: not a readable checkpoint" in capsys.readouterr().err

    def bug():
        raise ValueError("a bug in numpy's hands")

    with pytest.raises(ValueError):
        run_cli(bug)
