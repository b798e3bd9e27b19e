"""Stage 1: train a multi-scale VQVAE on an image folder.

    python -m scaling.train_vqvae CONFIG.yaml        # or train_vqvae(load_config(...)) as a job

Losses: MSE reconstruction + the quantizer's VQ loss (codebook + beta * commitment),
optionally a perceptual loss on local VGG16 weights (torchvision layout, plus LPIPS linear
heads if given; nothing is downloaded) and a PatchGAN hinge discriminator after
`disc_start` steps.

Dead codes: the codebook starts as encoder features of the first batch; every
`restart_every` steps, codebook entries no scale has picked in that window are re-initialised to encoder features of the current batch (area-pooled to a random
scale, plus a little noise), the usual cheap remedy when usage collapses.

Writes to `out/`: `vqvae.pt` (var_core.save_model, atomic; loadable by var_core.load_vqvae
and scaling.tokenize), `train_state.pt` (model, optimisers, step, RNG: re-running resumes),
`vqvae_metrics.jsonl` (training lines; evaluation lines with val MSE, PSNR, the PSNR of a
per-image mean-colour baseline, and codebook usage per scale on the val split), the same as
TensorBoard event files (`tensorboard: false` turns them off; `wandb:` adds W&B, see
scaling.tracking) and `provenance.json` (scaling.provenance).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.core import provenance
from scaling.core.atomic import append_jsonl, atomic_write, atomic_write_text, read_jsonl
from scaling.core.config_io import dump_yaml, load_config
from scaling.core.runtime import pick_device, resolve
from scaling.core.seeds import step_seed
from scaling.core.tracking import Tracker
from scaling.data.images import ImageFolder, UnreadableImage
from scaling.data.token_store import TrainOrder
from scaling.data.vqvae_config import VQVAETrainConfig


# ----------------------------------------------------------------------------- losses

_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (features index)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on a frozen VGG16 trunk; images [B, 3, H, W] in [-1, 1] -> scalar.

    `vgg_path`: a torchvision-layout VGG16 state dict (`features.<i>.weight/bias`); with
    `lpips_path` (LPIPS `lin<k>.model.1.weight` [1, C, 1, 1]) the per-channel weights are
    LPIPS's, else uniform (a plain normalised-feature distance).
    """

    def __init__(self, vgg_path: Path, lpips_path: Path | None = None):
        super().__init__()
        layers, cin = [], 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers)
        sd = torch.load(vgg_path, map_location="cpu", weights_only=True)
        own = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        missing = set(self.features.state_dict()) - set(own)
        if missing:
            raise ValueError(f"{vgg_path}: not a torchvision VGG16 state dict (missing features.{sorted(missing)[0]})")
        self.features.load_state_dict({k: own[k] for k in self.features.state_dict()})
        widths = (64, 128, 256, 512, 512)
        lins = [torch.ones(1, c, 1, 1) / c for c in widths]
        if lpips_path is not None:
            lp = torch.load(lpips_path, map_location="cpu", weights_only=True)
            try:
                lins = [lp[f"lin{k}.model.1.weight"].float().reshape(1, c, 1, 1) for k, c in enumerate(widths)]
            except KeyError as e:
                raise ValueError(f"{lpips_path}: not an LPIPS weights file (missing {e})") from None
        for k, w in enumerate(lins):
            self.register_buffer(f"lin{k}", w)
        # LPIPS input scaling (ImageNet statistics expressed on [-1, 1] inputs)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.MaxPool2d) and min(h.shape[-2:]) < 2:
                break  # small images: use the layers that still have pixels
            h = layer(h)
            if i in _VGG16_TAPS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            if i == _VGG16_TAPS[-1]:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self._taps(x), self._taps(y)
        return sum((getattr(self, f"lin{k}") * (a - b).pow(2)).sum(1).mean() for k, (a, b) in enumerate(zip(fx, fy)))


