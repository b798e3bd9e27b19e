"""Stage 1: train a multi-scale VQVAE on an image folder.

    python -m scaling.train_vqvae CONFIG.yaml        # or train_vqvae(load_config(...)) as a job

Losses: MSE reconstruction + the quantizer's VQ loss (codebook + beta * commitment),
optionally a perceptual loss on local VGG16 weights (torchvision layout, plus LPIPS linear
heads if given; nothing is downloaded) and a PatchGAN hinge discriminator after
`disc_start` steps (both in scaling.data.vqvae_losses).

Dead codes: the codebook starts as encoder features of the first batch; every
`restart_every` steps, codebook entries no scale has picked in that window are
re-initialised to encoder features of the current batch (area-pooled to a random scale,
plus a little noise), the usual cheap remedy when usage collapses.

Writes to `out/`: `vqvae.pt` (var_core.save_model, atomic; loadable by var_core.load_vqvae
and scaling.tokenize), `train_state.pt` (model, optimisers, step, RNG: re-running resumes),
`vqvae_metrics.jsonl` (training lines; evaluation lines with val MSE, PSNR, the PSNR of a
per-image mean-colour baseline, and codebook usage per scale on the val split), the same as
TensorBoard event files (`tensorboard: false` turns them off; `wandb:` adds W&B, see
scaling.core.tracking) and `provenance.json` (scaling.core.provenance).

The parts: `build` (model, optimisers, losses), `train_step` (one optimisation step),
`evaluate_vqvae`, the checkpoint state (`save_state` / `resume`), `MetricsLog` (the
metrics file and the tracker) and the loop in `train_vqvae`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from contracts.atomic import atomic_write, atomic_write_text
from contracts.jsonl import append_jsonl, read_jsonl
from scaling.core import provenance
from scaling.core.cli import InputError, RuntimeFailure, run_cli, setup_logging
from scaling.core.config_io import dump_yaml, load_config
from scaling.core.runtime import pick_device, resolve
from scaling.core.safe_load import load_checkpoint_file
from scaling.core.seeds import step_seed
from scaling.core.stopwatch import Stopwatch
from scaling.core.tracking import Tracker
from scaling.data.images import ImageFolder
from scaling.data.token_store import TrainOrder
from scaling.data.vqvae_config import VQVAETrainConfig
from scaling.data.vqvae_losses import PatchDiscriminator, PerceptualLoss
from var_core import VQVAE, save_model

log = logging.getLogger(__name__)
STATE_FILE, METRICS_FILE, MODEL_FILE = "train_state.pt", "vqvae_metrics.jsonl", "vqvae.pt"
SKIPPED_FILE = "skipped_images.json"  # unreadable image files left out (scaling.data.images)


# ----------------------------------------------------------------------------- data


class _Crops(torch.utils.data.Dataset):
    """Keys (image index, crop seed) -> (training crop [3, H, W], label); unreadable -> next
    image."""

    def __init__(self, ds: ImageFolder):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        j, seed = key
        g = torch.Generator().manual_seed(int(seed))
        i, x = self.ds.first_readable(j, lambda i: self.ds.load(i, train=True, generator=g))
        return x, self.ds.samples[i][1]


class _Batches:
    """Batch sampler: TrainOrder batches from step `start` to `steps`, keys with crop seeds."""

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int):
        self.order = TrainOrder(n, batch, seed)
        self.order.load_state_dict(
            {
                "epoch": start // self.order.batches_per_epoch,
                "position": start % self.order.batches_per_epoch,
            }
        )
        self.seed, self.start, self.steps, self.batch = seed, start, steps, batch

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.steps):
            idx = self.order.next()
            yield [(int(j), step_seed(self.seed, step) * self.batch + b) for b, j in enumerate(idx)]


def train_loader(
    ds: ImageFolder, cfg: VQVAETrainConfig, start: int, device: torch.device
) -> torch.utils.data.DataLoader:
    """Batches (crops [B, 3, H, W], labels [B]) of steps `start`..cfg.steps, resumable exactly."""
    return torch.utils.data.DataLoader(
        _Crops(ds),
        batch_sampler=_Batches(len(ds), cfg.batch_size, cfg.seed, start, cfg.steps),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def val_images(ds: ImageFolder, n: int) -> torch.Tensor:
    """The readable ones of the first `n` images of `ds`: [<= n, 3, H, W] in [-1, 1]."""
    xs = [ds.try_load(i, ds.load) for i in range(min(n, len(ds)))]
    return torch.stack([x for x in xs if x is not None])


# ----------------------------------------------------------------------------- metrics


@torch.no_grad()
def evaluate_vqvae(model: VQVAE, images: torch.Tensor, batch_size: int = 64) -> dict:
    """Reconstruction and codebook metrics on images [N, 3, H, W] in [-1, 1].

    Returns {"val_mse" (on [-1, 1]), "val_psnr" (dB, images on [0, 1]), "val_psnr_mean_colour"
    (PSNR of replacing each image by its mean colour: the trivial baseline), "usage_scale"
    (per scale: fraction of the vocab used), "usage_all" (any scale)}.
    """
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    se = se_base = 0.0
    K, V = len(model.patch_nums), model.vocab_size
    used = torch.zeros(K, V, dtype=torch.bool)
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].to(dev)
        idx = model.img_to_idx(x)
        rec = model.idx_to_img(idx)
        se += (rec - x).pow(2).sum().item()
        se_base += (x.mean((2, 3), keepdim=True) - x).pow(2).sum().item()
        for k, t in enumerate(idx):
            used[k, t.flatten().cpu()] = True
    model.train(was_training)
    n = images.numel()
    mse, mse_base = se / n, se_base / n

    def psnr(m: float) -> float:  # [-1, 1] MSE -> [0, 1] PSNR
        return 10 * math.log10(4.0 / max(m, 1e-12))

    return {
        "val_mse": mse,
        "val_psnr": psnr(mse),
        "val_psnr_mean_colour": psnr(mse_base),
        "usage_scale": [round(u, 4) for u in used.float().mean(1).tolist()],
        "usage_all": used.any(0).float().mean().item(),
    }


@torch.no_grad()
def restart_dead_codes(
    model: VQVAE, f: torch.Tensor, hits: torch.Tensor, generator: torch.Generator
) -> int:
    """Re-initialise codes with zero `hits` [V] from encoder features f [B, C, h, w]; returns how
    many."""
    dead = (hits == 0).nonzero().flatten()
    if dead.numel() == 0:
        return 0
    pools = []
    for pn in model.patch_nums:  # residuals at scale k look like f pooled to pn_k
        p = F.adaptive_avg_pool2d(f, pn) if pn != f.shape[-1] else f
        pools.append(p.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    cand = torch.cat(pools).float()
    pick = torch.randint(0, len(cand), (dead.numel(),), generator=generator).to(cand.device)
    emb = model.quantize.embedding.weight
    noise = (
        torch.randn(dead.numel(), cand.shape[1], generator=generator).to(cand.device)
        * cand.std()
        * 0.05
    )
    emb[dead.to(emb.device)] = (cand[pick] + noise).to(emb.dtype)
    return int(dead.numel())


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass
class Parts:
    """What one VQVAE job trains and carries from step to step (all of it in the state file)."""

    model: VQVAE
    opt: torch.optim.Optimizer
    perceptual: PerceptualLoss | None
    disc: PatchDiscriminator | None
    disc_opt: torch.optim.Optimizer | None
    gen: torch.Generator  # the dead-code restarts' draws
    hits: torch.Tensor  # int64 [V]: code use since the last restart


def build(cfg: VQVAETrainConfig, device: torch.device) -> Parts:
    """Model, optimisers and optional losses, seeded by cfg.seed (in this order: the global
    RNG draws of the initialisations decide the weights)."""
    torch.manual_seed(cfg.seed)
    model = VQVAE(**cfg.vqvae_kwargs()).to(device)
    model.train()
    # (0.5, 0.9) is the usual choice with a GAN; without one the standard betas learn faster
    betas = (0.5, 0.9) if cfg.disc_weight > 0 else (0.9, 0.99)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=betas, weight_decay=0.0)
    perceptual = (
        PerceptualLoss(cfg.perceptual_weights, cfg.lpips_weights).to(device)
        if cfg.perceptual_weights is not None
        else None
    )
    disc = disc_opt = None
    if cfg.disc_weight > 0:
        disc = PatchDiscriminator().to(device)
        disc_opt = torch.optim.AdamW(
            disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0
        )
    return Parts(
        model,
        opt,
        perceptual,
        disc,
        disc_opt,
        gen=torch.Generator().manual_seed(cfg.seed + 1),
        hits=torch.zeros(cfg.vocab_size, dtype=torch.long),
    )


# ----------------------------------------------------------------------------- the step


def lr_at(step: int, cfg: VQVAETrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


@dataclasses.dataclass(frozen=True)
class StepResult:
    """Losses of one step, and the encoder features [B, C, h, w] (detached) it saw."""

    loss: float
    mse: float
    vq_loss: float
    features: torch.Tensor


def train_step(parts: Parts, x: torch.Tensor, step: int, cfg: VQVAETrainConfig) -> StepResult:
    """Optimisation step `step` (0-based) on crops x [B, 3, H, W]: the VQVAE's, then the
    discriminator's once it is on; counts the codes used into `parts.hits`."""
    model = parts.model
    for g in parts.opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    if step == 0 and cfg.restart_every:  # start the codebook on real features (k-means++-lite)
        with torch.no_grad():
            restart_dead_codes(model, model.encode(x), torch.zeros_like(parts.hits), parts.gen)
    f = model.encode(x)
    f_hat, vq_loss, idx = model.quantize(f)
    recon = model.decoder(model.post_quant_conv(f_hat))
    mse = F.mse_loss(recon, x)
    loss = mse + vq_loss
    if parts.perceptual is not None:
        loss = loss + cfg.perceptual_weight * parts.perceptual(recon, x)
    disc, disc_opt = parts.disc, parts.disc_opt
    if disc is None or disc_opt is None or step < cfg.disc_start:
        disc = disc_opt = None  # not (yet) adversarial
    if disc is not None:
        loss = loss - cfg.disc_weight * disc(recon).mean()
    parts.opt.zero_grad(set_to_none=True)
    loss.backward()
    parts.opt.step()
    if disc is not None and disc_opt is not None:  # hinge loss on real vs reconstructed patches
        d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(recon.detach())).mean()
        disc_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        disc_opt.step()
    for t in idx:
        parts.hits += torch.bincount(t.flatten().cpu(), minlength=cfg.vocab_size)
    return StepResult(loss.item(), mse.item(), vq_loss.item(), f.detach())


