"""The tokenizer demo's table and figure: per tokenizer its measured quality, its laws, bits
per image and sample metrics by size, and where the best tokenizer changes.

    .venv/bin/python scripts/figures/demo_tokenizers.py runs/demo_tokenizers   # RUNS/readme/
    .venv/bin/python scripts/figures/demo_tokenizers.py runs/demo_tokenizers --out docs/img

Fits the folder as a user does: `var-scaling fit RUNS` (its fit.yaml: one law per tokenizer)
and `var-scaling fit RUNS --set best_over=tokenizer --set best_by=bits_per_image` (the best
tokenizer per size and the crossover of the per-tokenizer laws with its interval). Writes
into `--out` (default RUNS/readme/, a tracked file only when asked):

- `demo_tokenizers.md`: where the numbers come from (code, dates, machine, the results.csv
  hashes), each tokenizer's quality (`tokenizer_quality.json`), the laws per tokenizer, every
  run's final bits per image, CE and sample metrics, the best tokenizer per size and the
  crossovers; tests/test_readme_numbers.py holds docs/studies.md and the README to it;
- `demo_tokenizers_vs_N.png`: bits per image and the samples' class accuracy against N, one
  line per tokenizer.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import matplotlib
import pandas as pd
from readme_figures import _origin  # type: ignore[import-not-found]  # same folder

from analysis.results import ResultsError
from scaling.core.cli import run_cli, setup_logging
from scaling.study.laws.fit import run

BEST = ["--set", "best_over=tokenizer", "--set", "best_by=bits_per_image"]
# the same picked by the samples' class error (a sample metric: fitted on the final points)
BEST_SAMPLES = [
    "--set",
    "metrics=[sample_err]",
    "--set",
    "best_over=tokenizer",
    "--set",
    "best_by=sample_err",
]
SAMPLES_FOLDER = "fit-best-over-tokenizer-by-sample_err"


def _final(table: pd.DataFrame) -> pd.DataFrame:
    """Each run's last full evaluation (with its sample-quality columns), by tokenizer, N."""
    t = table[table["eval"] != "subset"] if "eval" in table.columns else table
    t = t.sort_values("step").groupby("run").tail(1)
    return t.sort_values(["grid.tokenizer", "params"]).reset_index(drop=True)


def _g(v: float, digits: int = 3) -> str:
    return "-" if v is None or pd.isna(v) else f"{v:.{digits}g}"


