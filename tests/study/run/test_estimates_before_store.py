"""Before the token store exists, the launch table derives every number from the recipe
(`prepare:` and the image folder): a dry run prints what the runs then really are.

Both studies are launched for real (debug backend, tiny sizes): the dry-run table before
anything is made equals the table once the store exists (read from its meta.json) and the
parameter and token counts the trained runs wrote in metrics.jsonl."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from scaling.core.tables import human
from scaling.study.run import launch as launch_mod
from scaling.study.sweep.sweep import load_sweep
from tests.factories import TINY_VQVAE
from tests.paths import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_RUNS = {
    "length": {"epochs": 2},
    "optim": {"batch_size": 4},
    "runtime": {"tensorboard": False},
}


def _table(argv, capsys) -> tuple[dict[str, list[str]], str]:
    """The launch table's rows by run id (depth, N, tokens, FLOPs) and the whole output."""
    assert launch_mod.main(argv) == 0
    printed = capsys.readouterr()
    text = printed.out + printed.err  # the table on stdout, its warning on stderr
    rows = {
        p[0]: p[1:5]
        for p in (line.split() for line in text.splitlines())
        if p and re.fullmatch(r"d\d+", p[0])
    }
    warning = [line for line in text.splitlines() if "repeated data" in line]
    return rows, "\n".join(warning)


def _same_before_and_after(sweep_file, capsys) -> dict[str, list[str]]:
    before, warn_before = _table([str(sweep_file), "--dry-run"], capsys)
    assert launch_mod.main([str(sweep_file), "--backend", "debug"]) == 0
    capsys.readouterr()
    after, warn_after = _table([str(sweep_file), "--dry-run"], capsys)
    assert before == after and warn_before == warn_after
    sweep = load_sweep(sweep_file)
    for run in sweep.runs:  # what the trained run recorded, row by row
        last = json.loads((run.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert before[run.run_id][1] == f"{last['params']:,}"
        assert before[run.run_id][2] == human(last["tokens"])
    return before


def _write_folder(root, counts: dict[str, tuple[int, ...]]) -> None:
    rng = np.random.default_rng(0)
    for split, per_class in counts.items():
        for c, n in enumerate(per_class):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.random((20, 24, 3)) * 80 + 60 * c).astype("uint8")
                Image.fromarray(pixels).save(d / f"{i}.png")


def test_own_images_sweep_dry_run_is_the_real_run(tmp_path, capsys):
    """sweeps/own_images.yaml on a 3-class folder (15 train, 6 val images): the dry run counts
    the folder, so N (its class embedding) and the tokens are the runs' own."""
    _write_folder(tmp_path / "imgs", {"train": (5, 4, 6), "val": (2, 2, 2)})
    spec = yaml.safe_load((ROOT / "sweeps" / "own_images.yaml").read_text())
    spec.update(output=str(tmp_path / "out"), data={"images": str(tmp_path / "imgs")})
    spec["prepare"]["vqvae"] = TINY_VQVAE
    spec["prepare"]["tokenize"]["batch_size"] = 8
    spec["base"].update(TINY_RUNS)
    spec["grid"]["depth"] = [2, 1]
    spec["overrides"] = {d: v for d, v in spec["overrides"].items() if d in (1, 2)}
    spec["eval"] = {"points": 1}
    spec["cluster"]["backend"] = "debug"
    sweep_file = tmp_path / "own.yaml"
    sweep_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    rows = _same_before_and_after(sweep_file, capsys)
    # by hand: 2 epochs of 15 images at batch 4 = 8 steps = 32 images x 21 tokens
    assert rows["d1"][2] == human(32 * 21)
    meta = json.loads((tmp_path / "out" / "_data" / "tokens" / "meta.json").read_text())
    assert meta["num_classes"] == 3


def test_demo_dry_run_is_the_real_run(tmp_path, capsys):
    """sweeps/demo.yaml with its preparation shrunk: the numbers come from prepare.synthetic
    and prepare.vqvae alone (the demos write no data.expect)."""
    spec = yaml.safe_load((ROOT / "sweeps" / "demo.yaml").read_text())
    assert "data" not in spec
    spec["output"] = str(tmp_path / "out")
    spec["prepare"]["synthetic"].update(num_classes=3, train_per_class=4, val_per_class=2)
    spec["prepare"]["vqvae"] = TINY_VQVAE
    spec["prepare"].pop("classifier")
    spec["base"].update(TINY_RUNS)
    spec["base"].pop("samples")
    spec["grid"]["depth"] = [2, 1]
    spec["overrides"] = {d: v for d, v in spec["overrides"].items() if d in (1, 2)}
    spec["eval"] = {"points": 1}
    spec["cluster"]["backend"] = "debug"
    sweep_file = tmp_path / "demo.yaml"
    sweep_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    _same_before_and_after(sweep_file, capsys)
