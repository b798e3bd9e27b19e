"""The README's and docs' demo tables and figures, all from one finished sweep in one run.

    .venv/bin/python scripts/figures/readme_figures.py runs/demo   # runs/demo/readme/
    .venv/bin/python scripts/figures/readme_figures.py runs/demo --out docs/img   # update the docs
    .venv/bin/python scripts/figures/readme_figures.py runs/demo_lr --out docs/img
    .venv/bin/python scripts/figures/readme_figures.py runs/demo \
        --seeds runs/demo_seed1 runs/demo_seed2 --out docs/img   # + the spread over seeds

Fits the folder exactly as the user commands do (`var-scaling fit RUNS`, its own fit.yaml
settings; for a study with other axes than size also `--set best_over=<axis>`), so the fits land
in their usual folders (`RUNS/fit/`, `RUNS/fit-best-over-lr/`). Then writes into `--out`
(default `RUNS/readme/`, never a tracked file unless asked):

- `<sweep>[_<view>]_fit_vs_N.png`, `..._fit_vs_Cmin.png`: the fits' full-size figures;
- `<sweep>_fits.md`: where the numbers come from (the sweep, its runs' code commit and dates,
  the machine that trained them, the results.csv hash), then every run's final test metrics
  and the tables the README quotes. tests/test_readme_numbers.py checks that every number
  of the README's demo table is the one this file holds.

With `--seeds`, the same sweep run again with every seed changed (the synthetic images, the
VQVAE, the crop views, the classifier, the training: the whole pipeline), each folder is
fitted the same way and `<sweep>_fits.md` also holds the spread over the pipelines: every
run's final metrics and every law's exponent and E as mean +- sd (min to max), each folder's
seeds, code and dates, and the table the README quotes (seed-0 fit with its interval beside
the spread). The fits write into each folder: give copies of shared folders.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pandas as pd
import yaml
from scipy.stats import chi2

from analysis.results import ResultsError
from contracts.grid import FILE as GRID_FILE
from contracts.grid import read_grid
from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.study.laws.fit import run
from scaling.study.laws.folders import optimal_folder_name
from scaling.study.sweep.sweep import load_sweep

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


def _ci(f: dict) -> str:
    """` [lo, hi]` of alpha, or ` n/a (why)` where the fit gave no interval."""
    if f["alpha_ci"]:
        return f" [{f['alpha_ci'][0]:.3f}, {f['alpha_ci'][1]:.3f}]"
    why = (f.get("ci") or {}).get("not_given")
    return f" n/a ({why})" if why else " n/a"


def _table(doc: dict) -> list[str]:
    grouped = any(f.get("group_label") for f in doc["fits"])
    lines = [
        ("| group " if grouped else "") + "| metric | vs | E | alpha [95% CI] | beta | r |",
        ("|---" if grouped else "") + "|---|---|---|---|---|---|",
    ]
    for f in doc["fits"]:
        ci = _ci(f)
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


def _provenance_jobs(runs: Path, run_ids: list[str]) -> Iterator[dict]:
    """Every job record of the runs' provenance.json files (a run without one is skipped)."""
    for run_id in run_ids:
        try:
            yield from json.loads((runs / run_id / "provenance.json").read_text())["jobs"]
        except (OSError, ValueError, KeyError):
            continue


def _origin(runs: Path, run_ids: list[str]) -> list[str]:
    """Lines saying which code, when and on what the runs were trained (provenance.json)."""
    commits, first, last = _jobs(runs, run_ids)
    machines = set()
    for job in _provenance_jobs(runs, run_ids):
        gpus = (job.get("gpu") or {}).get("devices") or []
        machines.add(
            f"{job.get('platform', '?')}, {job.get('device', '?')}"
            + (f" ({', '.join(gpus)})" if gpus else "")
            + f", torch {job.get('packages', {}).get('torch', '?')}"
        )
    return [
        f"- trained by code {commits}, jobs started {first} to {last}",
        f"- on {'; '.join(sorted(machines)) or '?'}",
        f"- fitted on {platform.platform()} ({_cpu()}); the results depend on the CPU: the same "
        "commit on another machine gives slightly different numbers",
    ]


def _final_metrics(table_path: Path) -> list[str]:
    """Every run's final evaluation: N, tokens, ce_avg, ce_last, err_avg, err_last."""
    final = _final_table(table_path)
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


def _final_table(table_path: Path) -> pd.DataFrame:
    """The last full evaluation of every run (rows sorted by size)."""
    t = pd.read_csv(table_path)
    if "eval" in t.columns:
        t = t[t["eval"] != "subset"]
    return t.sort_values("step").groupby("run").tail(1).sort_values(["params", "run"])


