"""A study of a planned grid drawn here, independently of the planner's own simulator, and
written as run directories for `scaling.fit` (the planner-vs-end-to-end check of
tests/study/laws/test_plan.py and scripts/validation/plan_validation.py).

Each run of the plan's cost table gets its full evaluations at the plan's evaluation compute,
drawn from the planner's calibrated ce_last curve ``E + (A N^-a + B (C/N)^-b) exp(z)`` (N in
billions, C in PFLOPs) with one seed-noise draw z ~ N(0, sd) per run; nothing is trained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# the fit of a drawn study: ce_last with E pinned at the prior laws' 3.0 (test_plan.LAWS)
FIT_YAML = "irreducible: 3.0\nmetrics: [ce_last]\nholdout: 0\nbootstrap: 200\n"


def write_planned_study(
    root: Path, plan: Mapping[str, Any], sd: float, rng: np.random.Generator
) -> Path:
    """Write one drawn study of `plan` (the planner's plan.json document) into `root`: a run
    directory per planned run (config.yaml, metrics.jsonl) and the fit.yaml; returns root."""
    curve = plan["curves"]["ce_last"]
    for r in plan["cost"]["runs"]:
        d = root / r["run"]
        d.mkdir(parents=True)
        (d / "config.yaml").write_text("seed: 0\n")
        n = r["params"] / 1e9
        z = sd * rng.standard_normal()
        lines = []
        for step, c in enumerate(r["eval_compute"], start=1):
            red = curve["A"] * n ** -curve["a"] + curve["B"] * (c / 1e15 / n) ** -curve["b"]
            record = {
                "step": step,
                "params": r["params"],
                "flops": c,
                "eval": "full",
                "ce_last": curve["E"] + red * np.exp(z),
            }
            lines.append(json.dumps(record))
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (root / "fit.yaml").write_text(FIT_YAML)
    return root
