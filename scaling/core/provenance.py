"""Where a run came from: `provenance.json` in every run directory.

    {"format": "var-scaling-provenance/1",
     "launch": {...},          # written by the launcher when it submits the run (latest submit)
     "jobs": [{...}, ...]}     # appended by the training job at each start (first start, resumes)

Each record (`collect`) holds: `code` (the git commit of the toolkit's checkout, whether the
tree was dirty and the SHA-256 of `git diff HEAD` when it was, the package version), the
Python version, the versions of torch, numpy, submitit (and the other libraries that shape
results), the host, the GPU type (jobs), the command line and working directory, the SLURM job
id when there is one, and the time. The launch record adds the sweep file and its SHA-256.

`code_identity` reduces a run's provenance to the code that produced it (the latest job's,
else the launch's), so `scaling.status` can warn when runs of one sweep came from different
code. Nothing here imports torch at module load; `collect(gpu=True)` asks torch for the GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_write_json
from contracts.jsondoc import utc_now

FORMAT = "var-scaling-provenance/1"
FILENAME = "provenance.json"
# the libraries whose versions can change a run's numbers or its files
PACKAGES = ("var-scaling", "torch", "numpy", "submitit", "scipy", "pandas", "tensorboard", "wandb")
MAX_JOBS = 100  # job records kept per run (a run requeued more often keeps the latest)


def code_root() -> Path:
    """The folder holding the toolkit's packages (scaling/, var_core/, analysis/)."""
    return Path(__file__).resolve().parents[2]  # scaling/core/provenance.py -> the checkout


def _git(root: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def git_state(root: Path | None = None) -> dict[str, Any]:
    """{"commit", "dirty", "diff_sha256", "root"} of the checkout at `root` (default: this code).

    `dirty`: tracked files differ from the commit (untracked files are not counted);
    `diff_sha256`: SHA-256 of `git diff HEAD` (binary-safe) when dirty, else None. When the
    code is not a git checkout (an installed package) commit and dirty are None and `note`
    says why.
    """
    root = code_root() if root is None else Path(root)
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return {
            "root": str(root),
            "commit": None,
            "dirty": None,
            "diff_sha256": None,
            "note": "not a git checkout (or git is not installed)",
        }
    if Path(top.stdout.decode().strip()).resolve() != root.resolve():
        return {
            "root": str(root),
            "commit": None,
            "dirty": None,
            "diff_sha256": None,
            "note": f"the code lies inside another repository ({top.stdout.decode().strip()})",
        }
    head = _git(root, "rev-parse", "HEAD")
    commit = head.stdout.decode().strip() if head is not None and head.returncode == 0 else None
    diff = _git(root, "diff", "HEAD", "--binary")
    if diff is None or diff.returncode != 0:
        return {
            "root": str(root),
            "commit": commit,
            "dirty": None,
            "diff_sha256": None,
            "note": "git diff failed",
        }
    dirty = bool(diff.stdout)
    return {
        "root": str(root),
        "commit": commit,
        "dirty": dirty,
        "diff_sha256": hashlib.sha256(diff.stdout).hexdigest() if dirty else None,
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """{distribution: version} of the installed packages (None: not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_info() -> dict[str, Any]:
    """The accelerators torch sees: {"cuda": version or None, "devices": [names]}."""
    try:
        import torch
    except ImportError:
        return {"cuda": None, "devices": []}
    if not torch.cuda.is_available():
        return {"cuda": None, "devices": []}
    return {
        "cuda": torch.version.cuda,
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def collect(*, gpu: bool = False, argv: list[str] | None = None) -> dict[str, Any]:
    """One provenance record for this process (see the module docstring)."""
    rec: dict[str, Any] = {
        "time_utc": utc_now(),
        "code": git_state(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "command": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    if gpu:
        rec["gpu"] = gpu_info()
    return rec


def read(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's provenance ({} when it has none; ValueError when it is corrupt)."""
    path = Path(run_dir) / FILENAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt provenance file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a provenance file of this toolkit "
            f"(format {data.get('format') if isinstance(data, dict) else None!r})"
        )
    return data


def _write(run_dir: Path, data: dict[str, Any]) -> None:
    data["format"] = FORMAT
    atomic_write_json(run_dir / FILENAME, data)


def record_launch(run_dir: str | Path, sweep_file: str | Path | None) -> dict[str, Any]:
    """The launcher: record this submission (code, versions, command, sweep file hash)."""
    run_dir = Path(run_dir)
    data = read(run_dir)
    rec = collect()
    if sweep_file is not None and Path(sweep_file).is_file():
        rec["sweep_file"] = str(Path(sweep_file).resolve())
        rec["sweep_sha256"] = sha256_file(sweep_file)
    data["launch"] = rec
    _write(run_dir, data)
    return rec


def record_job(run_dir: str | Path, **extra: Any) -> dict[str, Any]:
    """The training job: append this start (code, versions, host, GPU, command) to the run's
    provenance; `extra` (e.g. step, world size) is stored with it."""
    run_dir = Path(run_dir)
    data = read(run_dir)
    rec = {**collect(gpu=True), **extra}
    data["jobs"] = (list(data.get("jobs") or []) + [rec])[-MAX_JOBS:]
    _write(run_dir, data)
    return rec


def code_identity(prov: dict[str, Any]) -> str | None:
    """A short text naming the code of a run: 'abc1234' or 'abc1234+dirty(1a2b3c4d)'.

    Taken from the latest job (what actually trained), else the launch; None when unknown.
    """
    recs = list(prov.get("jobs") or [])
    rec = recs[-1] if recs else prov.get("launch")
    if not rec:
        return None
    code = rec.get("code") or {}
    commit = code.get("commit")
    if commit is None:
        version = (rec.get("packages") or {}).get("var-scaling")
        return f"package {version}" if version else None
    ident = commit[:10]
    if code.get("dirty"):
        ident += f"+dirty({(code.get('diff_sha256') or '?')[:8]})"
    return ident


def mixed_code_warning(identities: dict[str, str | None]) -> str | None:
    """A warning when the runs {run_id: code identity} were produced by different code."""
    groups: dict[str, list[str]] = {}
    for run_id, ident in identities.items():
        if ident is not None:
            groups.setdefault(ident, []).append(run_id)
    if len(groups) < 2:
        return None
    parts = [
        f"{ident}: {', '.join(sorted(runs))}"
        for ident, runs in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]
    return (
        "warning: runs of this sweep were produced by different code (provenance.json): "
        + "; ".join(parts)
    )
