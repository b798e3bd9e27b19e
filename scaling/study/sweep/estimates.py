"""What a sweep will cost, before anything runs: the launch table's per-run estimates
(parameters, training tokens, exact training FLOPs, GPU-hours) and the repeated-data warning,
all read from each run's `RunBudget` (`scaling.training.budget`), and for a sweep with
tokenizer variants one row per variant (tokens per image, token store size, FLOPs).

Estimates read the token store's meta.json, or, while the store is not made yet (or lives
on another machine), the stand-in that the sweep describes (`Sweep.expected_meta`); each
variant's from its own store.
"""

from __future__ import annotations

from typing import Any

from analysis.repeatlaw import LANGUAGE_R_STAR, effective_ratio
from scaling.core.tables import format_table, human
from scaling.data.token_store import TokenStoreError, read_meta
from scaling.study.sweep.expand import Run
from scaling.study.sweep.spec import ClusterSpec
from scaling.study.sweep.sweep import Sweep
from scaling.training.budget import REPEAT_EPOCHS_OK, RunBudget, run_budget
from var_core.counting import tokens_per_image

# bytes per stored row: L uint16 tokens and one int32 label (scaling.data.token_store)
TOKEN_BYTES, LABEL_BYTES = 2, 4


def gpu_hours(flops: float, resources: ClusterSpec) -> float:
    """Estimated GPU-hours for `flops` at the assumed sustained rate per GPU."""
    return flops / (resources.assumed_tflops_per_gpu * 1e12) / 3600.0


def store_meta(sweep: Sweep, tokenizer: str | None = None) -> tuple[dict[str, Any], bool]:
    """The token store's meta.json (variant `tokenizer`'s; None: the sweep's first), or the
    stand-in the sweep describes (`Sweep.expected_meta`); (meta, is_real)."""
    try:
        return read_meta(sweep.token_store(tokenizer)), True
    except (OSError, TokenStoreError):  # not made yet (or unreadable): plan from the recipe
        return sweep.expected_meta(tokenizer), False


def store_bytes(meta: dict[str, Any]) -> int:
    """The bytes of a token store's arrays (tokens and labels of every split; the .npy
    headers and meta.json aside), from its meta.json or stand-in."""
    L = tokens_per_image(meta["patch_nums"])
    rows = sum(int(split["count"]) for split in meta["splits"].values())
    return rows * (TOKEN_BYTES * L + LABEL_BYTES)


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def tokenizer_table(sweep: Sweep, runs: list[Run], budgets: dict[str, RunBudget]) -> str:
    """One row per tokenizer variant that `runs` train on: vocabulary, scales, tokens per
    image, store rows and size, its runs and their training FLOPs, and whether the numbers
    come from its store (made) or the recipe. `budgets`: run id -> budget."""
    rows = []
    for t in sweep.tokenizers():
        mine = [r for r in runs if sweep.tokenizer_of(r).name == t.name]
        if not mine:
            continue
        meta, real = store_meta(sweep, t.name)
        count = sum(int(split["count"]) for split in meta["splits"].values())
        rows.append(
            [
                str(t.name),
                str(meta["vocab_size"]),
                ",".join(map(str, meta["patch_nums"])),
                str(tokens_per_image(meta["patch_nums"])),
                f"{count:,}",
                _size(store_bytes(meta)),
                str(len(mine)),
                f"{sum(budgets[r.run_id].own_flops for r in mine):.3g}",
                "store" if real else "recipe",
            ]
        )
    header = [
        "tokenizer",
        "vocab",
        "scales",
        "tokens/image",
        "store rows",
        "store size",
        "runs",
        "train FLOPs",
        "from",
    ]
    return format_table(header, rows)