def restart_due(done: int, cfg: VQVAETrainConfig) -> bool:
    """Whether dead codes are restarted after `done` steps (every restart_every, not in the
    last 10% of training, so the final codebook is a trained one)."""
    return bool(cfg.restart_every) and done % cfg.restart_every == 0 and done < cfg.steps * 0.9


# ----------------------------------------------------------------------------- checkpoint state


def _stored_kwargs(cfg: VQVAETrainConfig) -> dict:
    """The VQVAE constructor arguments as the state file holds them (JSON types)."""
    return json.loads(json.dumps(cfg.vqvae_kwargs()))


def save_state(out: Path, parts: Parts, step: int, cfg: VQVAETrainConfig) -> None:
    """Write `out/train_state.pt` (atomic) after `step` steps; `vqvae.pt` too once training is
    complete (the launcher takes its existence as "stage done", so an intermediate one would
    be tokenised with a half-trained model)."""
    if step >= cfg.steps:
        save_model(out / MODEL_FILE, parts.model)
    st = {
        "step": step,
        "model": parts.model.state_dict(),
        "opt": parts.opt.state_dict(),
        "gen_rng": parts.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "hits": parts.hits.clone(),
        # the quantizer's hit-EMA counter is a plain attribute, not in the state dict
        "record_hit": int(getattr(parts.model.quantize, "record_hit", 0)),
        "vqvae_config": _stored_kwargs(cfg),
    }
    if parts.disc is not None and parts.disc_opt is not None:
        st["disc"], st["disc_opt"] = parts.disc.state_dict(), parts.disc_opt.state_dict()
    atomic_write(out / STATE_FILE, lambda f: torch.save(st, f))


