"""Where `fit` writes: one folder per view of the study, named by what the command did.

    fit/                   laws vs N and Cmin (one per value of any other axis)
    fit-best-over-lr/      each size at its best value of an axis (--set best_over=lr)
    fit-pooled/            one law through every axis value (--set pool=true)
    fit-nd/                the joint law L(N, D) (--set law=nd), with its bootstrap draws
    fit-nd-repeat/         the repetition-aware joint law L(N, D') (--set law=nd-repeat)
    fit-per-scale/         the laws of each scale's loss (--set per_scale=true)
    optimal-1e13/          --optimal-for 1e13, answered from fit-nd/'s saved law and draws

A runs directory gets them inside it (`runs/demo/fit/`); a table gets them beside it
(`results.csv` -> `results_fit/`). A rerun of the same command replaces only its own folder
(`contracts.atomic.replacing_folder`); other settings (bootstrap, hold-out, metrics...)
refine a view and rerun into its folder, `--out` writes anywhere else. Two studies compared
go to `compare_<A>_vs_<B>/`, a plan to `<sweep output>/plan/`.
"""

from __future__ import annotations

from pathlib import Path

from analysis.settings import FitSettings


def fit_folder_name(settings: FitSettings) -> str:
    """`fit`, `fit-best-over-<axis>`, `fit-pooled`, `fit-nd`, `fit-nd-repeat` or
    `fit-per-scale`: the view the settings fit."""
    if settings.law in ("nd", "nd-repeat"):
        return f"fit-{settings.law}"
    if settings.per_scale:
        return "fit-per-scale"
    if settings.best_over is not None:
        return f"fit-best-over-{_safe(settings.best_over)}"
    if settings.pool:
        return "fit-pooled"
    return "fit"


def optimal_folder_name(budget: float) -> str:
    """`optimal-1e13` for a budget of 1e13 FLOPs (3 significant digits: `optimal-2.5e14`)."""
    text = f"{budget:.3g}".replace("e+", "e").replace("e0", "e")
    return f"optimal-{text}"


def default_folder(source: Path, name: str) -> Path:
    """`<runs_dir>/<name>` for a runs directory, `<table stem>_<name>` beside a table file."""
    if source.is_dir():
        return source / name
    return source.parent / f"{source.name.split('.')[0]}_{name}"


def _safe(text: str) -> str:
    """An axis label as a folder-name part: `optim.base_lr` -> `optim.base_lr`, `a/b` -> `a-b`."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