def plan_table(sweep: Sweep, runs: list[Run], states: dict[str, tuple] | None = None) -> str:
    """The launch table: one row per run, and a total line; with tokenizer variants, one
    row per variant after it (`tokenizer_table`); the sweep's load warnings last."""
    metas = {t.name: store_meta(sweep, t.name) for t in sweep.tokenizers()}
    budgets = {
        run.run_id: run_budget(run.config, metas[sweep.tokenizer_of(run).name][0]) for run in runs
    }
    # the data each run trains on, when a run uses part of it (data.subset / data.use_views)
    data_columns = any(
        run.config.data.subset is not None or run.config.data.use_views is not None for run in runs
    )
    rows, total_flops, total_gpuh = [], 0.0, 0.0
    for run in runs:
        budget = budgets[run.run_id]
        res = run.resources
        gpus = res.nodes * res.gpus_per_node
        # a branch pays for its cool-down only; its tokens and FLOPs count the parent's too
        gh = gpu_hours(budget.own_flops, res) if gpus else None
        total_flops += budget.own_flops
        total_gpuh += gh or 0.0
        row = [
            ("  " + run.run_id) if run.parent else run.run_id,
            str(run.depth),
            f"{budget.params:,}",
            human(budget.tokens),
            f"{budget.flops:.3g}",
            f"{gh:,.0f}" if gh is not None else "-",
            f"{res.nodes}x{res.gpus_per_node}" if gpus else f"{res.nodes}x0 (CPU)",
        ]
        if data_columns:
            subset = budget.train_images != budget.split_images
            row[3:3] = [
                f"{budget.train_images:,}" + (f" of {budget.split_images:,}" if subset else ""),
                str(budget.views),
                f"{budget.epochs:.3g}",
            ]
        if states is not None:
            row.append(states[run.run_id][0])
        rows.append(row)
    header = ["run", "depth", "N", "train tokens", "train FLOPs", "GPU-h", "nodes x GPUs"]
    if data_columns:
        header[3:3] = ["train images", "views", "epochs"]
    if states is not None:
        header.append("state")
    notes = [
        f"{len(runs)} runs; total {total_flops:.3g} training FLOPs (exact (3 x forward, "
        f"from shapes)), "
        f"{total_gpuh:,.0f} GPU-hours at {sweep.spec.cluster.assumed_tflops_per_gpu:g} "
        f"TFLOP/s per GPU (assumed)"
    ]
    variants = bool(sweep.spec.tokenizers)
    for name, (_, made) in metas.items():
        if not made:
            notes.append(
                f"token store {sweep.token_store(name)} not made yet: the numbers come from "
                f"{sweep.expected_source(name)}"
            )
    for name, (store, _) in metas.items():
        mine = [r for r in runs if sweep.tokenizer_of(r).name == name]
        warning = repeated_data_warning(mine, budgets, store) if mine else None
        if warning:
            notes.append(
                warning.replace("warning:", f"warning: tokenizer {name}:", 1)
                if variants
                else warning
            )
    notes += [f"warning: {w}" for w in sweep.warnings]
    table = format_table(header, rows)
    if variants:
        table += "\n" + tokenizer_table(sweep, runs, budgets)
    return table + "\n" + "\n".join(notes)


def repeated_data_warning(
    runs: list[Run], budgets: dict[str, RunBudget], meta: dict[str, Any]
) -> str | None:
    """A warning line when some runs would see each stored token sequence more than
    `REPEAT_EPOCHS_OK` times (`RunBudget.passes`), else None. `budgets`: run id -> budget."""
    hits = []
    for run in runs:
        b = budgets[run.run_id]
        if b.passes > REPEAT_EPOCHS_OK:
            hits.append(f"{run.run_id} {b.passes:.3g} (D'/D {_ratio_range(b)})")
    if not hits:
        return None
    split = meta["splits"][runs[0].config.data.train_split]
    return (
        f"warning: repeated data is the likely regime: {len(hits)} of {len(runs)} runs see "
        f"each stored token sequence more than {REPEAT_EPOCHS_OK} times (passes = epochs / "
        f"(views read x flips); the store holds {split.get('views', 1)} view(s), flips "
        f"{'on' if split.get('flip') else 'off'}: {', '.join(hits)}). Rule: up to ~4 epochs of "
        f"repeated data cost little, beyond that each repeat is worth less and large models "
        f"overfit (Muennighoff et al. 2023, Scaling Data-Constrained Language Models). "
        f"D'/D: effective over seen data under their language value R* = {LANGUAGE_R_STAR} "
        f"(ASSUMED for image tokens), stored views worth nothing - as good as fresh images "
        f"(scaling.plan gives it per run; scaling.fit --set law=nd-repeat measures R*). "
        f"Remedies: more views (tokenize --views K), fewer epochs, more images; "
        f"see docs/data.md"
    )


def _ratio_range(budget: RunBudget) -> str:
    """D'/D of a run under the language R*: views worth nothing - as good as fresh images."""
    D, U, K = float(budget.tokens), float(budget.unique_tokens), int(budget.rows_per_image)
    low = effective_ratio(D, U, K, LANGUAGE_R_STAR)
    high = effective_ratio(D, U, K, LANGUAGE_R_STAR, fresh=True)
    return f"{low:.2f}" if abs(high - low) < 5e-3 else f"{low:.2f}-{high:.2f}"
