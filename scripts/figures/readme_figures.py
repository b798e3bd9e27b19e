"""The README's and docs' demo tables and figures, all from one finished sweep in one run.

    .venv/bin/python scripts/figures/readme_figures.py runs/demo   # runs/demo/readme/
    .venv/bin/python scripts/figures/readme_figures.py runs/demo --out docs/img   # update the docs
    .venv/bin/python scripts/figures/readme_figures.py runs/demo_lr --out docs/img

Fits the folder exactly as the user commands do (`var-scaling fit RUNS`, its own fit.yaml
settings; for a study with other axes than size also `--set best_over=<axis>`), so the fits land
in their usual folders (`RUNS/fit/`, `RUNS/fit-best-over-lr/`). Then writes into `--out`
(default `RUNS/readme/`, never a tracked file unless asked):

- `<sweep>[_<view>]_fit_vs_N.png`, `..._fit_vs_Cmin.png`: the fits' full-size figures;
- `<sweep>_fits.md`: where the numbers come from (the sweep, its runs' code commit and dates,
  the machine that trained them, the results.csv hash), then every run's final test metrics
  and the tables the README quotes. tests/test_readme_numbers.py checks that every number
  of the README's demo table is the one this file holds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
from pathlib import Path

import matplotlib
import pandas as pd

from analysis.results import ResultsError
from contracts.grid import FILE as GRID_FILE
from contracts.grid import read_grid
from scaling.core.cli import run_cli, setup_logging
from scaling.study.laws.fit import run

ROOT = Path(__file__).resolve().parents[2]


def _views(runs: Path) -> list[tuple[str, list[str]]]:
    """('', []) and, per non-size axis of grid.yaml with several values, ('best_<label>', [...])."""
    grid = read_grid(runs / GRID_FILE)
    views = [("", [])]
    for axis in grid.axes:
        values = {repr(point.get(axis)) for point in grid.runs.values()}
        if axis not in ("depth", "seed") and len(values) > 1:
            label = grid.labels.get(axis, axis.split(".")[-1])
            views.append((f"best_{label}", ["--set", f"best_over={label}"]))
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


def _cpu() -> str:
    """The CPU model and core count (Linux /proc/cpuinfo; else what platform knows)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def _origin(runs: Path, run_ids: list[str]) -> list[str]:
    """Lines saying which code, when and on what the runs were trained (provenance.json)."""
    commits, times, machines = set(), [], set()
    for run_id in run_ids:
        try:
            jobs = json.loads((runs / run_id / "provenance.json").read_text())["jobs"]
        except (OSError, ValueError, KeyError):
            continue
        for job in jobs:
            code = job.get("code", {})
            commits.add((code.get("commit") or "?")[:10] + ("+dirty" if code.get("dirty") else ""))
            times.append(job.get("time_utc", "?"))
            gpus = (job.get("gpu") or {}).get("devices") or []
            machines.add(
                f"{job.get('platform', '?')}, {job.get('device', '?')}"
                + (f" ({', '.join(gpus)})" if gpus else "")
                + f", torch {job.get('packages', {}).get('torch', '?')}"
            )
    return [
        f"- trained by code {', '.join(sorted(commits)) or '?'}, jobs started "
        f"{min(times, default='?')} to {max(times, default='?')}",
        f"- on {'; '.join(sorted(machines)) or '?'}",
        f"- fitted on {platform.platform()} ({_cpu()}); the results depend on the CPU: the same "
        "commit on another machine gives slightly different numbers",
    ]


def _final_metrics(table_path: Path) -> list[str]:
    """Every run's final evaluation: N, tokens, ce_avg, ce_last, err_avg, err_last."""
    t = pd.read_csv(table_path)
    if "eval" in t.columns:
        t = t[t["eval"] != "subset"]
    final = t.sort_values("step").groupby("run").tail(1).sort_values(["params", "run"])
    lines = [
        "| run | N | tokens | ce_avg | ce_last | err_avg | err_last |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in final.itertuples():
        lines.append(
            f"| {r.run} | {int(r.params):,} | {int(r.tokens):,} | {r.ce_avg:.4f} "
            f"| {r.ce_last:.4f} | {r.err_avg:.4f} | {r.err_last:.4f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Fit every view of the runs folder as the CLI does; write the figures and the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="?", default="runs/demo", help="a finished sweep's runs folder")
    p.add_argument("--out", help="where the figures and tables go (default RUNS/readme)")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "readme"
    name = runs.name
    out.mkdir(parents=True, exist_ok=True)
    text: list[str] = []
    for i, (view, fit_args) in enumerate(_views(runs)):
        doc = run([str(runs), *fit_args])
        joint = doc.get("law") == "nd"
        axis = fit_args[1].split("=", 1)[1] if fit_args else None  # --set best_over=<axis>
        folder = "fit-nd" if joint else "fit" + (f"-best-over-{axis}" if axis else "")
        fitted = runs / folder
        sha = hashlib.sha256((fitted / "results.csv").read_bytes()).hexdigest()[:16]
        # the docs name the folder as a user has it (runs/<sweep>), never this machine's path
        command = "var-scaling fit " + " ".join([f"runs/{name}", *fit_args])
        if i == 0:
            run_ids = sorted({str(r) for r in pd.read_csv(fitted / "results.csv")["run"]})
            text += [
                f"# {name}: the numbers the README and docs quote",
                "",
                f"Made by `scripts/figures/readme_figures.py runs/{name}` from {doc['n_runs']} "
                "runs:",
                "",
                *_origin(runs, run_ids),
                "",
                "Final test metrics of every run:",
                "",
                *_final_metrics(fitted / "results.csv"),
                "",
            ]
        text += [
            f"`{command}` (results.csv sha256 {sha}..., fitted {doc['created_utc']}):",
            "",
            *((fitted / "fits.md").read_text().splitlines() if joint else _table(doc)),
            "",
        ]
        figures = (
            {"isoflop_ce_avg": "isoflop", "optimal_ce_avg": "optimal"}
            if joint
            else {f"fit_vs_{x}": f"{view + '_' if view else ''}fit_vs_{x}" for x in ("N", "Cmin")}
        )
        for src_name, dst_name in figures.items():
            src = fitted / f"{src_name}.png"
            if src.exists():
                dst = out / f"{name}_{dst_name}.png"
                shutil.copyfile(src, dst)
                print(f"wrote {dst}", file=sys.stderr)
    (out / f"{name}_fits.md").write_text("\n".join(text))
    print("\n".join(text))
    print(f"wrote {out / f'{name}_fits.md'}", file=sys.stderr)


if __name__ == "__main__":
    matplotlib.use("Agg")  # files only
    setup_logging()
    sys.exit(run_cli(lambda: main(), input_errors=(ResultsError,)))
