"""Commands that take what the user has: `--set KEY=VALUE` on launch (checked like the file,
new run ids for changed values, origin recorded), the sweep file or its runs folder for
launch, status and fit, the grid.yaml the tidy table reads its axes from, and the progress
the launcher relays from the preparation stages and the runs."""

from __future__ import annotations

import pytest
import yaml

from scaling.core.config_io import ConfigError
from scaling.core.rundir import RunDir
from scaling.core.tables import duration
from scaling.study.laws.fit import FitCLIError
from scaling.study.laws.fit import run as fit_run
from scaling.study.run import launch as launch_mod
from scaling.study.run import status as status_mod
from scaling.study.run.prepare import format_progress
from scaling.study.run.progress import progress_line
from scaling.study.sweep.sweep import load_sweep, load_sweep_or_runs
from scaling.training.config import load_run_config
from tests.factories import make_token_store, write_sweep


@pytest.fixture()
def sweep_file(tmp_path):
    """A sweep on a tiny store (nothing is trained here; the launcher checks the store)."""
    return write_sweep(
        tmp_path / "s.yaml",
        tmp_path / "out",
        name="two",
        store=make_token_store(tmp_path / "store"),
        base={
            "model": None,
            "optim": {"batch_size": 16, "base_lr": 0.005, "final_lr_frac": None},
            "length": {"steps": 4},
            "eval": {"points": 2},  # issue 13: no more evaluations than steps
            "runtime": None,
        },
        eval=None,
        grid={"depth": [1, 2], "optim.warmup_frac": [0.02, 0.1]},
        labels={"optim.warmup_frac": "wu"},
        cluster={"backend": "debug", "cpus_per_task": None},
    )


def _launch(sweep, **kw):
    """Launch without running anything (debug jobs run only when waited for)."""
    return launch_mod.launch(
        sweep, wait=False, job_factory=lambda: lambda d: d, log=lambda s: None, **kw
    )


def test_set_makes_new_run_ids_and_records_its_origin(sweep_file, tmp_path):
    plain = load_sweep(sweep_file)
    assert [r.run_id for r in plain.runs] == ["d1-wu0.02", "d1-wu0.1", "d2-wu0.02", "d2-wu0.1"]
    _launch(plain)
    before = {r.run_id: (r.run_dir / "config.yaml").read_text() for r in plain.runs}

    changed = load_sweep(sweep_file, ["optim.base_lr=3e-3", "length.steps=8"])
    assert [r.run_id for r in changed.runs] == [f"{r}-lr0.003-st8" for r in before]
    _launch(changed)
    for run in changed.runs:
        text = (run.run_dir / "config.yaml").read_text()
        assert text.startswith(
            "# optim.base_lr: 0.003 from the command line (--set optim.base_lr=3e-3)\n"
            "# length.steps: 8 from the command line (--set length.steps=8)\n"
        )
        config = load_run_config(run.run_dir / "config.yaml")
        assert (config.optim.base_lr, config.length.steps, config.run_id) == (3e-3, 8, run.run_id)
    for run_id, text in before.items():  # the earlier runs are untouched
        assert (tmp_path / "out" / run_id / "config.yaml").read_text() == text
    # a set that changes nothing keeps the ids (and so the runs)
    same = load_sweep(sweep_file, ["optim.base_lr=0.005"])
    assert [r.run_id for r in same.runs] == list(before) and all(not r.sets for r in same.runs)
    # grid.yaml: the axes, the set keys that changed runs among them, every run's values
    grid = yaml.safe_load((tmp_path / "out" / "grid.yaml").read_text())
    assert grid["axes"] == ["depth", "optim.warmup_frac", "optim.base_lr", "length.steps"]
    assert grid["labels"]["optim.warmup_frac"] == "wu" and grid["labels"]["optim.base_lr"] == "lr"
    assert grid["runs"]["d2-wu0.1-lr0.003-st8"] == {
        "depth": 2,
        "optim.warmup_frac": 0.1,
        "optim.base_lr": 0.003,
        "length.steps": 8,
    }
    assert grid["runs"]["d1-wu0.02"] == {
        "depth": 1,
        "optim.warmup_frac": 0.02,
        "optim.base_lr": 0.005,
        "length.steps": 4,
    }
    _launch(same)  # the plain runs again: every axis from their resolved configs
    again = yaml.safe_load((tmp_path / "out" / "grid.yaml").read_text())
    assert again["axes"] == grid["axes"] and again["runs"] == grid["runs"]