def _seeds(runs: Path) -> str:
    """The seeds of every stage of the pipeline that made `runs` (as recorded by the stages
    where they record one, else the sweep's prepare: section), one short string."""
    prepare = load_sweep(runs / "sweep.yaml").spec.prepare
    vqvae = yaml.safe_load((runs / "_data" / "vqvae" / "config.yaml").read_text()).get("seed", "?")
    training = sorted(
        {
            yaml.safe_load(c.read_text()).get("seed")
            for c in runs.glob("*/config.yaml")
            if not c.parent.name.startswith("_")
        },
        key=str,
    )
    return (
        f"synthetic {prepare.synthetic.seed}, VQVAE {vqvae}, "
        f"views {prepare.tokenize.view_seed}, classifier {prepare.classifier.seed}, "
        f"training {', '.join(map(str, training))}"
    )


def _jobs(runs: Path, run_ids: list[str]) -> tuple[str, str, str]:
    """(code commits, first job start, last job start) of the runs (provenance.json)."""
    commits, times = set(), []
    for job in _provenance_jobs(runs, run_ids):
        code = job.get("code", {})
        commits.add((code.get("commit") or "?")[:10] + ("+dirty" if code.get("dirty") else ""))
        times.append(job.get("time_utc", "?"))
    return ", ".join(sorted(commits)) or "?", min(times, default="?"), max(times, default="?")


def spread(values: list[float], digits: int) -> str:
    """`mean +- sd (min to max)` of a few values; sd with n - 1 in the denominator."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    f = f".{digits}f"
    return f"{mean:{f}} \u00b1 {sd:{f}} ({min(values):{f}} to {max(values):{f}})"


def sd_interval_factors(n: int, level: float = 0.95) -> tuple[float, float]:
    """(lo, hi): for n normal draws with sample sd s (n - 1 denominator), [lo s, hi s] holds
    the true sd with probability `level` (the chi-square interval, n - 1 degrees of freedom)."""
    if n < 2:
        raise ValueError(f"an sd interval needs at least 2 values, got {n}")
    tail = (1 - level) / 2
    return (
        math.sqrt((n - 1) / chi2.ppf(1 - tail, n - 1)),
        math.sqrt((n - 1) / chi2.ppf(tail, n - 1)),
    )


def _e_spread(fits: list[dict]) -> str:
    """E's spread over the pipelines, or the value it was held at where no fit fitted it."""
    if all(f.get("E_mode") == "fit" for f in fits):
        return spread([f["E"] for f in fits], 3)
    held = sorted({f"{f['E']:g}" for f in fits})
    return f"held at {', '.join(held)}"


def _law_key(f: dict) -> tuple:
    return (f.get("group_label") or "", f["metric"], f["against"])


