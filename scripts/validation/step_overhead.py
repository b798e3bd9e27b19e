"""The trainer's overhead over a bare loop, at every demo size, on CPU.

    python scripts/validation/step_overhead.py [--sizes 1 2 3 4 5 6] [--steps 30] [--repeats 7]
    [--threads 1]

Per size of sweeps/demo.yaml (width 16 x depth, heads = depth, V = 256, scales 1,2,3,4,
batch 32) on a random token store of that geometry:

  train  `Trainer.train_step()` (data gather, class dropout, teacher-forcing input, forward,
         chunked loss, backward, clip, AdamW) against a bare loop on the same model and batch
         size: pre-built inputs, forward, F.cross_entropy on full logits, backward, clip,
         AdamW (torch's default implementation), nothing else.
  eval   `Trainer.evaluate("full")` over the test split against a bare no-grad loop over
         the same batches: teacher-forcing input, forward, F.cross_entropy, argmax error.

Both sides alternate (A B A B ...) and each figure is the median of `--repeats` timings of
`--steps` iterations, so a load that changes during the run hits both alike. Prints a table
of ms per step and the ratio trainer / bare, and the machine's load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from scaling.core.rundir import RunDir  # noqa: E402
from scaling.tools.bench.geometry import Geometry, make_vqvae, write_random_store  # noqa: E402
from scaling.training.config import (  # noqa: E402
    DataConfig,
    EvalConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    RuntimeConfig,
)
from scaling.training.distributed import DistInfo  # noqa: E402
from scaling.training.inputs import split_scales  # noqa: E402
from scaling.training.trainer import Trainer  # noqa: E402
from var_core import VAR  # noqa: E402

DEMO = Geometry(
    vocab_size=256,
    z_channels=16,
    vqvae_ch=32,
    vqvae_ch_mult=(1, 2, 2),
    patch_nums=(1, 2, 3, 4),
    num_classes=10,
)


def trainer_for(store: Path, run_dir: Path, depth: int, batch: int, eval_images: int) -> Trainer:
    """A Trainer as the demo sweep configures it (one thread is set by the caller)."""
    config = RunConfig(
        run_id=f"d{depth}",
        data=DataConfig(store=store),
        model=ModelConfig(depth=depth, width=16 * depth, heads=depth, init_adaln_gamma=1e-2),
        optim=OptimConfig(batch_size=batch, base_lr=2.4e-2, final_lr_frac=0.01, warmup_frac=0.05),
        length=LengthConfig(steps=1_000_000),
        eval=EvalConfig(points=1, batch_size=250, max_images=eval_images),
        runtime=RuntimeConfig(device="cpu"),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(config, RunDir(run_dir), DistInfo(0, 1, 0, torch.device("cpu")))


def timed(fn, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-images", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    batch = 32
    print(
        f"load average before: {os.getloadavg()}, threads {args.threads}, torch {torch.__version__}"
    )
    print(
        "| size | train ms (trainer) | train ms (bare) | ratio | eval ms (trainer) | eval ms "
        "(bare) | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        vqvae = make_vqvae(DEMO, torch.device("cpu"))
        store = write_random_store(
            Path(tmp) / "store", DEMO, vqvae.quantize, n_train=batch * 64, n_val=args.eval_images
        )
        for depth in args.sizes:
            trainer = trainer_for(store, Path(tmp) / f"d{depth}", depth, batch, args.eval_images)
            model = trainer.model
            # the bare loop: its own copy of the model, inputs built once
            bare = VAR(**model.config()).train()
            bare.cond_drop = 0.0
            bare.load_state_dict(model.state_dict())
            opt = torch.optim.AdamW(
                bare.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05
            )
            tokens, labels = trainer.store.gather("train", torch.arange(batch).numpy())
            x_in = trainer.inputs.teacher_forcing_input(tokens)

            def bare_step():
                logits = bare(labels, x_in)
                loss = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
                loss.backward()
                torch.nn.utils.clip_grad_norm_(bare.parameters(), 2.0)
                opt.step()
                opt.zero_grad(set_to_none=True)

            eval_batches = [
                trainer.store.gather("val", torch.arange(s, min(s + 250, args.eval_images)).numpy())
                for s in range(0, args.eval_images, 250)
            ]

            @torch.no_grad()
            def bare_eval():
                bare.eval()
                for tok, lab in eval_batches:
                    xi = trainer.quantizer.idx_to_var_input(split_scales(tok, trainer.patch_nums))
                    logits = bare(lab, xi)
                    ce = F.cross_entropy(logits.transpose(1, 2), tok, reduction="none")
                    err = (logits.argmax(-1) != tok).float()
                    ce.sum(0), err.sum(0)
                bare.train()

            for _ in range(3):  # warm-up both
                trainer.train_step()
                bare_step()
            t_tr, t_bare, e_tr, e_bare = [], [], [], []
            for _ in range(args.repeats):
                t_tr.append(timed(trainer.train_step, args.steps))
                t_bare.append(timed(bare_step, args.steps))
                e_tr.append(timed(lambda: trainer.evaluate("full"), 1))
                e_bare.append(timed(bare_eval, 1))
            a, b = statistics.median(t_tr), statistics.median(t_bare)
            c, d = statistics.median(e_tr), statistics.median(e_bare)
            print(
                f"| d{depth} | {1e3 * a:.2f} | {1e3 * b:.2f} | {a / b:.3f} | {1e3 * c:.1f} | "
                f"{1e3 * d:.1f} | {c / d:.3f} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