def quality_rows(final: pd.DataFrame) -> list[str]:
    """One row per tokenizer: its tokenizer_quality.json as joined to the table."""
    lines = [
        "| tokenizer | V | L | PSNR (dB) | codebook usage per scale | code entropy per scale "
        "(bits) | unigram bits/image | recon FD | recon class acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tok, df in final.groupby("grid.tokenizer", sort=True):
        r = df.iloc[0]
        k = sorted(int(c.rsplit("s", 1)[1]) for c in df.columns if c.startswith("tok_usage_s"))
        usage = " / ".join(f"{r['tok_usage_s' + str(i)]:.2f}" for i in k)
        entropy = " / ".join(f"{r['tok_entropy_bits_s' + str(i)]:.2f}" for i in k)
        lines.append(
            f"| {tok} | {int(r['tok_vocab'])} | {int(r['tok_L'])} | {r['tok_psnr']:.2f} "
            f"| {usage} | {entropy} "
            f"| {r['tok_entropy_bits_image']:.1f} | {_g(r['tok_recon_fd'])} "
            f"| {_g(r['tok_recon_acc'])} |"
        )
    return lines


def run_rows(final: pd.DataFrame) -> list[str]:
    """Every run's final bits per image, CE, error and sample metrics, by tokenizer and N."""
    lines = [
        "| tokenizer | run | N | bits/image | ce_avg | err_avg | sample class acc | sample FD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in final.iterrows():
        lines.append(
            f"| {r['grid.tokenizer']} | {r['run']} | {int(r['params']):,} "
            f"| {r['bits_per_image']:.2f} | {r['ce_avg']:.4f} | {r['err_avg']:.4f} "
            f"| {_g(r.get('sample_acc'))} | {_g(r.get('sample_fd'))} |"
        )
    return lines


def law_rows(doc: dict) -> list[str]:
    """The laws per tokenizer: exponent with its interval and E, per metric and x."""
    lines = [
        "| tokenizer | metric | vs | alpha | alpha interval | E | r |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in sorted(doc["fits"], key=lambda f: (f["group_label"] or "", f["metric"], f["against"])):
        ci = f.get("alpha_ci")
        lines.append(
            f"| {(f['group_label'] or '-').split('=')[-1]} | {f['metric']} | {f['against']} "
            f"| {f['alpha']:.3g} | {f'[{ci[0]:.3g}, {ci[1]:.3g}]' if ci else 'n/a'} "
            f"| {f['E']:.4g} | {_g(f.get('r'))} |"
        )
    return lines


def best_rows(doc: dict, by: str) -> list[str]:
    """The tokenizer picked per size by `by`, and the crossovers."""
    lines = [f"| depth | best tokenizer | N | {by} | other |", "|---|---|---|---|---|"]
    law = next(f for f in doc["fits"] if f["against"] == "N" and f.get("best_over"))
    for p in law["best_over"]["picked"]:
        others = ", ".join(f"{c['value']}: {c[by]:.4g}" for c in p["candidates"][1:])
        depth = p["run"].split("-")[0]
        lines.append(f"| {depth} | {p['value']} | {p['params']:,} | {p[by]:.4g} | {others} |")
    lines += [
        "",
        "| vs | crossover | interval | draws crossing | laws (alpha, E) |",
        "|---|---|---|---|---|",
    ]
    for c in doc.get("crossovers", []):
        unit = "params" if c["against"] == "N" else "FLOPs"
        laws = "; ".join(f"{v['value']}: {v['alpha']:.3g}, {v['E']:.4g}" for v in c["laws"])
        for x in c["crossovers"] or [None]:
            if x is None:
                lines.append(f"| {c['against']} | none within 10x of the range | - | - | {laws} |")
                continue
            where = f"{x['below']} -> {x['above']} at {x['x_raw']:.2g} {unit}" + (
                "" if x["inside_measured_range"] else " (extrapolated)"
            )
            ci = (
                f"[{x['ci_raw'][0]:.2g}, {x['ci_raw'][1]:.2g}]"
                if x["ci_raw"]
                else f"n/a ({x.get('ci_note')})"
            )
            share = _g(x["crossing_share"], 2)
            lines.append(f"| {c['against']} | {where} | {ci} | {share} | {laws} |")
    return lines


def figure(final: pd.DataFrame, path: Path) -> None:
    """Bits per image and class accuracy of samples against N, one line per tokenizer."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for tok, df in final.groupby("grid.tokenizer", sort=True):
        n = df["params"].to_numpy(float)
        axes[0].plot(n, df["bits_per_image"], "o-", label=str(tok))
        if "sample_acc" in df.columns:
            axes[1].plot(n, df["sample_acc"], "o-", label=str(tok))
    for ax, title in (
        (axes[0], "test loss in bits per image (final evaluation)"),
        (axes[1], "class accuracy of samples (demo classifier)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("N (parameters)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
    axes[0].legend(fontsize=8, title="tokenizer", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")


def main(argv: list[str] | None = None) -> None:
    """Fit the two views, write demo_tokenizers.md and the figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="?", default="runs/demo_tokenizers")
    p.add_argument("--out", help="where the figure and table go (default RUNS/readme)")
    args = p.parse_args(argv)
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "readme"
    out.mkdir(parents=True, exist_ok=True)
    per_tok = run([str(runs)])
    best = run([str(runs), *BEST])
    by_samples = run([str(runs), *BEST_SAMPLES, "--out", str(runs / SAMPLES_FOLDER)])
    csv = runs / "fit" / "results.csv"
    final = _final(pd.read_csv(csv))
    sha = hashlib.sha256(csv.read_bytes()).hexdigest()[:16]
    name = runs.name
    text = [
        f"# {name}: the numbers docs/studies.md and the README quote",
        "",
        f"Made by `scripts/figures/demo_tokenizers.py runs/{name}` from {per_tok['n_runs']} runs:",
        "",
        *_origin(runs, sorted(final["run"].astype(str))),
        "",
        "Each tokenizer's quality (tokenizer_quality.json, on the 500 val images):",
        "",
        *quality_rows(final),
        "",
        "Every run's final evaluation:",
        "",
        *run_rows(final),
        "",
        f"`var-scaling fit runs/{name}` (results.csv sha256 {sha}..., fitted "
        f"{per_tok['created_utc']}), one law per tokenizer:",
        "",
        *law_rows(per_tok),
        "",
        f"`var-scaling fit runs/{name} {' '.join(BEST)}` (fitted {best['created_utc']}): the "
        "best tokenizer per size, and where the lowest per-tokenizer law changes:",
        "",
        *best_rows(best, "bits_per_image"),
        "",
        f"`var-scaling fit runs/{name} {' '.join(BEST_SAMPLES)}` (fitted "
        f"{by_samples['created_utc']}): the same, picked by the samples' class error "
        "(sample_err = 1 - class accuracy, 500 samples per run):",
        "",
        *best_rows(by_samples, "sample_err"),
        "",
    ]
    (out / f"{name}.md").write_text("\n".join(text))
    figure(final, out / f"{name}_vs_N.png")
    print("\n".join(text))
    print(f"wrote {out / f'{name}.md'}, {out / f'{name}_vs_N.png'}", file=sys.stderr)


if __name__ == "__main__":
    matplotlib.use("Agg")  # files only
    setup_logging()
    sys.exit(run_cli(lambda: main(), input_errors=(ResultsError,)))
