"""Does storing augmented views matter? One demo-scale VAR, many epochs on a small image set,
trained on (a) one centre crop per image and (b) K random-crop views per image.

    OMP_NUM_THREADS=1 python scripts/validation/views_experiment.py --out /tmp/views_exp [--views 8]
        [--epochs 24] [--depth 5] [--only center|views]

Steps (all with the toolkit's own stages): the synthetic 16 px set with 10 classes x 150
train images (1,500, the size of the issue's small real set) and 50 val images per class; a
tiny VQVAE trained on it (the demo's shape, fewer steps); two token stores of the same
images, `--views 1` and `--views K` (val: one centre crop in both); the same run config on
each (only data.views differs). Prints train loss, test ce_avg at its minimum and at the end,
and what `analysis.overfit` (the check `status` and `fit` run) says about each run.
Re-running reuses what is already there. Numbers go to docs/data.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--epochs", type=float, default=24)
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--width", type=int, default=None, help="default 16 x depth, as the demo")
    p.add_argument("--train-per-class", type=int, default=150)
    p.add_argument("--vqvae-steps", type=int, default=300)
    p.add_argument(
        "--only",
        choices=["center", "views"],
        default=None,
        help="train only one of the two runs (run both at once in two processes, "
        "then once more without --only for the table)",
    )
    a = p.parse_args()

    from analysis.overfit import RISE, check_curve
    from scaling.core.config_io import dump_yaml
    from scaling.core.rundir import RunDir
    from scaling.data.synthetic import generate
    from scaling.data.tokenize import tokenize
    from scaling.data.vqvae_training import VQVAETrainConfig, train_vqvae
    from scaling.training.config import (
        DataConfig,
        EvalConfig,
        LengthConfig,
        ModelConfig,
        OptimConfig,
        RunConfig,
        RuntimeConfig,
    )
    from scaling.training.job import train_run

    out = a.out
    t0 = time.perf_counter()
    images = generate(
        out / "images",
        num_classes=10,
        train_per_class=a.train_per_class,
        val_per_class=50,
        resolution=16,
        seed=0,
    )
    vqvae = train_vqvae(
        VQVAETrainConfig(  # resumes, or returns at once when finished
            images=images,
            out=out / "vqvae",
            resolution=16,
            vocab_size=256,
            z_channels=16,
            ch=32,
            ch_mult=(1, 2, 2),
            num_res_blocks=1,
            patch_nums=(1, 2, 3, 4),
            batch_size=32,
            lr=2e-3,
            steps=a.vqvae_steps,
            eval_images=200,
            device="cpu",
        ),
        progress=False,
    )
    results = {}
    todo = {None: (1, a.views), "center": (1,), "views": (a.views,)}[a.only]
    for views in todo:
        store = tokenize(
            images,
            vqvae,
            out / f"tokens_v{views}",
            views=views,
            batch_size=256,
            device="cpu",
            progress=False,
        )
        config = RunConfig(
            run_id=f"d{a.depth}w{a.width or 16 * a.depth}_e{a.epochs:g}_views{views}",
            data=DataConfig(store=store, views=views),
            model=ModelConfig(
                depth=a.depth, width=a.width or 16 * a.depth, heads=a.depth, init_adaln_gamma=1e-2
            ),
            optim=OptimConfig(batch_size=32, base_lr=2.4e-2, final_lr_frac=0.01, warmup_frac=0.05),
            length=LengthConfig(epochs=a.epochs),
            eval=EvalConfig(points=10, first_frac=0.01),
            runtime=RuntimeConfig(device="cpu", num_threads=1, log_every_s=60),
            seed=0,
        )
        run = RunDir(out / "runs" / config.run_id)
        run.path.mkdir(parents=True, exist_ok=True)
        if not run.config.exists():
            run.config.write_text(dump_yaml(config))
        if run.read_status().get("state") != "done":
            train_run(run.path)
        recs = [r.columns() for r in run.read_metrics() if r.kind == "full"]
        best = min(recs, key=lambda r: r["ce_avg"])
        flag = check_curve(
            [r["step"] for r in recs], [r["ce_avg"] for r in recs], [r["train_loss"] for r in recs]
        )
        results[views] = dict(
            params=recs[-1]["params"],
            epochs=a.epochs,
            train_last=recs[-1]["train_loss"],
            test_best=best["ce_avg"],
            best_step=best["step"],
            test_last=recs[-1]["ce_avg"],
            steps=recs[-1]["step"],
            flag=flag,
        )
    if a.only:
        return 0
    print(
        f"\nd{a.depth} ({results[1]['params']:,} params), {a.epochs:g} epochs of "
        f"{10 * a.train_per_class} images, test = 500 val images (centre crop), "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    print(
        "| train store | train loss (mean since the previous evaluation) | test ce_avg min (step) "
        "| test ce_avg last | "
        f"overfitting check (rise >= {100 * RISE:.0f}% while train falls) |"
    )
    print("|---|---|---|---|---|")
    for views, r in results.items():
        name = "1 centre crop" if views == 1 else f"{views} random-crop views"
        check = f"data-limited: {r['flag']['reason']}" if r["flag"] else "not flagged"
        print(
            f"| {name} | {r['train_last']:.3f} | {r['test_best']:.3f} ({r['best_step']}) | "
            f"{r['test_last']:.3f} | {check} |"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