class PatchDiscriminator(nn.Module):
    """A small PatchGAN: image [B, 3, H, W] -> logits [B, 1, h, w] (one per patch)."""

    def __init__(self, ch: int = 64, n_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = ch
        for i in range(1, n_layers + 1):
            c_next = ch * min(2 ** i, 8)
            layers += [nn.Conv2d(c, c_next, 4, 2 if i < n_layers else 1, 1), nn.GroupNorm(8, c_next), nn.LeakyReLU(0.2)]
            c = c_next
        layers.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------- data

class _Crops(torch.utils.data.Dataset):
    """Keys (image index, crop seed) -> (training crop [3, H, W], label); unreadable -> next image."""

    def __init__(self, ds: ImageFolder):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        j, seed = key
        g = torch.Generator().manual_seed(int(seed))
        for k in range(len(self.ds)):
            i = (j + k) % len(self.ds)
            try:
                return self.ds.load(i, train=True, generator=g), self.ds.samples[i][1]
            except UnreadableImage as e:
                warnings.warn(f"skipping {e}")
        raise UnreadableImage(f"no readable image in {self.ds.root}")


class _Batches:
    """Batch sampler: TrainOrder batches from step `start` to `steps`, keys with crop seeds."""

    def __init__(self, n: int, batch: int, seed: int, start: int, steps: int):
        self.order = TrainOrder(n, batch, seed)
        self.order.load_state_dict({"epoch": start // self.order.batches_per_epoch,
                                    "position": start % self.order.batches_per_epoch})
        self.seed, self.start, self.steps, self.batch = seed, start, steps, batch

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.steps):
            idx = self.order.next()
            yield [(int(j), step_seed(self.seed, step) * self.batch + b) for b, j in enumerate(idx)]


# ----------------------------------------------------------------------------- metrics