@pytest.mark.parametrize(
    "sets, message",
    [
        (
            ["optim.bse_lr=1e-3"],
            r"--set 'optim.bse_lr=1e-3': optim.bse_lr: unknown key \(did you mean 'base_lr'\?\)",
        ),
        (
            ["length.steps=many"],
            r"--set 'length.steps=many': length.steps: expected an integer, got 'many'",
        ),
        (["optim.base_lr=-1"], r"--set 'optim.base_lr=-1': optim.base_lr: must be > 0"),
        (["optim.warmup_frac=0.5"], r"optim.warmup_frac is the grid axis 'optim.warmup_frac'"),
        (["optim.base_lr"], r"--set 'optim.base_lr': expected KEY=VALUE"),
        (["cluster.backend=local"], r"only cluster.\{nodes, "),
    ],
)
def test_bad_sets_are_located_errors(sweep_file, sets, message, capsys):
    with pytest.raises(ConfigError, match=message):
        load_sweep(sweep_file, sets)
    argv = [str(sweep_file), "--dry-run"] + [a for s in sets for a in ("--set", s)]
    assert launch_mod.main(argv) == 2
    assert "--set" in capsys.readouterr().err


def test_launch_status_and_fit_take_the_runs_folder(sweep_file, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="no such sweep file or runs folder"):
        load_sweep_or_runs(tmp_path / "nothing")
    out.mkdir()
    with pytest.raises(ConfigError, match="a folder without sweep.yaml"):
        load_sweep_or_runs(out)
    assert status_mod.main([str(out)]) == 2
    assert "no run directories" in capsys.readouterr().err
    _launch(load_sweep(sweep_file))
    assert (out / "sweep.yaml").read_text() == sweep_file.read_text()
    from_folder = load_sweep_or_runs(out)
    assert [r.run_id for r in from_folder.runs] == [r.run_id for r in load_sweep(sweep_file).runs]
    assert status_mod.main([str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"two: 4 runs in {out} (") and "d2-wu0.1 " in text
    assert launch_mod.main([str(out), "--dry-run"]) == 0
    assert "sweep two: 4 runs" in capsys.readouterr().out
    # a copy whose output is elsewhere (launched from another directory) is refused, saying why
    moved = tmp_path / "moved"
    out.rename(moved)
    with pytest.raises(ConfigError, match="run from the directory it was launched from"):
        load_sweep_or_runs(moved)
    # fit: a sweep file means its output folder
    with pytest.raises(
        FitCLIError, match="output folder .* does not exist yet: launch the sweep first"
    ):
        fit_run([str(sweep_file)])


def test_progress_of_stages_and_runs_is_relayed(tmp_path):
    sweep_file = tmp_path / "p.yaml"
    write_sweep(
        sweep_file,
        tmp_path / "out",
        name="p",
        depths=(1,),
        data={"tokens": None},
        prepare={
            "synthetic": {
                "num_classes": 2,
                "train_per_class": 2,
                "val_per_class": 1,
                "resolution": 16,
            },
            "vqvae": {"resolution": 16, "steps": 10, "patch_nums": [1, 2, 4], "ch_mult": [1, 2, 2]},
        },
    )
    sweep = load_sweep(sweep_file)
    jobs = sweep.data_dir / "jobs"
    RunDir(jobs / "synthetic").update_status(state="done", job_ids=["5"])
    RunDir(jobs / "vqvae").update_status(
        state="running",
        job_ids=["6"],
        progress={
            "done": 200,
            "total": 500,
            "unit": "steps",
            "rate": 41.2,
            "rate_unit": "images/s",
            "eta_s": 440,
            "psnr": 19.84,
        },
    )
    RunDir(sweep.runs[0].run_dir).update_status(state="running", step=30, total_steps=120, eta_s=95)
    line = progress_line(sweep)
    assert line == (
        "prepare: synthetic done (job 5), vqvae running (job 6) [200/500 steps, 41 images/s, "
        "ETA 7m20s, PSNR 19.8 dB] | d1 25% ETA 1m35s"
    )
    assert (
        format_progress(
            {
                "done": 900,
                "total": 1000,
                "unit": "images",
                "rate": 2450.4,
                "rate_unit": "images/s",
                "eta_s": 0.04,
            }
        )
        == "900/1000 images, 2450 images/s, ETA 0s"
    )
    assert duration(3725) == "1h02m"
