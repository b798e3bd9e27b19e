"""Two tokenizer variants in one tiny sweep, launched for real (debug backend): each variant
is prepared once into its own folders, a launch interrupted after the first variant's
preparation resumes without redoing it, the runs of a variant share its store, the tidy
table knows the axis, and the dry run's numbers before anything exists are the real ones.

One module fixture makes the study (about 20 s on a CPU); the tests check what it left."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from analysis.results import read_runs
from scaling.core.tables import human
from scaling.study.run import launch as launch_mod
from scaling.study.run import prepare as prepare_mod
from scaling.study.run import submit as submit_mod
from scaling.study.run.local_jobs import StopFlag
from scaling.study.run.prepare import quality_line, stage_summary
from scaling.study.run.submit import Submitted, Submitter
from scaling.study.sweep.estimates import TOKEN_BYTES
from scaling.study.sweep.sweep import load_sweep
from tests.factories import SYNTHETIC, TINY_VQVAE, write_sweep

# vocabulary 16 on the recipe's scales; scales 1,2 (5 tokens, 8 px) on its vocabulary 32
VARIANTS = {"v16": {"vocab_size": 16}, "s12": {"patch_nums": [1, 2], "resolution": 8}}


@dataclasses.dataclass
class Study:
    path: Path
    out: Path
    dry_before: str
    dry_after: str
    first_calls: list[str]  # the stages run by the interrupted launch
    resumed_calls: list[str]  # by the relaunch
    idle_calls: list[str]  # by a third launch
    v16_files: dict[str, tuple]  # v16's VQVAE and store files after the first launch
    v16_files_after: dict[str, tuple]  # the same after the relaunch
    idle: Any  # the third launch's result


def _files(root: Path) -> dict[str, tuple]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    tmp = tmp_path_factory.mktemp("tokaxis")
    out = tmp / "out"
    path = write_sweep(
        tmp / "tok.yaml",
        out,
        name="tok",
        data=None,
        prepare={"synthetic": SYNTHETIC, "vqvae": TINY_VQVAE, "tokenize": {"batch_size": 8}},
        tokenizers=VARIANTS,
        base={"optim": {"batch_size": 4}, "length": {"steps": 6}},
        eval={"points": 2, "batch_size": 8},
        cluster={"backend": "debug"},
    )
    dry_before = launch_mod.dry_run(load_sweep(path), None, None, "debug")
    calls: list[str] = []
    interrupted: list[str] = []
    real = prepare_mod.run_stage

    def recording(sweep, stage, shard, report=None):
        calls.append(stage)
        if stage == "s12.vqvae" and not interrupted:
            interrupted.append(stage)
            raise KeyboardInterrupt  # the launcher stopped while it prepares the 2nd variant
        return real(sweep, stage, shard, report)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs on a loaded 2-core machine: one thread is faster
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prepare_mod, "run_stage", recording)
        with pytest.raises(KeyboardInterrupt):
            launch_mod.launch(load_sweep(path), backend="debug")
        first = list(calls)
        v16 = _files(out / "_data" / "v16")
        calls.clear()
        launch_mod.launch(load_sweep(path), backend="debug")
        resumed = list(calls)
        calls.clear()
        idle = launch_mod.launch(load_sweep(path), backend="debug")
        idle_calls = list(calls)
    torch.set_num_threads(threads)
    return Study(
        path=path,
        out=out,
        dry_before=dry_before,
        dry_after=launch_mod.dry_run(load_sweep(path), None, None, "debug"),
        first_calls=first,
        resumed_calls=resumed,
        idle_calls=idle_calls,
        v16_files=v16,
        v16_files_after=_files(out / "_data" / "v16"),
        idle=idle,
    )


def test_an_interrupted_launch_resumes_without_redoing_a_prepared_variant(study):
    assert study.first_calls == ["synthetic", "v16.vqvae", "v16.tokenize", "s12.vqvae"]
    assert {"vqvae/vqvae.pt", "tokens/meta.json"} <= set(study.v16_files)
    # the relaunch prepares only what was missing: s12; v16's files are untouched
    assert study.resumed_calls == ["s12.vqvae", "s12.tokenize", "v16.quality", "s12.quality"]
    after = study.v16_files_after
    assert {k: after[k] for k in study.v16_files} == study.v16_files  # then measured, below
    assert set(after) - set(study.v16_files) == {"vqvae/tokenizer_quality.json"}
    # a third launch has nothing to do
    assert study.idle_calls == [] and study.idle.submitted == []
    assert sorted(study.idle.skipped) == ["d1-s12", "d1-v16", "d2-s12", "d2-v16"]
    summary = stage_summary(load_sweep(study.path))
    stages = ("synthetic", "v16.vqvae", "v16.tokenize", "s12.vqvae", "s12.tokenize", "s12.quality")
    for stage in stages:
        assert f"{stage} done" in summary
    # status's tokenizer line: each variant's measured quality, named
    line = quality_line(load_sweep(study.path))
    assert line.startswith("v16: ") and "; s12: " in line


def test_variants_have_their_own_stores_and_runs_share_them(study):
    data = study.out / "_data"
    metas = {n: json.loads((data / n / "tokens" / "meta.json").read_text()) for n in VARIANTS}
    assert (metas["v16"]["vocab_size"], metas["v16"]["patch_nums"]) == (16, [1, 2, 4])
    assert (metas["s12"]["vocab_size"], metas["s12"]["patch_nums"]) == (32, [1, 2])
    # each store was tokenised by its own VQVAE
    for name, meta in metas.items():
        assert meta["vqvae_path"] == str((data / name / "vqvae" / "vqvae.pt").resolve())
    assert metas["v16"]["vqvae_sha256"] != metas["s12"]["vqvae_sha256"]
    for run_id in ("d1-v16", "d2-v16", "d1-s12", "d2-s12"):
        config = (study.out / run_id / "config.yaml").read_text()
        store = data / run_id.split("-")[1] / "tokens"
        assert f"store: {store.absolute()}" in config
        assert json.loads((study.out / run_id / "status.json").read_text())["state"] == "done"
    # the tidy table has the axis, one value per run
    table = read_runs(study.out)
    assert dict(zip(table["run"], table["grid.tokenizer"])) == {
        "d1-v16": "v16",
        "d2-v16": "v16",
        "d1-s12": "s12",
        "d2-s12": "s12",
    }


def _variant_rows(text: str) -> dict[str, list[str]]:
    """The dry run's tokenizer table: name -> vocab, scales, tokens/image, rows, size, runs,
    FLOPs (without the last column, which says where the numbers come from)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("tokenizer "))
    rows = {}
    for line in lines[start + 1 :]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) != 9:
            break
        rows[parts[0]] = parts[1:]
    return rows


