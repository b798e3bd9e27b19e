"""``python -m scaling.plan SWEEP.yaml``: what a study will cost and how sharp its laws will be.

Before anything is submitted, for the sweep file as written:

1. **Cost** per run and in total: training and evaluation FLOPs (exact count,
   `var_core.counting` via `scaling.training.config.estimate`; evaluation = forward FLOPs x images
   evaluated, as the trainer counts them), GPU-hours at the sweep's assumed throughput
   (`cluster.assumed_tflops_per_gpu`), training tokens, and the token store's size on disk.
2. **Precision**: a prior law (the paper's by default, a fits.json, or laws on the command
   line) is replayed through the sweep's own sizes, lengths and evaluation schedule many times
   with a seed-noise model, and every replicate is fitted with the fitting library of
   ``scaling.fit`` and the sweep's `fit:` settings (`analysis.simulate`). Per law: median
   fitted exponent, bias against the prior, width of the central 95% of the fitted exponents,
   median width of the fit's 95% bootstrap interval, and how often that interval covers the
   prior's exponent.
3. **Alternatives** in one table: the same sweep with more seeds, fewer or more sizes, longer
   or shorter runs, more evaluations; each with its GPU-hours and the precision of one
   metric's laws.

Writes ``plan.json``, ``plan.md`` and figures (``plan_exponents.png/pdf``: simulated exponent
distributions of the grid beside the alternatives; ``plan_evals.png/pdf``: planned evaluation
points on a compute axis per run) into ``--out`` (default ``<sweep output>/plan``).

Never imports torch (FLOPs come from the torch-free `var_core.counting`). Exit status: 2 for
a bad sweep file or argument, 1 for a runtime failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from scaling.core.config_io import ConfigError, load_yaml

TOKEN_BYTES = 2  # scaling.token_store: tokens are uint16 [count, L]
LABEL_BYTES = 4  # labels are int32 [count]
DECAY_NOTE = ("decay branches (WSD) are not on main yet (issue 17): no alternative row for them; "
              "the joint L(N, D) law is not planned for the same reason")


class PlanError(ValueError):
    """A bad argument or input of the planner (exit status 2); the message names it."""


# ----------------------------------------------------------------------------- cost

@dataclasses.dataclass(frozen=True)
class RunCost:
    """What one run costs, and when it evaluates (all FLOPs exact counts)."""

    run_id: str
    depth: int
    params: int
    seed: int
    steps: int
    batch_size: int
    L: int                      # tokens per image
    forward_flops: int          # per image
    eval_cfg: Any               # scaling.training.config.EvalConfig
    val_images: int
    gpus: int
    tflops_per_gpu: float

    @property
    def train_flops(self) -> float:
        return 3.0 * self.forward_flops * self.batch_size * self.steps

    @property
    def tokens(self) -> float:
        return float(self.steps) * self.batch_size * self.L

    def schedule(self) -> dict[int, str]:
        """step -> full | subset, exactly as the trainer evaluates (scaling.schedule)."""
        from scaling.training.schedule import eval_schedule
        return eval_schedule(self.steps, self.eval_cfg)

    def full_steps(self) -> np.ndarray:
        return np.array([s for s, k in self.schedule().items() if k == "full"], dtype=float)

    @property
    def eval_flops(self) -> float:
        """Forward FLOPs x images evaluated, over every evaluation (as the trainer's eval_flops)."""
        kinds = list(self.schedule().values())
        full = min(self.eval_cfg.max_images or self.val_images, self.val_images)
        subset = min(self.eval_cfg.subset_images, self.val_images)
        return float(self.forward_flops) * (kinds.count("full") * full + kinds.count("subset") * subset)

    @property
    def gpu_hours(self) -> float:
        return (self.train_flops + self.eval_flops) / (self.tflops_per_gpu * 1e12) / 3600.0

    def eval_compute(self) -> np.ndarray:
        """[k] cumulative training FLOPs at each full evaluation."""
        return self.full_steps() * 3.0 * self.forward_flops * self.batch_size

    def planned(self, seed: int | None = None, suffix: str = ""):
        """The run as `analysis.simulate.PlannedRun`."""
        from analysis.simulate import PlannedRun
        return PlannedRun(self.run_id + suffix, float(self.params), self.eval_compute(),
                          self.seed if seed is None else seed)


def run_costs(sweep, meta: dict[str, Any]) -> list[RunCost]:
    """One `RunCost` per run of a loaded sweep, for the store described by `meta`."""
    from scaling.training.config import estimate

    val = int(meta.get("splits", {}).get(sweep.runs[0].config.data.eval_split if sweep.runs else "val",
                                         {}).get("count", 0))
    out = []
    for run in sweep.runs:
        est = estimate(run.config, meta)
        res = run.resources
        out.append(RunCost(run.run_id, run.depth, int(est["params"]), int(run.config.seed), int(est["steps"]),
                           run.config.optim.batch_size, int(sum(p * p for p in meta["patch_nums"])),
                           int(est["forward_flops_per_image"]), run.config.eval, val,
                           res.nodes * res.gpus_per_node, res.assumed_tflops_per_gpu))
    return out


def store_bytes(meta: dict[str, Any]) -> int:
    """Size of the token store's arrays: every split's count of stored sequences (views and
    flips included) x (L uint16 tokens + an int32 label)."""
    L = sum(p * p for p in meta["patch_nums"])
    return sum(int(s.get("count", 0)) * (L * TOKEN_BYTES + LABEL_BYTES) for s in meta.get("splits", {}).values())


def cost_table(costs: list[RunCost]) -> str:
    """Markdown table of the cost per run, with a total row."""
    from scaling.core.tables import human

    lines = ["| run | N | steps | train tokens | train FLOPs | eval FLOPs | full evals | GPU-h |",
             "|---|---|---|---|---|---|---|---|"]
    for c in costs:
        lines.append(f"| {c.run_id} | {human(c.params)} | {c.steps:,} | {human(c.tokens)} | {c.train_flops:.3g} "
                     f"| {c.eval_flops:.3g} | {len(c.full_steps())} | {c.gpu_hours:,.0f} |")
    tr, ev = sum(c.train_flops for c in costs), sum(c.eval_flops for c in costs)
    lines.append(f"| **total ({len(costs)} runs)** | | | {human(sum(c.tokens for c in costs))} | {tr:.3g} | {ev:.3g} "
                 f"| {sum(len(c.full_steps()) for c in costs)} | {sum(c.gpu_hours for c in costs):,.0f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- priors and noise

def _law_arg(text: str):
    """'ce_last:N=-0.23,2.0[,4.5]' -> (metric, against, Law)."""
    from analysis.powerlaw import Law
    from analysis.paper import AGAINST, METRICS, PAPER_IRREDUCIBLE

    try:
        head, values = text.split("=", 1)
        metric, against = head.split(":")
        nums = [float(v) for v in values.split(",")]
    except ValueError:
        raise PlanError(f"--law {text!r}: expected METRIC:AGAINST=alpha,beta[,E] "
                        f"(e.g. ce_last:N=-0.23,2.0,4.5)") from None
    if metric not in METRICS or against not in AGAINST or len(nums) not in (2, 3):
        raise PlanError(f"--law {text!r}: metric must be one of {', '.join(METRICS)}, against N or Cmin, "
                        f"then alpha,beta[,E]")
    if not nums[0] < 0 or not nums[1] > 0:
        raise PlanError(f"--law {text!r}: alpha must be negative (the metric falls with scale) and beta positive")
    E = nums[2] if len(nums) == 3 else PAPER_IRREDUCIBLE[metric]
    return metric, against, Law(nums[0], nums[1], E)


def load_prior(spec: str, metrics: list[str], laws: list[str]) -> tuple[dict, str]:
    """The prior per metric ('paper' or a fits.json path), with --law overrides; and its description."""
    from analysis.simulate import PriorLaws, paper_prior

    if spec == "paper":
        priors, source = paper_prior(metrics), "the paper's published laws (Tian et al. 2024, eq. 11-16)"
    else:
        path = Path(spec)
        try:
            doc = json.loads(path.read_text())
            found = {(f["metric"], f["against"]): f for f in doc["fits"]}
        except FileNotFoundError:
            raise PlanError(f"--prior {spec}: no such file (use 'paper' or a fits.json from scaling.fit)") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PlanError(f"--prior {spec}: not a fits.json written by scaling.fit ({e})") from None
        from analysis.powerlaw import Law
        priors = {}
        for m in metrics:
            if (m, "N") in found and (m, "Cmin") in found:
                n, c = found[(m, "N")], found[(m, "Cmin")]
                priors[m] = PriorLaws(m, Law(n["alpha"], n["beta"], n["E"]), Law(c["alpha"], c["beta"], c["E"]))
        source = f"the fits in {path}"
    for text in laws:
        metric, against, law = _law_arg(text)
        base = priors.get(metric) or paper_prior([metric])[metric]
        priors[metric] = dataclasses.replace(base, **({"n_law": law} if against == "N" else {"cmin_law": law}))
        source += f"; {metric} vs {against} from --law"
    missing = [m for m in metrics if m not in priors]
    if missing:
        raise PlanError(f"--prior {spec}: no law vs both N and Cmin for {', '.join(missing)} "
                        f"(give them with --law METRIC:AGAINST=alpha,beta[,E], or limit --metrics)")
    return {m: priors[m] for m in metrics}, source


def load_noise(args, metrics: list[str], priors: dict) -> Any:
    """The noise model: measured from a table with seeds (--noise-from), a number, or the default."""
    from analysis.simulate import Noise, paper_noise_sd

    if args.noise_from:
        from analysis.results import ResultsError, load_results, prepare
        from analysis.seeds import pooled_log_sd

        try:
            table = prepare(load_results(args.noise_from), metrics, source=str(args.noise_from))
            sd, dof = {}, {}
            for m in metrics:
                sd[m], dof[m] = pooled_log_sd(table, m, priors[m].E)
        except ResultsError as e:
            raise PlanError(f"--noise-from {args.noise_from}: {e}") from None
        return Noise(sd, args.eval_noise, f"measured from the seed replicates in {args.noise_from} (pooled sd of "
                                          f"log(final - E) within sizes; {min(dof.values())} degrees of freedom)")
    if args.noise_sd is not None:
        if not args.noise_sd >= 0:
            raise PlanError(f"--noise-sd must be >= 0; got {args.noise_sd}")
        return Noise({m: args.noise_sd for m in metrics}, args.eval_noise, "--noise-sd on the command line")
    return Noise({m: paper_noise_sd(m) for m in metrics}, args.eval_noise,
                 "default: the scatter about the paper's N laws implied by their reported r = -0.998 over its 12 "
                 "sizes (|alpha| sd(ln N) sqrt(1 - r^2)); an upper bound on seed noise, since it also holds misfit")


# ----------------------------------------------------------------------------- alternatives

@dataclasses.dataclass
class Design:
    """A grid to simulate: its runs (seed replicates included) and their costs."""

    name: str
    costs: list[RunCost]
    seeds: int = 1

    def planned(self):
        """The runs as PlannedRun, each size repeated for `seeds` seeds."""
        out = []
        for c in self.costs:
            for k in range(self.seeds):
                out.append(c.planned(seed=c.seed + k, suffix=f"-rep{k}" if self.seeds > 1 else ""))
        return out

    @property
    def gpu_hours(self) -> float:
        return self.seeds * sum(c.gpu_hours for c in self.costs)


def _every_other(costs: list[RunCost]) -> list[RunCost]:
    sizes = sorted({c.params for c in costs})
    keep_sizes = {sizes[i] for i in sorted(set(np.round(np.linspace(0, len(sizes) - 1, (len(sizes) + 1) // 2))
                                                .astype(int)))}
    return [c for c in costs if c.params in keep_sizes]


def _length(costs: list[RunCost], factor: float) -> list[RunCost]:
    return [dataclasses.replace(c, steps=max(1, round(c.steps * factor))) for c in costs]


def _evals(costs: list[RunCost], factor: float) -> list[RunCost]:
    return [dataclasses.replace(c, eval_cfg=dataclasses.replace(c.eval_cfg, points=max(2, round(c.eval_cfg.points
                                                                                              * factor))))
            for c in costs]


def _midpoint_sweep_costs(path: Path, sweep, meta) -> list[RunCost] | None:
    """The sweep with a depth added between every two consecutive depths (rules apply as written)."""
    from scaling.study.sweep import sweep_from_data

    depths = sorted(sweep.spec.grid["depth"])
    extra = [(a + b) // 2 for a, b in zip(depths, depths[1:]) if b - a >= 2]
    if not extra:
        return None
    data, loc = load_yaml(path)
    data["grid"]["depth"] = sorted(set(depths) | set(extra))
    try:
        more = sweep_from_data(data, loc)
    except ConfigError:
        return None
    return run_costs(more, meta)


def alternatives(path: Path, sweep, meta, costs: list[RunCost]) -> list[Design]:
    """The planned grid and the variations compared with it (seed rows double the planned seeds)."""
    designs = [Design("as planned", costs, 1)]
    half = _every_other(costs)
    n_sizes = len({c.params for c in costs})
    per_size = max(sum(c.params == p for c in costs) for p in {c.params for c in costs})  # planned seeds
    twice = f"{2 * per_size} seeds each"
    designs.append(Design(f"every other size ({len({c.params for c in half})} of {n_sizes}), {twice}", half, 2))
    designs.append(Design(f"all sizes, {twice}", costs, 2))
    designs.append(Design(f"runs half as long, {twice}", _length(costs, 0.5), 2))
    designs.append(Design("runs twice as long", _length(costs, 2.0), 1))
    designs.append(Design("twice the evaluation points", _evals(costs, 2.0), 1))
    more = _midpoint_sweep_costs(path, sweep, meta)
    if more is not None:
        designs.append(Design(f"more sizes ({len({c.params for c in more})}: a depth between each two)", more, 1))
    return designs


# ----------------------------------------------------------------------------- CLI

def _parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m scaling.plan",
                                description="Cost, expected precision and alternatives of a sweep, before submitting it.")
    p.add_argument("sweep", help="sweep file (YAML)")
    p.add_argument("--prior", default="paper", help="'paper' (default) or a fits.json written by scaling.fit")
    p.add_argument("--law", action="append", default=[], metavar="METRIC:AGAINST=alpha,beta[,E]",
                   help="a prior law given on the command line (repeatable; overrides --prior for that law)")
    p.add_argument("--noise-from", help="a runs directory or results table with seed replicates: measure the noise")
    p.add_argument("--noise-sd", type=float, help="seed noise: sd of log(final - E) between seeds, for every metric")
    p.add_argument("--eval-noise", type=float, default=0.0,
                   help="independent noise per evaluation, sd of log(metric - E) (default 0)")
    p.add_argument("--metrics", help="comma list (default: the sweep's fit.metrics)")
    p.add_argument("--compare", help="metric of the alternatives table (default: the first metric)")
    p.add_argument("--replicates", type=int, default=50, help="simulated studies of the planned grid (default 50)")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="bootstrap samples per simulated fit (default 100; 0: no intervals, no coverage)")
    p.add_argument("--alt-replicates", type=int, default=40,
                   help="simulated studies per alternative (no bootstrap; default 40; 0: no alternatives)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    p.add_argument("--out", help="output folder (default <sweep output>/plan)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    return p.parse_args(argv)


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def precision_table(summaries, models, level: float) -> str:
    """Markdown table: one row per simulated law."""
    lines = ["| metric | vs | prior alpha | noise-free fit | median alpha | bias | 95% range of alpha | "
             f"median {level:.0%} CI width | coverage | curve check |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        m = models[s.metric]
        check = m.n_law_error if s.against == "N" else m.cmin_law_error
        flag = " (!)" if check > 0.01 or not m.consistent else ""
        lines.append(f"| {s.metric} | {s.against} | {s.prior_alpha:.4g} | {_fmt(s.noise_free_alpha, 4)} "
                     f"| {_fmt(s.median, 4)} | {_fmt(s.bias, 2)} "
                     f"| {_fmt(s.spread(), 2)} | {_fmt(s.ci_width, 2)} "
                     f"| {'-' if not math.isfinite(s.coverage) else f'{100 * s.coverage:.0f}%'} "
                     f"| {100 * check:.2g}%{flag} |")
    return "\n".join(lines)


def run(argv=None) -> dict:
    """The CLI's work; returns the plan document. Raises PlanError / ConfigError."""
    args = _parse_args(argv)
    started = time.perf_counter()
    from scaling.study.fit import FitSettings
    from scaling.study.estimates import store_meta
    from scaling.core.tables import human
    from scaling.study.sweep import load_sweep

    for name in ("replicates", "bootstrap", "alt_replicates"):
        if getattr(args, name) < 0:
            raise PlanError(f"--{name.replace('_', '-')} must be >= 0; got {getattr(args, name)}")
    if args.replicates < 2:
        raise PlanError(f"--replicates must be at least 2; got {args.replicates}")
    if not args.eval_noise >= 0:
        raise PlanError(f"--eval-noise must be >= 0; got {args.eval_noise}")
    path = Path(args.sweep)
    sweep = load_sweep(path)
    settings = FitSettings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in sweep.spec.fit.items()})
    metrics = list(settings.metrics) if not args.metrics else [m.strip() for m in args.metrics.split(",") if m.strip()]
    from analysis.paper import METRICS
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise PlanError(f"--metrics: {', '.join(bad) or 'empty'}: choose from {', '.join(METRICS)}")
    compare = args.compare or metrics[0]
    if compare not in metrics:
        raise PlanError(f"--compare {compare}: not among the planned metrics {', '.join(metrics)}")
    meta, real = store_meta(sweep)
    costs = run_costs(sweep, meta)

    from analysis.simulate import FitPlan, calibrate, simulate_study
    priors, prior_source = load_prior(args.prior, metrics, args.law)
    noise = load_noise(args, metrics, priors)
    planned = Design("as planned", costs).planned()
    models = {m: calibrate(priors[m], planned) for m in metrics}
    fit = FitPlan(irreducible=settings.irreducible, method=settings.method, smooth=settings.smooth,
                  ci=settings.ci, bootstrap=args.bootstrap)
    against = list(settings.against)
    summaries = simulate_study(planned, models, priors, noise, fit, against, args.replicates, args.seed)

    designs = alternatives(path, sweep, meta, costs) if args.alt_replicates > 0 else []
    alt_rows = []
    alt_fit = dataclasses.replace(fit, bootstrap=0)
    for i, d in enumerate(designs):
        res = simulate_study(d.planned(), {compare: models[compare]}, priors, noise, alt_fit, against,
                             args.alt_replicates, args.seed + 1 + i)
        alt_rows.append((d, res))

    # ---- report
    tflops = costs[0].tflops_per_gpu if costs else float("nan")
    total_gh = sum(c.gpu_hours for c in costs)
    sb = store_bytes(meta)
    splits = ", ".join(f"{k} {int(v.get('count', 0)):,}" for k, v in meta.get("splits", {}).items())
    out_lines = [
        f"# Plan: {sweep.spec.name} ({path})", "",
        f"## Cost ({len(costs)} runs; GPU-hours at {tflops:g} TFLOP/s per GPU, assumed: cluster.assumed_tflops_per_gpu)",
        "", cost_table(costs), "",
        f"Token store: {human(sb)}B on disk ({splits} stored sequences (augmented views and flips included)"
        f" x {sum(p * p for p in meta['patch_nums'])} tokens, uint16, + an int32 label each)"
        + ("" if real else "; from data.expect (the store is not readable yet)") + ".",
        "",
        f"## Expected precision ({args.replicates} simulated studies, {args.bootstrap} bootstrap samples each)", "",
        f"Prior: {prior_source}. Noise: {noise.source}; per-run sd of log(metric - E): "
        + ", ".join(f"{m} {noise.sd[m]:.3g}" for m in metrics)
        + (f"; per evaluation {noise.eval_sd:g}" if noise.eval_sd else "") + ".",
        f"Fit settings (the sweep's fit: section): irreducible={settings.irreducible}, method={settings.method}, "
        f"smooth={settings.smooth}, ci={settings.ci}; hold-out off.", "",
        precision_table(summaries, models, settings.ci), "",
        "bias = median fitted alpha - prior alpha; 95% range = width of the central 95% of the fitted exponents over "
        "the simulated studies; CI width and coverage = the fit's bootstrap interval and how often it holds the prior "
        "alpha. Noise-free fit: the same fit on the study drawn without noise (its distance from the prior is "
        "the bias of the grid and estimator, not of the noise). Curve check: how far the simulated curves "
        "(E + A N^-a + B (C/N)^-b, calibrated to the prior) are from the prior law (max relative error of the "
        "reducible metric); (!): above 1%, or a prior whose |Cmin exponent| is not below its |N exponent|: no such "
        "curve reproduces both prior laws, and the bias there says more about the prior than about the grid.",
    ]
    if alt_rows:
        out_lines += ["", f"## Alternatives ({compare}; {args.alt_replicates} simulated studies each, point fits)", "",
                      f"| design | runs | GPU-h | x planned | " + " | ".join(
                          f"{a}: bias | {a}: 95% range" for a in against) + " |",
                      "|---|---|---|---|" + "---|---|" * len(against)]
        for d, res in alt_rows:
            cells = []
            for a in against:
                s = next(r for r in res if r.against == a)
                cells += [_fmt(s.bias, 2), _fmt(s.spread(), 2)]
            out_lines.append(f"| {d.name} | {len(d.planned())} | {d.gpu_hours:,.0f} | {d.gpu_hours / total_gh:.2f} | "
                             + " | ".join(cells) + " |")
        out_lines += ["", f"Not compared: {DECAY_NOTE}."]
    elapsed = time.perf_counter() - started
    out_lines += ["", f"Planned in {elapsed:.1f} s."]
    text = "\n".join(out_lines) + "\n"

    doc = {
        "tool": "python -m scaling.plan", "sweep": str(path), "elapsed_s": round(elapsed, 2),
        "cost": {"runs": [{"run": c.run_id, "params": c.params, "steps": c.steps, "tokens": c.tokens,
                           "train_flops": c.train_flops, "eval_flops": c.eval_flops,
                           "full_evals": int(len(c.full_steps())), "gpu_hours": c.gpu_hours,
                           "eval_compute": [float(v) for v in c.eval_compute()]} for c in costs],
                 "total_train_flops": sum(c.train_flops for c in costs),
                 "total_eval_flops": sum(c.eval_flops for c in costs), "total_gpu_hours": total_gh,
                 "assumed_tflops_per_gpu": tflops, "token_store_bytes": sb, "store_meta_real": real},
        "prior": {"source": prior_source, "laws": {m: {"N": dataclasses.asdict(p.n_law),
                                                       "Cmin": dataclasses.asdict(p.cmin_law)}
                                                   for m, p in priors.items()}},
        "noise": {"sd": noise.sd, "eval_sd": noise.eval_sd, "source": noise.source},
        "curves": {m: dataclasses.asdict(c) for m, c in models.items()},
        "settings": {"replicates": args.replicates, "bootstrap": args.bootstrap,
                     "alt_replicates": args.alt_replicates, "seed": args.seed,
                     "fit": dataclasses.asdict(fit)},
        "precision": [s.to_dict() for s in summaries],
        "alternatives": [{"design": d.name, "runs": len(d.planned()), "gpu_hours": d.gpu_hours,
                          "laws": [s.to_dict() for s in res]} for d, res in alt_rows],
        "not_compared": DECAY_NOTE,
    }
    out = Path(args.out) if args.out else sweep.output / "plan"
    from scaling.core.atomic import atomic_write_json, atomic_write_text
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "plan.md", text)
    atomic_write_json(out / "plan.json", doc)
    if not args.no_plots:
        from analysis.plots import save_figure
        from analysis.simulate_plots import plot_eval_points, plot_exponents
        if alt_rows:
            save_figure(plot_exponents([(d.name, res) for d, res in alt_rows], compare), out / "plan_exponents")
        save_figure(plot_eval_points([(c.run_id, c.eval_compute(), c.params) for c in costs]), out / "plan_evals")
    print(text, end="")
    print(f"wrote {out}/plan.md, plan.json" + ("" if args.no_plots else ", figures (png, pdf)"))
    return doc


def main(argv=None) -> int:
    """Entry point: errors are one line on stderr; exit 2 for bad input, 1 for runtime failures."""
    import matplotlib

    matplotlib.use("Agg")  # this CLI writes files only, never a window
    try:
        run(argv)
    except (PlanError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        if type(e).__name__ not in ("ResultsError", "InvalidValue"):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
