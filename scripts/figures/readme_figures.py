"""Regenerate the README's figures and tables from a finished sweep, all from the same run.

    python scripts/figures/readme_figures.py runs/demo        # the demo study
    python scripts/figures/readme_figures.py runs/demo_lr     # the lr study: per-lr and
    best-over-lr views

Runs `python -m scaling.fit` on the folder (its own fit.yaml settings) once per view: the
default view, and for a study with other axes than size also `--best-over <axis>` for each
such axis. Copies each view's full-size figures (150 dpi PNGs, 1650 px wide) to docs/img/
as <sweep>[_<view>]_fit_vs_N.png and ..._fit_vs_Cmin.png, and writes docs/img/<sweep>_fits.md:
the tables the README quotes, headed by where they come from (folder, number of runs, the
sha256 of the fitted results.csv and the fit's time), the same for every figure it wrote.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import matplotlib

from analysis.results import ResultsError
from contracts.grid import FILE as GRID_FILE
from contracts.grid import read_grid
from scaling.core.cli import run_cli, setup_logging
from scaling.study.laws.fit import run

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "img"


def _views(runs: Path) -> list[tuple[str, list[str]]]:
    """('', []) and, per non-size axis of grid.yaml with several values, ('best_<label>', [...])."""
    grid = read_grid(runs / GRID_FILE)
    views = [("", [])]
    for axis in grid.axes:
        values = {repr(point.get(axis)) for point in grid.runs.values()}
        if axis not in ("depth", "seed") and len(values) > 1:
            label = grid.labels.get(axis, axis.split(".")[-1])
            views.append((f"best_{label}", ["--best-over", label]))
    return views


def _table(doc: dict) -> list[str]:
    grouped = any(f.get("group_label") for f in doc["fits"])
    lines = [
        ("| group " if grouped else "") + "| metric | vs | E | alpha [95% CI] | beta | r |",
        ("|---" if grouped else "") + "|---|---|---|---|---|---|",
    ]
    for f in doc["fits"]:
        ci = f" [{f['alpha_ci'][0]:.3f}, {f['alpha_ci'][1]:.3f}]" if f["alpha_ci"] else ""
        E = f"{f['E']:.3f}" if abs(f["E"]) > 1e-9 else "0"
        lines.append(
            (f"| {f.get('group_label') or '-'} " if grouped else "")
            + f"| {f['metric']} | {f['against']} | {E} | {f['alpha']:.3f}{ci} "
            f"| {f['beta']:.3g} | {f['r']:.4f} |"
        )
    picked = [f for f in doc["fits"] if f.get("best_over") and f["against"] == "N"]
    if picked:
        axis = picked[0]["best_over"]["axis"]
        lines += [
            "",
            f"| metric | N | best {axis} | run | final value | other values |",
            "|---|---|---|---|---|---|",
        ]
        for f in picked:
            for p in f["best_over"]["picked"]:
                others = ", ".join(f"{c['value']:g}: {c[p['by']]:.4f}" for c in p["candidates"][1:])
                lines.append(
                    f"| {f['metric']} | {p['params']:,} | {p['value']:g} | {p['run']} "
                    f"| {p[p['by']]:.4f} | {others} |"
                )
    return lines


def main(runs_dir: str = "runs/demo") -> None:
    """Fit every view of `runs_dir` as the CLI does and write the README's figures and tables."""
    runs = Path(runs_dir)
    name = runs.name
    OUT.mkdir(parents=True, exist_ok=True)
    text: list[str] = []
    for view, args in _views(runs):
        out = runs / f"fit_readme{'_' + view if view else ''}"
        doc = run([str(runs), "--out", str(out), *args])
        sha = hashlib.sha256((out / "results.csv").read_bytes()).hexdigest()[:16]
        command = f"python -m scaling.fit {runs}" + (" " + " ".join(args) if args else "")
        text += [
            f"`{command}` ({doc['n_runs']} runs in {runs}, results.csv sha256 {sha}..., "
            f"fitted {doc['created_utc']}):",
            "",
            *_table(doc),
            "",
        ]
        for against in ("N", "Cmin"):
            src = out / f"fit_vs_{against}.png"
            if src.exists():
                dst = OUT / f"{name}{'_' + view if view else ''}_fit_vs_{against}.png"
                shutil.copyfile(src, dst)
                print(f"wrote {dst.relative_to(ROOT)}")
    (OUT / f"{name}_fits.md").write_text("\n".join(text))
    print("\n".join(text))
    print(f"wrote {(OUT / f'{name}_fits.md').relative_to(ROOT)}")


if __name__ == "__main__":
    matplotlib.use("Agg")  # files only
    setup_logging()
    sys.exit(run_cli(lambda: main(*sys.argv[1:]), input_errors=(ResultsError,)))
