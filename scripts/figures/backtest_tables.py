"""The backtest tables the README and docs/forecasts.md quote, from finished sweeps.

    .venv/bin/python scripts/figures/backtest_tables.py runs/demo runs/demo_wsd  # runs/backtests.md
    .venv/bin/python scripts/figures/backtest_tables.py runs/demo runs/demo_wsd --out docs/img

Backtests each folder exactly as a user does (`var-scaling fit RUNS --set backtest=true`, the
folder's own fit.yaml settings), then writes `backtests.md` into `--out` (default: beside the
first folder, never a tracked file unless asked): per study, where its numbers come from (the
runs' code and dates, the machine), the `ce_avg` rows of the leave-future-out table (the
full table is the fit's backtest.md), and the whole-curve forecasts per law; one
line per table row, with a `study` column, so that tests/test_readme_numbers.py can check
that every row the README quotes is one of them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import matplotlib
from readme_figures import _origin  # type: ignore[import-not-found]  # same folder

from analysis.results import ResultsError
from scaling.core.cli import run_cli, setup_logging
from scaling.study.laws.fit import run

METRIC = "ce_avg"


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _power_rows(name: str, doc: dict) -> list[str]:
    """The leave-future-out table of METRIC: per axis and factor bin."""
    out = []
    for r in doc["power_summary"]:
        if r["metric"] != METRIC:
            continue
        hi = "" if math.isinf(r["factor_hi"]) else f"{r['factor_hi']:g}"
        out.append(
            f"| {name} | {r['against']} | x{r['factor_lo']:g}-{hi} | {r['n']} "
            f"| {_pct(r['median_abs_rel_error'])} | {_pct(r['max_abs_rel_error'])} |"
        )
    return out


def _curve_rows(name: str, label: str, summary: dict) -> list[str]:
    return [
        f"| {name} | {label} | {law} | {s['n']} | {_pct(s['mean_abs_rel_error'])} "
        f"| {_pct(s['max_abs_rel_error'])} | {round(s['coverage'] * s['n'])} of {s['n']} |"
        for law, s in summary.items()
        if s.get("n")
    ]


def main(argv: list[str] | None = None) -> None:
    """Backtest every folder as the CLI does and write backtests.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="finished sweeps' runs folders")
    p.add_argument("--out", help="where backtests.md goes (default: the first folder's parent)")
    args = p.parse_args(argv)
    folders = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else folders[0].parent
    names = " ".join(f"runs/{f.name}" for f in folders)
    head = [
        "# Backtests of the demos: the numbers the README and docs/forecasts.md quote",
        "",
        f"Made by `scripts/figures/backtest_tables.py {names}`: each folder backtested with "
        "`var-scaling fit runs/NAME --set backtest=true` (its own fit.yaml settings).",
        "",
    ]
    power = [
        f"Leave-future-out, {METRIC} (factor: target size / largest fitted size, or target "
        "compute / cut):",
        "",
        "| study | vs | factor | predictions | median abs. rel. error | max abs. rel. error |",
        "|---|---|---|---|---|---|",
    ]
    curves = [
        f"Whole-curve forecasts of {METRIC}, 95% prediction intervals:",
        "",
        "| study | forecast | law | forecasts | mean abs. rel. error | max abs. rel. error "
        "| inside the interval |",
        "|---|---|---|---|---|---|---|",
    ]
    origin: list[str] = []
    for folder in folders:
        name = folder.name
        fit_doc = run([str(folder), "--set", "backtest=true"])
        fitted = folder / ("fit-nd" if fit_doc.get("law") == "nd" else "fit")
        doc = json.loads((fitted / "backtest.json").read_text())
        run_ids = sorted(p.name for p in folder.iterdir() if (p / "provenance.json").exists())
        origin += [
            f"`runs/{name}` ({len(run_ids)} runs, backtested {fit_doc['created_utc']}):",
            "",
            *_origin(folder, run_ids),
            "",
        ]
        power += _power_rows(name, doc)
        c = doc["curve"]
        curves += _curve_rows(
            name, f"a run's end from its first {100 * c['frac']:.0f}%", c["summary"]
        )
        b = doc["branch"]
        curves += _curve_rows(
            name, "a decay branch's end from its parent's constant phase", b["summary"]
        )
        fork = b.get("at_fork", {}).get("summary", {})
        curves += _curve_rows(name, "the same, from the parent's evaluations before the fork", fork)
    text = [*head, *origin, *power, "", *curves, ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtests.md").write_text("\n".join(text))
    print("\n".join(text))
    print(f"wrote {out / 'backtests.md'}", file=sys.stderr)


if __name__ == "__main__":
    matplotlib.use("Agg")  # files only
    setup_logging()
    sys.exit(run_cli(lambda: main(), input_errors=(ResultsError,)))
