"""Provenance of a run (git state of the code, versions, host, command, sweep hash), and
`scaling.status` over many sweeps: one table, --json, --watch, the mixed-code warning."""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from scaling.core import provenance
from scaling.core.rundir import RunDir
from scaling.study.run import status as status_mod
from tests.factories import line_of, write_sweep
from tests.paths import ROOT


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_tells_clean_dirty_and_which_diff(tmp_path):
    repo = tmp_path / "code"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-qm", "one")
    clean = provenance.git_state(repo)
    assert clean["commit"] == _git(repo, "rev-parse", "HEAD") and clean["dirty"] is False
    assert clean["diff_sha256"] is None
    (repo / "untracked.txt").write_text("not counted\n")
    assert provenance.git_state(repo)["dirty"] is False
    (repo / "a.py").write_text("x = 2\n")
    first = provenance.git_state(repo)
    (repo / "a.py").write_text("x = 3\n")
    second = provenance.git_state(repo)
    (repo / "a.py").write_text("x = 2\n")
    again = provenance.git_state(repo)
    assert first["dirty"] and second["dirty"] and len(first["diff_sha256"]) == 64
    assert first["diff_sha256"] != second["diff_sha256"]  # another change, another hash
    assert again["diff_sha256"] == first["diff_sha256"]  # the same change, the same hash
    (repo / "a.py").write_text("x = 1\n")
    assert provenance.git_state(repo)["dirty"] is False
    # a folder that is not its own checkout is not attributed to an enclosing repository
    (repo / "pkg").mkdir()
    inner = provenance.git_state(repo / "pkg")
    assert inner["commit"] is None and "another repository" in inner["note"]
    assert provenance.git_state(tmp_path / "nowhere")["commit"] is None


