"""The data-constrained demo's results file and figures, from one finished sweep.

    .venv/bin/python scripts/figures/demo_data_figures.py runs/demo_data  # -> RUNS/readme/
    .venv/bin/python scripts/figures/demo_data_figures.py runs/demo_data --out docs/img \
        --time-log launch_time.txt --load-log load.txt

Fits the folder as a user does (`python -m scaling.fit RUNS --set law=nd-repeat`, into
`RUNS/fit-nd-repeat/`), then writes into `--out` (default `RUNS/readme/`):

- `demo_data_epochs.png`: the price of repetition. Final test loss (ce_avg) against epochs
  at fixed compute: every run of one size sees the same D images, from subsets of U = D /
  epochs images; one line per D (four data amounts: the parents and their decay branches),
  filled markers k4 (4 stored views per image), open k1 (one); the fitted laws dashed and
  dotted. Two fits: on every run (the user's command), and before the rise (`before_the_rise`:
  the runs where more repeats still helped), into `RUNS/before-rise/`.
- `demo_data_effective.png`, `demo_data_effective_all.png`: effective against nominal data
  (D'/U against D/U), the nd-repeat fit's own figure (`effective_data_ce_avg.png`), of the
  fit before the rise and of the fit on every run.
- `demo_data_fits.md`: where the numbers come from (the runs' code commit and job dates, the
  machine, the launch's wall time and the machine's load average while it ran, when given),
  the fit's table (R*, V* with intervals) and every run's final point. The README and
  docs/studies.md quote it (tests/test_readme_numbers.py checks that they do).

`--time-log`: the output of GNU `time -v` around the launch (its wall clock is quoted);
`--load-log`: lines `HH:MM:SS load1 load5 load15` sampled while the study ran.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from readme_figures import _origin  # type: ignore[import-not-found]  # same folder

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from analysis.repeatlaw import RepeatLaw  # noqa: E402

FIT_DIR = "fit-nd-repeat"
FIT_COMMAND = "python -m scaling.fit {runs} --set law=nd-repeat"


def fit(runs: Path) -> dict:
    """Run the user's fit command on `runs`; returns its fits.json."""
    subprocess.run(
        [sys.executable, "-m", "scaling.fit", str(runs), "--set", "law=nd-repeat"], check=True
    )
    return json.loads((runs / FIT_DIR / "fits.json").read_text())


def before_the_rise(runs: Path, out: Path) -> dict:
    """The second view: the same law fitted only where more repeats still helped. For each
    (size, subset, views) the runs are ordered by D and kept up to the one with the lowest
    final ce_avg (a later, larger D whose loss is higher has left the diminishing-returns
    regime the law describes: the model memorises its few images and its test loss rises).
    Uses only the runs' own losses, never the law. Writes the kept rows as a table and fits
    it as a user would (`scaling.fit TABLE --set law=nd-repeat`); returns its fits.json."""
    table = pd.read_csv(runs / FIT_DIR / "results.csv")
    final = final_points(runs)
    keep = []
    for _, group in final.groupby(["params", "unique_tokens", "views"]):
        group = group.sort_values("tokens")
        best = group["tokens"].iloc[int(np.argmin(group["ce_avg"].to_numpy()))]
        keep += group.loc[group["tokens"] <= best, "run"].tolist()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "before_the_rise.csv"
    table[table["run"].isin(keep)].to_csv(path, index=False)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scaling.fit",
            str(path),
            "--set",
            "law=nd-repeat",
            "--set",
            "metrics=[ce_avg,ce_last]",
            "--set",
            "bootstrap=200",
            "--out",
            str(out / FIT_DIR),
        ],
        check=True,
    )
    return json.loads((out / FIT_DIR / "fits.json").read_text())


def final_points(runs: Path) -> pd.DataFrame:
    """The last full evaluation of every run, from the fit's results.csv (with the runs'
    unique_tokens and views): run, params, tokens, unique_tokens, views, ce_avg, ce_last,
    epochs = tokens / unique_tokens."""
    t = pd.read_csv(runs / FIT_DIR / "results.csv")
    if "eval" in t.columns:
        t = t[t["eval"] != "subset"]
    t = t.sort_values("step").groupby("run").tail(1).copy()
    t["epochs"] = t["tokens"] / t["unique_tokens"]
    return t.sort_values(["params", "tokens", "unique_tokens", "views"]).reset_index(drop=True)


def law_of(doc: dict, metric: str) -> RepeatLaw:
    """The fitted nd-repeat law of `metric` from fits.json."""
    rec = next(r for r in doc["joint"] if r["metric"] == metric)
    return RepeatLaw(
        E=rec["E"],
        A=rec["A"],
        alpha=rec["alpha"],
        B=rec["B"],
        beta=rec["beta"],
        R_star=rec.get("R_star"),
        V_star=rec.get("V_star"),
    )