def resume(out: Path, parts: Parts, cfg: VQVAETrainConfig) -> int:
    """Load `out/train_state.pt` into `parts` when there is one and drop the metric lines
    logged after it; returns the number of steps done (0 for a fresh start)."""
    path = out / STATE_FILE
    if not path.exists():
        return 0
    st = load_checkpoint_file(path, "VQVAE training state")
    if st["vqvae_config"] != _stored_kwargs(cfg):
        raise InputError(
            f"{path}: was trained with VQVAE {st['vqvae_config']}, config asks for "
            f"{cfg.vqvae_kwargs()}; use another out directory"
        )
    parts.model.load_state_dict(st["model"])
    parts.opt.load_state_dict(st["opt"])
    if parts.disc is not None and parts.disc_opt is not None and "disc" in st:
        parts.disc.load_state_dict(st["disc"])
        parts.disc_opt.load_state_dict(st["disc_opt"])
    parts.gen.set_state(st["gen_rng"])
    torch.set_rng_state(st["torch_rng"])
    parts.hits = st["hits"]
    if hasattr(parts.model.quantize, "record_hit"):
        parts.model.quantize.record_hit = int(st["record_hit"])
    start = int(st["step"])
    metrics = out / METRICS_FILE
    if metrics.exists():  # drop lines logged after the checkpoint
        # the shared reader: a torn last line (a kill mid-append) is skipped, as elsewhere
        keep = [r for r in read_jsonl(metrics) if r.get("step", 0) <= start]
        atomic_write_text(
            metrics, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep)
        )
    log.info("train_vqvae: resuming %s at step %d", out, start)
    return start


