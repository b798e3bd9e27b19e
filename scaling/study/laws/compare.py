"""``python -m scaling.fit STUDY_A STUDY_B``: fit two studies and compare their laws.

Each study (a runs directory or a tidy table) is fitted exactly as ``scaling.fit`` fits one
(its own fit.yaml defaults, the same command-line flags), into ``<out>/<name>/``; study B's
bootstrap uses the seed after A's, so the two bootstraps are independent. Then, in ``<out>``
(default ``compare_<A>_vs_<B>`` beside study A):

    compare.json      per (metric, x): both exponents with intervals, alpha_B - alpha_A with
                      its bootstrap interval, the share of draws with alpha_B < alpha_A
    compare.md        the same as a Markdown table (also printed)
    compare_vs_N.png/pdf, compare_vs_Cmin.png/pdf
                      both studies' points, laws and bootstrap bands in one figure per x

The science is in ``analysis.compare``; this module is the command-line glue (no torch).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from analysis.compare import compare_fits, markdown
from analysis.fitting import StudyFit
from contracts.atomic import atomic_write_text
from contracts.compare import FILE, ComparedStudy, CompareFile, write_compare
from contracts.jsondoc import utc_now
from scaling.core.cli import InputError

# one study from a command line: (its fits.json document, its fit; None for a joint law)
FitOne = Callable[[list[str]], tuple[dict, StudyFit | None]]


def _study_names(sources: list[str]) -> tuple[str, str]:
    paths = [Path(s).resolve() for s in sources]
    names = [p.name.split(".")[0] for p in paths]
    if names[0] == names[1]:
        names = [f"{p.parent.name}_{n}" for p, n in zip(paths, names)]
    if names[0] == names[1]:
        names = [f"{n}_{tag}" for n, tag in zip(names, "AB")]
    return names[0], names[1]


def _flags(argv: list[str], sources: list[str]) -> list[str]:
    """The command line without the two sources and --out (applied per study)."""
    out, skip = [], False
    rest = list(argv)
    for s in sources:  # the positional arguments, once each
        if s in rest:
            rest.remove(s)
    for a in rest:
        if skip:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        if a.startswith("--out="):
            continue
        out.append(a)
    return out


def compare_studies(args: argparse.Namespace, argv: list[str] | None, fit_one: FitOne) -> dict:
    """Fit both studies of `args.source` with `fit_one` (`scaling.study.laws.fit.fit_one`: this
    module cannot import the CLI that imports it) and write the comparison; returns compare.json."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a_src, b_src = args.source
    for src in (a_src, b_src):
        if not Path(src).exists():
            raise InputError(f"{src}: no such runs directory or table file")
    if Path(a_src).resolve() == Path(b_src).resolve():
        raise InputError(f"{a_src} and {b_src} are the same study; give two different ones")
    names = _study_names([a_src, b_src])
    out = (
        Path(args.out)
        if args.out
        else Path(a_src).resolve().parent / f"compare_{names[0]}_vs_{names[1]}"
    )
    flags = _flags(argv, [a_src, b_src])
    print(f"== study A: {names[0]} ({a_src})")
    doc_a, fit_a = fit_one([a_src, *flags, "--out", str(out / names[0])])
    seed_b = int(doc_a["settings"]["seed"]) + 1  # independent bootstraps
    print(f"== study B: {names[1]} ({b_src})")
    # a later --set wins: study B's bootstrap seed follows A's
    doc_b, fit_b = fit_one([b_src, *flags, "--out", str(out / names[1]), "--set", f"seed={seed_b}"])
    if fit_a is None or fit_b is None:
        raise InputError(
            "two studies are compared by their power laws; drop --set law=nd / --optimal-for"
        )
    fits_a, fits_b = fit_a.results, fit_b.results
    diffs = compare_fits(fits_a, fits_b)
    if not diffs:
        raise InputError("the two studies have no (metric, x) fitted in both")
    differ = {
        k: [doc_a["settings"].get(k), doc_b["settings"].get(k)]
        for k in (
            "irreducible",
            "compute",
            "method",
            "holdout",
            "bootstrap",
            "ci",
            "smooth",
            "include_subset",
        )
        if doc_a["settings"].get(k) != doc_b["settings"].get(k)
    }
    warnings = [
        f"the studies were fitted with different settings: {k} = {v[0]!r} (A) vs {v[1]!r} (B)"
        for k, v in differ.items()
    ]
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    table_md = markdown(diffs, names[0], names[1])
    compare = CompareFile(
        a=ComparedStudy(
            names[0], str(a_src), str(out / names[0] / "fits.json"), doc_a["settings"]["seed"]
        ),
        b=ComparedStudy(
            names[1], str(b_src), str(out / names[1] / "fits.json"), doc_b["settings"]["seed"]
        ),
        differences=tuple(diffs),
        created_utc=utc_now(),
        warnings=tuple(warnings),
        conventions={
            "difference": "alpha_B - alpha_A",
            "interval": "percentiles of alpha_B[i] - alpha_A[i] over paired draws of two "
            "independent bootstraps (runs resampled within each study), expanded for the smaller "
            "study's run count as the fits' own intervals are",
            "share_below_zero": "fraction of draws with alpha_B < alpha_A "
            "(for a loss: B falls faster)",
            "differs": "the interval of the difference excludes 0",
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.md", table_md)
    if not args.no_plots:
        from analysis.plots import plot_compare, save_figure  # matplotlib only when drawing

        for against in ("N", "Cmin"):
            if any(d.against == against for d in diffs):
                save_figure(
                    plot_compare(fits_a, fits_b, against, names), out / f"compare_vs_{against}"
                )
    write_compare(out / FILE, compare)
    print(table_md)
    print(f"wrote {out}/{FILE}, compare.md" + ("" if args.no_plots else ", figures (png, pdf)"))
    return compare.as_dict()