def _run_rows(text: str) -> dict[str, list[str]]:
    return {
        p[0]: p[1:5]
        for p in (line.split() for line in text.splitlines())
        if p and re.fullmatch(r"d\d+-\w+", p[0])
    }


def test_dry_run_numbers_are_the_real_ones(study):
    before, after = _variant_rows(study.dry_before), _variant_rows(study.dry_after)
    assert [r[-1] for r in before.values()] == ["recipe", "recipe"]
    assert [r[-1] for r in after.values()] == ["store", "store"]
    assert {k: v[:-1] for k, v in before.items()} == {k: v[:-1] for k, v in after.items()}
    assert _run_rows(study.dry_before) == _run_rows(study.dry_after)
    data = study.out / "_data"
    for name, (vocab, scales, per_image, rows, size, runs, flops, _) in before.items():
        store = data / name / "tokens"
        arrays = [np.load(p, mmap_mode="r") for p in sorted(store.glob("*/*.npy"))]
        tokens = [a for a in arrays if a.dtype == np.uint16]
        # by hand: L = sum of squared scales; rows = 12 train + 6 val images, one view each
        L = sum(int(p) ** 2 for p in scales.split(","))
        assert per_image == str(L) and rows == "18" and runs == "2"
        assert [t.shape for t in tokens] == [(12, L), (6, L)]
        assert size == f"{sum(a.nbytes for a in arrays)} B" == f"{18 * (TOKEN_BYTES * L + 4)} B"
        assert vocab == str(json.loads((store / "meta.json").read_text())["vocab_size"])
        # the variant's FLOPs: its runs' own, as they recorded them
        recorded = 0.0
        for run_id in (f"d1-{name}", f"d2-{name}"):
            last = json.loads((study.out / run_id / "metrics.jsonl").read_text().splitlines()[-1])
            recorded += last["flops"]
            row = _run_rows(study.dry_before)[run_id]
            assert row[1] == f"{last['params']:,}" and row[2] == human(last["tokens"])
        assert flops == f"{recorded:.3g}"


class _FakeSlurm:
    """Stands for submitit's SLURM executors: records each job's name and dependencies."""

    def __init__(self):
        self.jobs: list[tuple[str, list[str], tuple]] = []  # (name, afterok ids, args)

    def executor_for(self, sweep, backend, res, name, dependency=None, **kw):
        fake = self

        class Ex:
            def submit(self, fn, *args):
                job_id = str(1000 + len(fake.jobs))
                fake.jobs.append((name, list(dependency or []), args))
                return SimpleNamespace(
                    job_id=job_id, paths=SimpleNamespace(stdout=Path("/dev/null"))
                )

            def map_array(self, fn, *lists):
                return [self.submit(fn, *args) for args in zip(*lists)]

        return Ex()