def plot_epochs(
    points: pd.DataFrame, law: RepeatLaw, every: RepeatLaw, metric: str, path: Path
) -> None:
    """Loss against epochs at fixed compute: one panel per size, one colour per D; `law`
    (fitted before the rise) dashed, `every` (fitted on every run) dotted."""
    sizes = sorted(points["params"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.2), squeeze=False)
    amounts = sorted(points["tokens"].unique())
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, len(amounts)))
    for ax, N in zip(axes[0], sizes, strict=True):
        at = points[points["params"] == N]
        for D, colour in zip(amounts, colours, strict=True):
            for K, fill in ((1, "none"), (int(at["views"].max()), colour)):
                pts = at[(at["tokens"] == D) & (at["views"] == K)].sort_values("epochs")
                if pts.empty:
                    continue
                ax.plot(
                    pts["epochs"],
                    pts[metric],
                    "o-" if K > 1 else "o:",
                    color=colour,
                    mfc=fill,
                    label=f"D = {D / 1e3:.0f}K tokens, K = {K}",
                )
                lo, hi = pts["epochs"].min(), pts["epochs"].max()
                epochs = np.geomspace(lo, hi, 60)
                U = D / epochs
                ax.plot(epochs, law.predict(N, D, U, K), "--", color=colour, lw=0.8, alpha=0.8)
                if K == 1:
                    ax.plot(epochs, every.predict(N, D, U, K), ":", color="grey", lw=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("epochs (D / U) at fixed D: smaller subsets, more repeats")
        ax.set_ylabel(f"final test {metric} (nats/token)")
        ax.set_title(f"N = {int(N):,} parameters")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "The price of repetition: the same compute on fewer unique images\n"
        f"dashed: the law fitted before the rise (R* = {law.R_star:.3g}); grey dotted: "
        f"fitted on every run (R* = {every.R_star:.3g}, K = 1)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


def wall_and_load(time_log: Path | None, load_log: Path | None) -> list[str]:
    """The launch's wall clock (GNU time -v) and the load average while it ran."""
    lines = []
    if time_log is not None:
        m = re.search(r"Elapsed \(wall clock\) time.*?: ([\d:.]+)", time_log.read_text())
        if m:
            lines.append(f"- the launch (prepare and all runs) took {m[1]} wall clock")
    if load_log is not None:
        loads = [float(line.split()[1]) for line in load_log.read_text().splitlines() if line]
        if loads:
            lines.append(
                f"- 1-minute load average of the 2-core machine while it ran (other work "
                f"beside it): mean {np.mean(loads):.1f}, min {min(loads):.1f}, max "
                f"{max(loads):.1f} ({len(loads)} samples, one a minute)"
            )
    return lines


def run_table(points: pd.DataFrame, kept: set[str]) -> list[str]:
    """Every run's final point; runs in `kept` starred."""
    lines = [
        "| run | N | D (tokens) | U (tokens) | views | epochs | ce_avg | ce_last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in points.itertuples():
        lines.append(
            f"| {r.run}{' *' if r.run in kept else ''} | {int(r.params):,} | {int(r.tokens):,} "
            f"| {int(r.unique_tokens):,} "
            f"| {int(r.views)} | {r.epochs:.3g} | {r.ce_avg:.4f} | {r.ce_last:.4f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Fit, draw and write the results file."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--time-log", type=Path, default=None)
    p.add_argument("--load-log", type=Path, default=None)
    p.add_argument("--launch", default="var-scaling launch sweeps/demo_data.yaml --wait")
    a = p.parse_args(argv)
    out = a.out or a.runs / "readme"
    out.mkdir(parents=True, exist_ok=True)
    doc = fit(a.runs)
    rise = a.runs / "before-rise"
    early = before_the_rise(a.runs, rise)
    points = final_points(a.runs)
    kept = set(pd.read_csv(rise / "before_the_rise.csv")["run"])
    plot_epochs(
        points,
        law_of(early, "ce_avg"),
        law_of(doc, "ce_avg"),
        "ce_avg",
        out / "demo_data_epochs.png",
    )
    for folder, name in (
        (rise, "demo_data_effective.png"),
        (a.runs, "demo_data_effective_all.png"),
    ):
        effective = folder / FIT_DIR / "effective_data_ce_avg.png"
        if effective.exists():
            shutil.copyfile(effective, out / name)
    fits_md = (a.runs / FIT_DIR / "fits.md").read_text()
    early_md = (rise / FIT_DIR / "fits.md").read_text()
    text = [
        "# sweeps/demo_data.yaml: repeated images and stored views (R*, V*)",
        "",
        "Made by `scripts/figures/demo_data_figures.py` from one finished run of the sweep.",
        "",
        f"- launched with `{a.launch}` (`nice -n 10`)",
        *wall_and_load(a.time_log, a.load_log),
        *_origin(a.runs, points["run"].tolist()),
        f"- fitted with `{FIT_COMMAND.format(runs=a.runs.name)}` (fits.json in "
        f"`{a.runs.name}/{FIT_DIR}/`)",
        "",
        "## The fit on every run",
        "",
        fits_md.strip(),
        "",
        "## The fit before the rise",
        "",
        f"The {len(kept)} runs where more repeats still helped: for each (size, subset, views) "
        "the data amounts up to the one with the lowest final ce_avg (`before_the_rise` in "
        "the script; the runs' own losses decide, not the law), fitted with "
        f"`python -m scaling.fit {rise.name}/before_the_rise.csv --set law=nd-repeat "
        "--set metrics=[ce_avg,ce_last] --set bootstrap=200`.",
        "",
        early_md.strip(),
        "",
        "## Every run's final point (* : in the fit before the rise)",
        "",
        *run_table(points, kept),
        "",
    ]
    (out / "demo_data_fits.md").write_text("\n".join(text))
    print(f"wrote {out}/demo_data_fits.md, demo_data_epochs.png, demo_data_effective.png")


if __name__ == "__main__":
    main()