@torch.no_grad()
def evaluate_vqvae(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> dict:
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
        x = images[s:s + batch_size].to(dev)
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

    return {"val_mse": mse, "val_psnr": psnr(mse), "val_psnr_mean_colour": psnr(mse_base),
            "usage_scale": [round(u, 4) for u in used.float().mean(1).tolist()],
            "usage_all": used.any(0).float().mean().item()}


@torch.no_grad()
def restart_dead_codes(model: nn.Module, f: torch.Tensor, hits: torch.Tensor, generator: torch.Generator) -> int:
    """Re-initialise codes with zero `hits` [V] from encoder features f [B, C, h, w]; returns how many."""
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
    noise = torch.randn(dead.numel(), cand.shape[1], generator=generator).to(cand.device) * cand.std() * 0.05
    emb[dead.to(emb.device)] = (cand[pick] + noise).to(emb.dtype)
    return int(dead.numel())


# ----------------------------------------------------------------------------- training

def _lr_at(step: int, cfg: VQVAETrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train_vqvae(config: VQVAETrainConfig, *, progress: bool | None = None,
                report: Callable[[dict], None] | None = None) -> Path:
    """Train (or resume) the VQVAE described by `config`; returns the path of `out/vqvae.pt`.

    `report` (the launcher's relay) is called every `log_every` steps with {"done": step,
    "total": steps, "unit": "steps", "rate": images/s, "eta_s": seconds left, "psnr": the
    latest validation PSNR in dB (None before the first)}.
    """
    from tqdm import tqdm

    from var_core import VQVAE, save_model
    cfg = config
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = VQVAE(**cfg.vqvae_kwargs()).to(dev)
    model.train()
    # (0.5, 0.9) is the usual choice with a GAN; without one the standard betas learn faster
    betas = (0.5, 0.9) if cfg.disc_weight > 0 else (0.9, 0.99)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=betas, weight_decay=0.0)
    perceptual = (PerceptualLoss(cfg.perceptual_weights, cfg.lpips_weights).to(dev)
                  if cfg.perceptual_weights is not None else None)
    disc = disc_opt = None
    if cfg.disc_weight > 0:
        disc = PatchDiscriminator().to(dev)
        disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # dead-code restarts

    train_ds = ImageFolder(Path(cfg.images) / "train", cfg.resolution, train=True)
    val_ds = ImageFolder(Path(cfg.images) / "val", cfg.resolution, train=False, classes=train_ds.classes)
    val_images = []
    for i in range(min(cfg.eval_images, len(val_ds))):
        try:
            val_images.append(val_ds.load(i))
        except UnreadableImage as e:
            warnings.warn(f"skipping {e}")
    val_x = torch.stack(val_images)

    state_path, metrics_path = out / "train_state.pt", out / "vqvae_metrics.jsonl"
    start = 0
    hits = torch.zeros(cfg.vocab_size, dtype=torch.long)  # code use since the last restart
    if state_path.exists():
        from scaling.core.safe_load import load_checkpoint_file

        st = load_checkpoint_file(state_path, "VQVAE training state")
        if st["vqvae_config"] != json.loads(json.dumps(cfg.vqvae_kwargs())):
            raise ValueError(f"{state_path}: was trained with VQVAE {st['vqvae_config']}, config asks for "
                             f"{cfg.vqvae_kwargs()}; use another out directory")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        if disc is not None and "disc" in st:
            disc.load_state_dict(st["disc"])
            disc_opt.load_state_dict(st["disc_opt"])
        gen.set_state(st["gen_rng"])
        torch.set_rng_state(st["torch_rng"])
        start = int(st["step"])
        hits = st["hits"]
        if hasattr(model.quantize, "record_hit"):
            model.quantize.record_hit = int(st["record_hit"])
        if metrics_path.exists():  # drop lines logged after the checkpoint
            # the shared reader: a torn last line (a kill mid-append) is skipped, as elsewhere
            keep = [r for r in read_jsonl(metrics_path) if r.get("step", 0) <= start]
            atomic_write_text(metrics_path, "".join(json.dumps(r, separators=(",", ":")) + "\n"
                                                    for r in keep))
        print(f"train_vqvae: resuming {out} at step {start}", file=sys.stderr)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    provenance.record_job(out, start_step=start)  # provenance.json: code, versions, host, GPU

    def save(step: int) -> None:
        # vqvae.pt appears only when training is complete: the launcher takes its existence
        # as "stage done", so an intermediate one would be tokenised with a half-trained model
        if step >= cfg.steps:
            save_model(out / "vqvae.pt", model)
        st = {"step": step, "model": model.state_dict(), "opt": opt.state_dict(),
              "gen_rng": gen.get_state(), "torch_rng": torch.get_rng_state(), "hits": hits.clone(),
              # the quantizer's hit-EMA counter is a plain attribute, not in the state dict
              "record_hit": int(getattr(model.quantize, "record_hit", 0)),
              "vqvae_config": json.loads(json.dumps(cfg.vqvae_kwargs()))}
        if disc is not None:
            st["disc"], st["disc_opt"] = disc.state_dict(), disc_opt.state_dict()
        atomic_write(state_path, lambda f: torch.save(st, f))

    tracker = Tracker(out, tensorboard=cfg.tensorboard, wandb=cfg.wandb, name=out.name,
                      config=json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
                      resume_step=start, job_type="vqvae") if start < cfg.steps else Tracker.off()

    def log_eval(step: int) -> dict:
        rec = {"step": step, **evaluate_vqvae(model, val_x)}
        append_jsonl(metrics_path, rec)
        tracker.log({"vqvae_val/mse": rec["val_mse"], "vqvae_val/psnr": rec["val_psnr"],
                     "vqvae_val/psnr_mean_colour_baseline": rec["val_psnr_mean_colour"],
                     "vqvae_val/codebook_usage/all_scales": rec["usage_all"],
                     **{f"vqvae_val/codebook_usage/s{k + 1:02d}_{pn}x{pn}": u for k, (pn, u)
                        in enumerate(zip(cfg.patch_nums, rec["usage_scale"]))}}, step)
        tracker.flush()
        return rec

    if start >= cfg.steps:
        if not (out / "vqvae.pt").exists():
            save(start)
        return out / "vqvae.pt"
    if start == 0:
        log_eval(0)

    loader = torch.utils.data.DataLoader(
        _Crops(train_ds), batch_sampler=_Batches(len(train_ds), cfg.batch_size, cfg.seed, start, cfg.steps),
        num_workers=cfg.num_workers, pin_memory=dev.type == "cuda", persistent_workers=False)
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    bar = tqdm(total=cfg.steps, initial=start, desc="train_vqvae", disable=disable)
    t0, acc = time.perf_counter(), {"loss": 0.0, "mse": 0.0, "vq": 0.0, "n": 0}
    step = start
    psnr = None
    if metrics_path.exists():
        evals = [json.loads(ln) for ln in metrics_path.read_text().splitlines() if "val_psnr" in ln]
        psnr = evals[-1]["val_psnr"] if evals else None
    for x, _ in loader:
        x = x.to(dev, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        if step == 0 and cfg.restart_every:  # start the codebook on real features (k-means++-lite)
            with torch.no_grad():
                restart_dead_codes(model, model.encode(x), torch.zeros_like(hits), gen)
        f = model.encode(x)
        f_hat, vq_loss, idx = model.quantize(f)
        recon = model.decoder(model.post_quant_conv(f_hat))
        mse = F.mse_loss(recon, x)
        loss = mse + vq_loss
        if perceptual is not None:
            loss = loss + cfg.perceptual_weight * perceptual(recon, x)
        use_disc = disc is not None and step >= cfg.disc_start
        if use_disc:
            loss = loss - cfg.disc_weight * disc(recon).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if use_disc:  # hinge loss on real vs reconstructed patches
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(recon.detach())).mean()
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_opt.step()
        for t in idx:
            hits += torch.bincount(t.flatten().cpu(), minlength=cfg.vocab_size)
        step += 1
        if cfg.restart_every and step % cfg.restart_every == 0 and step < cfg.steps * 0.9:
            n_dead = restart_dead_codes(model, f.detach(), hits, gen)
            hits.zero_()
            if n_dead:
                append_jsonl(metrics_path, {"step": step, "dead_codes_restarted": n_dead})
            tracker.log({"vqvae_train/dead_codes_restarted": n_dead}, step)
        acc["loss"] += loss.item()
        acc["mse"] += mse.item()
        acc["vq"] += vq_loss.item()
        acc["n"] += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            dt = time.perf_counter() - t0
            n = acc["n"]
            line = {"step": step, "loss": acc["loss"] / n, "mse": acc["mse"] / n,
                    "vq_loss": acc["vq"] / n, "lr": _lr_at(step - 1, cfg),
                    "images_per_s": n * cfg.batch_size / max(dt, 1e-9)}
            append_jsonl(metrics_path, line)
            tracker.log({f"vqvae_train/{k}": v for k, v in line.items() if k != "step"}, step)
            bar.set_postfix(mse=f"{acc['mse'] / n:.4f}")
            if report is not None:
                rate = n / max(dt, 1e-9)  # steps/s over the last log_every steps
                report({"done": step, "total": cfg.steps, "unit": "steps",
                        "rate": rate * cfg.batch_size, "rate_unit": "images/s",
                        "eta_s": (cfg.steps - step) / rate, "psnr": psnr})
            t0, acc = time.perf_counter(), {"loss": 0.0, "mse": 0.0, "vq": 0.0, "n": 0}
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            rec = log_eval(step)
            psnr = rec["val_psnr"]
            save(step)
            bar.write(f"step {step}: val PSNR {rec['val_psnr']:.2f} dB (mean-colour baseline "
                      f"{rec['val_psnr_mean_colour']:.2f}), usage per scale {rec['usage_scale']}")
    bar.close()
    tracker.close()
    return out / "vqvae.pt"


def main(argv: list[str] | None = None) -> None:
    """CLI: python -m scaling.train_vqvae CONFIG.yaml"""
    p = argparse.ArgumentParser(prog="python -m scaling.train_vqvae", description=__doc__.split("\n")[0])
    p.add_argument("config", help="YAML file with VQVAETrainConfig fields")
    a = p.parse_args(argv)
    from scaling.core.config_io import ConfigError
    try:
        cfg = load_config(VQVAETrainConfig, a.config)
    except ConfigError as e:
        p.exit(2, f"error: {e}\n")
    try:
        # threads and TF32: scaling.runtime's choices for this process, restored on return
        with resolve(None, device=cfg.device, precision="fp32").applied():
            path = train_vqvae(cfg)
    except (ValueError, FileNotFoundError) as e:  # bad image folder, mismatched resume state
        p.exit(2, f"error: {e}\n")
    last = [r for r in read_jsonl(Path(cfg.out) / "vqvae_metrics.jsonl") if "val_psnr" in r][-1]
    print(f"VQVAE: {path}  val PSNR {last['val_psnr']:.2f} dB (mean-colour baseline "
          f"{last['val_psnr_mean_colour']:.2f}), codebook usage per scale {last['usage_scale']}, "
          f"all scales {last['usage_all']:.3f}")


if __name__ == "__main__":
    main()