def _spread_section(name: str, folders: list[tuple[Path, dict]]) -> list[str]:
    """The spread over pipelines: each folder's seeds, code and dates, every run's final
    metrics and every law's alpha and E as mean +- sd (min to max), and the README's table.
    `folders`: (runs folder, its fits.json document), the main folder first."""
    k = len(folders)
    lo, hi = sd_interval_factors(k)
    finals = [_final_table(runs / "fit" / "results.csv") for runs, _ in folders]
    lines = [
        f"## Spread over {k} pipelines",
        "",
        f"The same sweep run {k} times with every seed changed (synthetic images, VQVAE, crop "
        "views, classifier, training) and fitted the same way. Each cell is `mean \u00b1 sd "
        f"(min to max)` over the {k} pipelines, sd with {k} - 1 in the denominator. {k} "
        "pipelines are a small sample: for normally distributed results the true sd lies "
        f"between {lo:.2f} and {hi:.1f} times the sd shown (95% chi-square interval).",
        "",
        "| folder | seeds | code | jobs started | results.csv sha256 |",
        "|---|---|---|---|---|",
    ]
    for (runs, _), final in zip(folders, finals):
        commits, first, last = _jobs(runs, sorted(str(r) for r in final["run"]))
        sha = hashlib.sha256((runs / "fit" / "results.csv").read_bytes()).hexdigest()[:16]
        lines.append(
            f"| runs/{runs.name} | {_seeds(runs)} | {commits} | {first} to {last} | {sha}... |"
        )
    metrics = ["ce_avg", "ce_last", "err_avg", "err_last"]
    lines += [
        "",
        "Final test metrics of every run:",
        "",
        "| run | N | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    runs_in_all = [r for r in finals[0]["run"] if all((f["run"] == r).any() for f in finals)]
    for run_id in runs_in_all:
        rows = [f[f["run"] == run_id].iloc[0] for f in finals]
        cells = [spread([float(r[m]) for r in rows], 4) for m in metrics]
        lines.append(f"| {run_id} | {int(rows[0]['params']):,} | " + " | ".join(cells) + " |")
    by_law = [{_law_key(f): f for f in doc["fits"]} for _, doc in folders]
    laws = [key for key in by_law[0] if all(key in other for other in by_law)]
    grouped = any(key[0] for key in laws)
    lines += [
        "",
        f"The table the README quotes: the laws of runs/{folders[0][0].name} with their 95% "
        f"interval, beside alpha, E and r over the {k} pipelines:",
        "",
        ("| group " if grouped else "")
        + f"| metric | vs | alpha [95% CI], runs/{folders[0][0].name} "
        f"| alpha over {k} pipelines | E over {k} pipelines | r, min to max |",
        ("|---" if grouped else "") + "|---|---|---|---|---|---|",
    ]
    for key in laws:
        f0 = by_law[0][key]
        ci = _ci(f0)
        fits = [law[key] for law in by_law]
        rs = [f["r"] for f in fits]
        lines.append(
            (f"| {key[0] or '-'} " if grouped else "")
            + f"| {key[1]} | {key[2]} | {f0['alpha']:.3f}{ci} "
            f"| {spread([f['alpha'] for f in fits], 3)} "
            f"| {_e_spread(fits)} "
            f"| {min(rs):.4f} to {max(rs):.4f} |"
        )
    return lines


def _joint_extras(doc: dict) -> list[str]:
    """The joint fit's compute model over the runs and its hold-out points, one line each."""
    lines = []
    for law in doc["joint"]:
        cm = law.get("compute_model") or {}
        if cm and not lines:
            lines += [
                f"Compute over these runs: C = {cm['k']:.2f} N^{cm['gamma']:.3f} D (tokens), "
                f"exact FLOPs, to within {100 * cm['max_rel_error_on_runs']:.2f}% on every run.",
                "",
            ]
        ho = law.get("holdout")
        if ho:
            cells = ", ".join(f"{p['run']} {100 * p['rel_error']:+.1f}%" for p in ho["points"])
            lines.append(
                f"- {law['metric']}: fitted without N = {ho['held_out_N']:,.0f}, the relative "
                f"error of its points: {cells}"
            )
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    """Fit every view of the runs folder as the CLI does; write the figures and the tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="?", default="runs/demo", help="a finished sweep's runs folder")
    p.add_argument("--out", help="where the figures and tables go (default RUNS/readme)")
    p.add_argument(
        "--seeds",
        nargs="+",
        default=[],
        metavar="RUNS",
        help="the same sweep run with other seeds (copies: the fit writes into them); adds the "
        "spread over all the folders to the results file",
    )
    p.add_argument(
        "--optimal-for",
        metavar="C",
        help="for a sweep fitted with the joint law: also `var-scaling fit RUNS --optimal-for C`",
    )
    args = p.parse_args(argv)
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "readme"
    name = runs.name
    out.mkdir(parents=True, exist_ok=True)
    # the docs name the folders as a user has them (runs/<sweep>), never this machine's paths
    made_by = " ".join(
        ["scripts/figures/readme_figures.py", f"runs/{name}"]
        + (["--seeds", *(f"runs/{Path(s).name}" for s in args.seeds)] if args.seeds else [])
        + (["--optimal-for", args.optimal_for] if args.optimal_for else [])
    )
    text: list[str] = []
    for i, (view, fit_args) in enumerate(_views(runs)):
        doc = run([str(runs), *fit_args])
        joint = doc.get("law") == "nd"
        if i == 0:
            main_doc = doc
        axis = fit_args[1].split("=", 1)[1] if fit_args else None  # --set best_over=<axis>
        folder = "fit-nd" if joint else "fit" + (f"-best-over-{axis}" if axis else "")
        fitted = runs / folder
        sha = hashlib.sha256((fitted / "results.csv").read_bytes()).hexdigest()[:16]
        command = "var-scaling fit " + " ".join([f"runs/{name}", *fit_args])
        if i == 0:
            run_ids = sorted({str(r) for r in pd.read_csv(fitted / "results.csv")["run"]})
            text += [
                f"# {name}: the numbers the README and docs quote",
                "",
                f"Made by `{made_by}` from {doc['n_runs']} runs:",
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
            *(_joint_extras(doc) if joint else []),
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
    if args.optimal_for:
        if main_doc.get("law") != "nd":
            raise InputError(
                f"--optimal-for: {runs} is not fitted with the joint law (fit: law: nd)"
            )
        opt = run([str(runs), "--optimal-for", args.optimal_for])
        text += [
            f"`var-scaling fit runs/{name} --optimal-for {args.optimal_for}` (reuses the joint "
            f"fit above; answered {opt.get('created_utc', '?')}):",
            "",
            "```",
            *(runs / optimal_folder_name(float(args.optimal_for)) / "optimal.md")
            .read_text()
            .splitlines(),
            "```",
            "",
        ]
    if args.seeds:
        if main_doc.get("law") == "nd":
            raise InputError(f"--seeds: {runs} is fitted with the joint law; give a size sweep")
        folders = [(runs, main_doc)] + [(Path(s), run([s])) for s in args.seeds]
        text += _spread_section(name, folders) + [""]
    (out / f"{name}_fits.md").write_text("\n".join(text))
    print("\n".join(text))
    print(f"wrote {out / f'{name}_fits.md'}", file=sys.stderr)


if __name__ == "__main__":
    matplotlib.use("Agg")  # files only
    setup_logging()
    sys.exit(run_cli(lambda: main(), input_errors=(ResultsError,)))
