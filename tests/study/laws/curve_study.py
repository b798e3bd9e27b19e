"""A study folder whose curves are drawn from a known whole-curve law (tests of forecasts).

Run directories as the launcher and trainer leave them (config.yaml, status.json,
metrics.jsonl), with ce_avg after each evaluation drawn from `analysis.curvelaw`'s lra law
with known parameters plus Gaussian noise; nothing is trained.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from analysis.curvelaw import CurveFit, features
from scaling.training import schedule
from scaling.training.config import BranchConfig, LengthConfig, RunConfig
from tests.factories import tiny_run_config, write_run

TRUTH = {"alpha": 0.45, "lam": 0.99, "c": 3e-4}
SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000)


def per_run(params: int) -> tuple[float, float]:
    """The truth's (L0, A) of a run of `params`: both fall with size."""
    return 2.0 + 1.5 * (params / 1e4) ** -0.3, 3.0 * (params / 1e4) ** -0.1


def _config(root: Path, run: str, steps: int, wsd: bool, branch: BranchConfig | None):
    cfg = tiny_run_config(root / "store", run, steps=steps)
    cfg = dataclasses.replace(cfg, length=LengthConfig(steps=steps))
    if wsd:  # warm-up, constant, 1-sqrt cool-down over the last 20% (a branch: its own 20%)
        optim = dataclasses.replace(
            cfg.optim, schedule="wsd", cooldown_frac=0.2, cooldown_shape="1-sqrt"
        )
        cfg = dataclasses.replace(cfg, optim=optim, branch=branch)
    return cfg


def _lr(cfg: RunConfig, steps: int) -> np.ndarray:
    """The config's lr at every step (a branch's: laid out on its parent's `steps`)."""
    plan = schedule.plan(cfg, steps)
    return np.array(
        [
            cfg.optim.peak_lr * schedule.lr_factor(s, plan, cfg.optim)
            for s in range(plan.total_steps)
        ]
    )


def _write_curve(run_dir: Path, run: str, params: int, lr, at, loss, last: int) -> None:
    flops_per_step = 6.0 * params * 16 * 30
    with open(run_dir / "metrics.jsonl", "w") as f:
        for s, v in zip(at, loss, strict=True):
            if s > last:
                break
            rec = {
                "run": run,
                "params": params,
                "step": int(s),
                "tokens": int(s) * 16 * 30,
                "flops": int(s) * flops_per_step,
                "ce_avg": float(v),
                "ce_last": float(v) + 0.1,
                "err_avg": 0.5,
                "err_last": 0.6,
                "lr": float(lr[s - 1]),
                "eval": "full",
            }
            f.write(json.dumps(rec) + "\n")


def write_study(
    root: Path,
    steps: int = 600,
    noise: float = 0.003,
    seed: int = 0,
    running: dict[str, int] | None = None,
    evals: int = 8,
    branches: tuple[float, ...] = (),
) -> Path:
    """Six runs d1..d6 (`SIZES`) of `steps` steps (lin0 schedule), `evals` log-spaced
    evaluations from 3%; `running`: run -> its last step so far (status running).
    `branches`: WSD runs instead (1-sqrt cool-down over the last 20%), each with a decay
    branch d<i>-b<at> per fraction (cool-down over 20% of its own length), evaluated once at
    its end; a branch follows its parent's trajectory to the fork, so it shares its (L0, A)."""
    rng = np.random.default_rng(seed)
    running = running or {}
    root.mkdir(parents=True, exist_ok=True)
    wsd = bool(branches)
    for i, params in enumerate(SIZES, start=1):
        run = f"d{i}"
        cfg = _config(root, run, steps, wsd, None)
        run_dir = write_run(root / run, cfg)
        lr = _lr(cfg, steps)
        at = schedule.log_spaced_steps(steps, evals, 0.03)
        truth = CurveFit("lra", TRUTH, float(lr.max()), {run: per_run(params)}, noise, 0, 0, 0.0)
        loss = truth.predict(run, lr, at) + rng.normal(0, noise, len(at))
        last = running.get(run, steps)
        _write_curve(run_dir, run, params, lr, at, loss, last)
        state = "running" if run in running else "done"
        (run_dir / "status.json").write_text(
            json.dumps({"state": state, "total_steps": steps, "step": min(last, steps)})
        )
        for frac in branches:
            b = f"{run}-b{frac:g}"
            bcfg = _config(root, b, steps, wsd, BranchConfig(parent=run, at=frac, cooldown=0.2))
            b_dir = write_run(root / b, bcfg)
            blr = _lr(bcfg, steps)
            end = blr.size
            value = truth.predict(run, blr, [end]) + rng.normal(0, noise, 1)
            _write_curve(b_dir, b, params, blr, [end], value, end)
            (b_dir / "status.json").write_text(
                json.dumps({"state": "done", "total_steps": end, "step": end})
            )
    return root


def truth_final(params: int, steps: int = 600, branch: float | None = None) -> float:
    """The truth's ce_avg at the end of a run of `params` (no noise); `branch`: at the end of
    its WSD decay branch forked at that fraction (write_study's `branches`)."""
    cfg = _config(
        Path("."),
        "x",
        steps,
        branch is not None,
        None if branch is None else BranchConfig(parent="p", at=branch, cooldown=0.2),
    )
    lr = _lr(cfg, steps)
    x, z = features("lra", TRUTH, lr / lr.max(), [lr.size])
    L0, A = per_run(params)
    return float(L0 + A * x[0] - TRUTH["c"] * z[0])