# ----------------------------------------------------------------------------- metrics log


def last_eval(out: Path) -> dict | None:
    """The latest evaluation line of `out/vqvae_metrics.jsonl` (None before the first)."""
    path = out / METRICS_FILE
    evals = [r for r in read_jsonl(path) if "val_psnr" in r] if path.exists() else []
    return evals[-1] if evals else None


def reconstruction_warning(record: dict | None) -> str | None:
    """A warning when an evaluation line's val PSNR is below the mean-colour baseline (the
    VQVAE reconstructs worse than replacing each image by its mean colour), else None."""
    if not record or "val_psnr_mean_colour" not in record:
        return None
    psnr, flat = record["val_psnr"], record["val_psnr_mean_colour"]
    if psnr >= flat:
        return None
    return (
        f"the VQVAE's val PSNR {psnr:.1f} dB is below the mean-colour baseline {flat:.1f} dB "
        f"(step {record.get('step', '?')}): it reconstructs worse than a flat colour per image, "
        "so its tokens carry little of the images; train it longer (prepare.vqvae.steps) or "
        "check its learning rate before training VARs on them"
    )


class MetricsLog:
    """`vqvae_metrics.jsonl` and the tracker (TensorBoard event files, W&B): each record
    goes to both, under the same step."""

    def __init__(self, out: Path, cfg: VQVAETrainConfig, start: int):
        self.path, self.patch_nums = out / METRICS_FILE, cfg.patch_nums
        self.tracker = Tracker(
            out,
            tensorboard=cfg.tensorboard,
            wandb=cfg.wandb,
            name=out.name,
            config=json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
            resume_step=start,
            job_type="vqvae",
        )

    def evaluation(self, step: int, result: dict) -> None:
        """An `evaluate_vqvae` result after `step` steps."""
        append_jsonl(self.path, {"step": step, **result})
        self.tracker.log(
            {
                "vqvae_val/mse": result["val_mse"],
                "vqvae_val/psnr": result["val_psnr"],
                "vqvae_val/psnr_mean_colour_baseline": result["val_psnr_mean_colour"],
                "vqvae_val/codebook_usage/all_scales": result["usage_all"],
                **{
                    f"vqvae_val/codebook_usage/s{k + 1:02d}_{pn}x{pn}": u
                    for k, (pn, u) in enumerate(zip(self.patch_nums, result["usage_scale"]))
                },
            },
            step,
        )
        self.tracker.flush()

    def training(self, line: dict) -> None:
        """A training line {"step", "loss", "mse", "vq_loss", "lr", "images_per_s"}."""
        append_jsonl(self.path, line)
        self.tracker.log(
            {f"vqvae_train/{k}": v for k, v in line.items() if k != "step"}, line["step"]
        )

    def restarts(self, step: int, n_dead: int) -> None:
        """Dead codes re-initialised after `step` steps (the file records only nonzero counts)."""
        if n_dead:
            append_jsonl(self.path, {"step": step, "dead_codes_restarted": n_dead})
        self.tracker.log({"vqvae_train/dead_codes_restarted": n_dead}, step)

    def close(self) -> None:
        self.tracker.close()


# ----------------------------------------------------------------------------- the loop


