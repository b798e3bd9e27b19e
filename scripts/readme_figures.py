"""Regenerate the README's demo figures from a finished demo sweep.

    python scripts/readme_figures.py [runs/demo]

Fits the sweep's results with its own fit settings (runs/demo/fit.yaml) and writes small
PNGs to docs/img/ (demo_fit_vs_N.png, demo_fit_vs_Cmin.png) plus docs/img/demo_fits.md, the
table the README quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from analysis import plots, powerlaw, results  # noqa: E402
from scaling.fit import load_fit_settings  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"


def main(runs_dir: str = "runs/demo") -> None:
    runs = Path(runs_dir)
    settings = load_fit_settings(runs)
    table = results.prepare(results.read_runs(runs), settings.metrics, compute=settings.compute)
    fits = powerlaw.fit_all(table, settings.metrics, irreducible=settings.irreducible,
                            bootstrap=settings.bootstrap, seed=settings.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    for against, fig in (("N", plots.plot_vs_n([f for f in fits if f.against == "N"])),
                         ("Cmin", plots.plot_vs_cmin([f for f in fits if f.against == "Cmin"], table))):
        fig.savefig(OUT / f"demo_fit_vs_{against}.png", dpi=60, bbox_inches="tight")
    lines = ["| metric | vs | E | alpha [95% CI] | beta | r |", "|---|---|---|---|---|---|"]
    for f in fits:
        ci = f"[{f.alpha_ci[0]:.3f}, {f.alpha_ci[1]:.3f}]" if f.alpha_ci else ""
        E = f"{f.law.E:.3f}" if f.law.E else "0"
        lines.append(f"| {f.metric} | {f.against} | {E} | {f.law.alpha:.3f} {ci} | "
                     f"{f.law.beta:.3g} | {f.r:.4f} |")
    (OUT / "demo_fits.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT}/demo_fit_vs_N.png, demo_fit_vs_Cmin.png, demo_fits.md")


if __name__ == "__main__":
    main(*sys.argv[1:])