def test_launch_and_job_records(tmp_path):
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_bytes(b"name: s\n# any bytes\n")
    run_dir = tmp_path / "out" / "d1"
    run_dir.mkdir(parents=True)
    provenance.record_launch(run_dir, sweep_file)
    provenance.record_job(run_dir, world_size=1)
    provenance.record_job(run_dir, world_size=2)
    prov = json.loads((run_dir / "provenance.json").read_text())
    launch = prov["launch"]
    assert launch["sweep_sha256"] == hashlib.sha256(sweep_file.read_bytes()).hexdigest()
    assert launch["sweep_file"] == str(sweep_file.resolve())
    assert launch["python"] == platform.python_version()
    assert launch["command"] == sys.argv
    assert [j["world_size"] for j in prov["jobs"]] == [1, 2]
    import torch

    job = prov["jobs"][-1]
    assert job["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert job["packages"]["numpy"] == numpy.__version__
    assert "devices" in job["gpu"] and job["host"]
    if (ROOT / ".git").exists():  # a checkout: the commit is the checkout's
        assert job["code"]["commit"] == _git(ROOT, "rev-parse", "HEAD")
    (run_dir / "provenance.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"provenance.json: corrupt"):
        provenance.read(run_dir)


def _run(
    root: Path,
    sweep: str,
    run_id: str,
    state: str,
    commit: str | None,
    *,
    dirty: bool = False,
    ce: float | None = None,
) -> Path:
    d = root / sweep / run_id
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"run_id: {run_id}\n")
    RunDir(d).update_status(state=state, total_steps=100)
    if ce is not None:
        (d / "metrics.jsonl").write_text(
            json.dumps(
                {
                    "step": 50,
                    "tokens": 1000,
                    "ce_avg": ce,
                    "ce_last": ce + 0.1,
                    "err_avg": 0.5,
                    "err_last": 0.6,
                }
            )
            + "\n"
        )
    if commit is not None:
        code = {"commit": commit, "dirty": dirty, "diff_sha256": "ab" * 32 if dirty else None}
        (d / "provenance.json").write_text(
            json.dumps({"format": provenance.FORMAT, "jobs": [{"code": code, "packages": {}}]})
        )
    return d


def test_status_of_a_folder_of_sweeps_one_table_json_and_code_warning(tmp_path, capsys):
    runs = tmp_path / "runs"
    _run(runs, "a", "d1", "done", "1" * 40, ce=3.5)
    _run(runs, "a", "d2", "done", "1" * 40, ce=3.25)
    _run(runs, "b", "d1", "done", "1" * 40, ce=3.0)
    _run(runs, "b", "d2", "done", "1" * 40, dirty=True, ce=2.75)
    _run(runs, "b", "d3", "pending", None)
    (runs / "b" / "fit").mkdir()  # not a run directory (no config.yaml)
    (runs / "notes").mkdir()  # not a sweep
    assert status_mod.main([str(runs)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "2 sweeps, 5 runs (4 done, 1 pending)"
    assert "a: 2 runs" in out and "b: 3 runs" in out
    # only sweep b mixes code: one commit clean, the same commit with a diff
    warnings = [ln for ln in lines if ln.startswith("warning:")]
    assert len(warnings) == 1 and "1111111111+dirty(abababab): d2" in warnings[0]
    assert "1111111111: d1" in warnings[0]
    header = next(ln for ln in lines if ln.startswith("sweep"))
    assert header.split()[:3] == ["sweep", "run", "state"]
    table = lines[lines.index(header) + 1 :]
    assert [(r.split()[0], r.split()[1]) for r in table] == [
        ("a", "d1"),
        ("a", "d2"),
        ("b", "d1"),
        ("b", "d2"),
        ("b", "d3"),
    ]
    assert "ce_avg 2.7500" in table[3]

    assert status_mod.main([str(runs), "--json", "--only", "d1,d2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {s["name"]: s for s in doc["sweeps"]}
    assert sorted(by_name) == ["a", "b"]
    b = by_name["b"]
    assert [r["run"] for r in b["runs"]] == ["d1", "d2"] and b["counts"] == {"done": 2}
    assert b["runs"][1]["metrics"]["ce_avg"] == 2.75 and b["runs"][1]["percent"] == 50.0
    assert b["runs"][1]["code"] == "1111111111+dirty(abababab)" and b["code_warning"]
    assert by_name["a"]["code_warning"] is None

    # two sweep folders named one by one give the same report
    assert status_mod.main([str(runs / "a"), str(runs / "b"), "--json"]) == 0
    doc2 = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in doc2["sweeps"]] == ["a", "b"]


def test_status_bad_input(tmp_path, capsys):
    assert status_mod.main([str(tmp_path / "missing")]) == 2
    assert "missing: no such sweep file or runs folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert status_mod.main([str(tmp_path / "empty")]) == 2
    assert "no run directories" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    write_sweep(bad, "o", depths=(1,), bogus=1)
    assert status_mod.main([str(bad)]) == 2
    assert f"bad.yaml:{line_of(bad.read_text(), 'bogus')}: bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        status_mod.main([str(tmp_path), "--watch", "0"])
    assert "--watch" in capsys.readouterr().err
    _run(tmp_path / "runs", "a", "d1", "done", None)
    (tmp_path / "runs" / "a" / "d1" / "provenance.json").write_text("[]")
    assert status_mod.main([str(tmp_path / "runs" / "a"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sweeps"][0]["runs"][0]["code"].startswith("unreadable")


def test_status_watch_refreshes(tmp_path):
    runs = tmp_path / "runs"
    d = _run(runs, "a", "d1", "running", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaling.status", str(runs / "a"), "--json", "--watch", "0.2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(proc.stdout.readline())
        RunDir(d).update_status(state="done")
        for _ in range(100):  # later refreshes see the change
            doc = json.loads(proc.stdout.readline())
            if doc["sweeps"][0]["runs"][0]["state"] == "done":
                break
        else:
            pytest.fail("--watch never showed the run as done")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (
        first["sweeps"][0]["runs"][0]["state"] == "orphaned"
    )  # running without a job: gone (issue 13)


def test_a_failed_multi_process_run_shows_the_rank_that_failed_first(tmp_path, capsys):
    """rank_errors/ (contracts.rank_errors): the status line and --json name the latest
    attempt's earliest error, not rank 0's echo of it nor an older attempt's."""
    d = _run(tmp_path / "runs", "a", "d1", "failed", None)
    RunDir(d).update_status(error="RuntimeError: a peer died")
    folder = RunDir(d).rank_errors
    folder.mkdir()
    for rank, time, attempt, error in (
        (2, 10.0, "5.0", "OSError: first attempt"),
        (1, 50.0, "5.1", "ValueError: injected crash"),
        (0, 80.0, "5.1", "RuntimeError: a peer died"),
    ):
        (folder / f"rank{rank}.json").write_text(
            json.dumps(
                {"rank": rank, "host": f"n{rank}", "time": time, "attempt": attempt, "error": error}
            )
        )
    assert status_mod.main([str(tmp_path / "runs" / "a")]) == 0
    assert "rank 1 on n1: ValueError: injected crash" in capsys.readouterr().out
    assert status_mod.main([str(tmp_path / "runs" / "a"), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["sweeps"][0]["runs"][0]["first_error"]
    assert (first["rank"], first["attempt"], first["error"]) == (
        1,
        "5.1",
        "ValueError: injected crash",
    )
    (folder / "rank0.json").write_text('{"rank": 0, "host": "n0"}')  # not a record
    assert status_mod.main([str(tmp_path / "runs" / "a")]) == 2
    assert "rank0.json: time: missing" in capsys.readouterr().err