def train_vqvae(
    config: VQVAETrainConfig,
    *,
    progress: bool | None = None,
    report: Callable[[dict], None] | None = None,
) -> Path:
    """Train (or resume) the VQVAE described by `config`; returns the path of `out/vqvae.pt`.

    `report` (the launcher's relay) is called every `log_every` steps with {"done": step,
    "total": steps, "unit": "steps", "rate": images/s, "eta_s": seconds left, "psnr": the
    latest validation PSNR in dB (None before the first)}.
    """
    cfg, out = config, Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    parts = build(cfg, device)
    train_ds = ImageFolder(Path(cfg.images) / "train", cfg.resolution, train=True)
    val_ds = ImageFolder(
        Path(cfg.images) / "val", cfg.resolution, train=False, classes=train_ds.classes
    )
    val_x = val_images(val_ds, cfg.eval_images)
    start = resume(out, parts, cfg)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    provenance.record_job(out, start_step=start)  # provenance.json: code, versions, host, GPU
    if start >= cfg.steps:  # finished; a kill between the state and vqvae.pt leaves no model
        if not (out / MODEL_FILE).exists():
            save_state(out, parts, start, cfg)
        return out / MODEL_FILE

    metrics = MetricsLog(out, cfg, start)
    if start == 0:
        metrics.evaluation(0, evaluate_vqvae(parts.model, val_x))
    psnr = (last_eval(out) or {}).get("val_psnr")
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=cfg.steps, initial=start, desc="train_vqvae", disable=not show)
    watch = Stopwatch().start()  # training time: evaluations and checkpoints pause it
    sums, n, since = {"loss": 0.0, "mse": 0.0, "vq_loss": 0.0}, 0, 0.0  # since the last log line
    for step, (x, _) in zip(range(start, cfg.steps), train_loader(train_ds, cfg, start, device)):
        r = train_step(parts, x.to(device, non_blocking=True), step, cfg)
        done = step + 1
        if restart_due(done, cfg):
            metrics.restarts(
                done, restart_dead_codes(parts.model, r.features, parts.hits, parts.gen)
            )
            parts.hits.zero_()
        sums = {
            "loss": sums["loss"] + r.loss,
            "mse": sums["mse"] + r.mse,
            "vq_loss": sums["vq_loss"] + r.vq_loss,
        }
        n += 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            dt = max(watch.elapsed - since, 1e-9)
            metrics.training(
                {
                    "step": done,
                    **{k: v / n for k, v in sums.items()},
                    "lr": lr_at(step, cfg),
                    "images_per_s": n * cfg.batch_size / dt,
                }
            )
            bar.set_postfix(mse=f"{sums['mse'] / n:.4f}")
            if report is not None:
                rate = n / dt  # steps/s since the last log line
                report(
                    {
                        "done": done,
                        "total": cfg.steps,
                        "unit": "steps",
                        "rate": rate * cfg.batch_size,
                        "rate_unit": "images/s",
                        "eta_s": (cfg.steps - done) / rate,
                        "psnr": psnr,
                    }
                )
            sums, n, since = dict.fromkeys(sums, 0.0), 0, watch.elapsed
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            with watch.paused():
                result = evaluate_vqvae(parts.model, val_x)
                metrics.evaluation(done, result)
                save_state(out, parts, done, cfg)
            psnr = result["val_psnr"]
            log.info(
                "step %d: val PSNR %.2f dB (mean-colour baseline %.2f), usage per scale %s",
                done,
                psnr,
                result["val_psnr_mean_colour"],
                result["usage_scale"],
            )
    bar.close()
    metrics.close()
    record_skipped(out, train_ds.skipped | val_ds.skipped)
    warning = reconstruction_warning(last_eval(out))
    if warning:
        log.warning("warning: %s", warning)
    return out / MODEL_FILE


def record_skipped(out: Path, skipped: set[Path]) -> None:
    """`out/skipped_images.json`: the image files the VQVAE's training left out as
    unreadable (the image skip policy of scaling.data.images), over all its attempts."""
    path = out / SKIPPED_FILE
    try:
        before = json.loads(path.read_text()).get("skipped", [])
    except (OSError, ValueError, AttributeError):
        before = []
    files = sorted(set(before) | {str(p) for p in skipped})
    atomic_write_text(path, json.dumps({"count": len(files), "skipped": files}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m scaling.train_vqvae CONFIG.yaml (exit 2: a bad config, image folder or
    state file)."""
    p = argparse.ArgumentParser(
        prog="python -m scaling.train_vqvae", description=__doc__.split("\n")[0]
    )
    p.add_argument("config", help="YAML file with VQVAETrainConfig fields")
    a = p.parse_args(argv)
    setup_logging()

    def run() -> None:
        cfg = load_config(VQVAETrainConfig, a.config)
        # threads and TF32: scaling.core.runtime's choices for this process, restored on return
        with resolve(None, device=cfg.device, precision="fp32").applied():
            path = train_vqvae(cfg)
        last = last_eval(Path(cfg.out))
        if last is None:  # step 0 is always evaluated: its line was lost
            raise RuntimeFailure(f"{cfg.out}: no evaluation line in {METRICS_FILE}")
        print(
            f"VQVAE: {path}  val PSNR {last['val_psnr']:.2f} dB (mean-colour baseline "
            f"{last['val_psnr_mean_colour']:.2f}), codebook usage per scale {last['usage_scale']}, "
            f"all scales {last['usage_all']:.3f}"
        )

    return run_cli(
        run
    )  # a corrupt checkpoint is a core.safe_load.CheckpointError: an InputError, exit 2