def test_on_slurm_each_variant_waits_only_for_what_it_reads(tmp_path, monkeypatch):
    """Stages after the images and their own VQVAE; runs after their own store only."""
    fake = _FakeSlurm()
    monkeypatch.setattr(submit_mod, "executor_for", fake.executor_for)

    def slurm_sweep(name: str) -> Path:
        return write_sweep(
            tmp_path / f"{name}.yaml",
            tmp_path / name,
            data=None,
            prepare={"synthetic": SYNTHETIC, "vqvae": TINY_VQVAE},
            tokenizers=VARIANTS,
            base={"optim": {"batch_size": 4}, "length": {"steps": 6}},
            eval={"points": 2, "batch_size": 8},
            cluster={"backend": "slurm"},
        )

    path = slurm_sweep("all")
    sweep = load_sweep(path)
    sub = Submitter(
        sweep, Submitted(backend="slurm"), lambda: print, lambda line: None, False, StopFlag()
    )
    deps = sub.stages(list(sweep.runs))
    ids = {args[1]: str(1000 + i) for i, (_, _, args) in enumerate(fake.jobs)}
    after = {args[1]: dep for _, dep, args in fake.jobs}
    syn = ids["synthetic"]
    assert after == {
        "synthetic": [],
        "v16.vqvae": [syn],
        "v16.tokenize": [syn, ids["v16.vqvae"]],
        "s12.vqvae": [syn],
        "s12.tokenize": [syn, ids["s12.vqvae"]],
        "v16.quality": [syn, ids["v16.vqvae"]],
        "s12.quality": [syn, ids["s12.vqvae"]],
    }
    assert deps == {"v16": [ids["v16.tokenize"]], "s12": [ids["s12.tokenize"]]}
    fake.jobs.clear()
    sub.runs(list(sweep.runs), deps)
    waits = {Path(args[0]).name: dep for _, dep, args in fake.jobs}
    assert waits == {
        "d1-v16": [ids["v16.tokenize"]],
        "d2-v16": [ids["v16.tokenize"]],
        "d1-s12": [ids["s12.tokenize"]],
        "d2-s12": [ids["s12.tokenize"]],
    }
    # a launch of some runs (--only '*-s12') prepares their variant only, and what is shared
    fake.jobs.clear()
    fresh = load_sweep(slurm_sweep("some"))
    sub = Submitter(
        fresh, Submitted(backend="slurm"), lambda: print, lambda line: None, False, StopFlag()
    )
    sub.stages(fresh.select(only="*-s12"))
    assert [args[1] for _, _, args in fake.jobs] == [
        "synthetic",
        "s12.vqvae",
        "s12.tokenize",
        "s12.quality",
    ]


def test_estimates_read_an_existing_checkpoint_not_imagenet(tmp_path):
    """data.vqvae (no variants) and a checkpoint variant: vocabulary, scales and code width
    are the checkpoint's own (written here), not the official VQVAE's 4096 / 1..16 / 32."""
    from var_core import VQVAE, save_model

    ckpt = tmp_path / "mine.pt"
    save_model(ckpt, VQVAE(vocab_size=40, z_channels=8, ch=32, ch_mult=(1, 2), patch_nums=(1, 3)))
    common = {
        "base": {"optim": {"batch_size": 4}, "length": {"steps": 6}},
        "eval": {"points": 2},
    }
    plain = load_sweep(
        write_sweep(
            tmp_path / "a.yaml",
            tmp_path / "a",
            data={"tokens": None, "images": "/i", "vqvae": str(ckpt)},
            **common,
        )
    )
    variant = load_sweep(
        write_sweep(
            tmp_path / "b.yaml",
            tmp_path / "b",
            data={"tokens": None, "images": "/i"},
            tokenizers={"mine": {"checkpoint": str(ckpt)}},
            **common,
        )
    )
    for sweep, name in ((plain, None), (variant, "mine")):
        meta = sweep.expected_meta(name)
        assert (meta["vocab_size"], meta["patch_nums"]) == (40, [1, 3])
        assert meta["vqvae_config"] == {"z_channels": 8}
        assert f"the VQVAE {ckpt} (read)" in sweep.expected_source(name)
    assert [r.run_id for r in variant.runs] == ["d1-mine", "d2-mine"]
