"""``python -m scaling.sample_eval RUN_DIR``: sample quality of a trained run.

1. Draws a balanced set of class-conditional samples (the run config's `samples` section:
   per_class, cfg, top_k, top_p, seed; the official FID settings by default) into
   ``RUN_DIR/samples/step<step>-<settings hash>/shard_<i>.npz`` (uint8 images [n, H, W, 3]
   and labels [n]), one shard at a time, each written atomically: an interrupted run resumes
   at the first missing shard, and other settings go to another folder.
2. Extracts features of the samples and of the reference (a val image folder, or an .npz
   with reference statistics `mu`, `sigma` and/or images `arr_0`, as the ADM suite's
   reference batches) with the chosen feature network (`scaling.sample_features`).
3. Computes the metrics (`analysis.sample_metrics`) and appends one line to the run's
   metrics.jsonl with ``eval: "samples"``: with Inception features `fid`, `is`, `is_std`,
   `precision`, `recall`; with the demo classifier `sample_acc` (class accuracy of the
   samples), `sample_err` (1 - accuracy) and `sample_fd` (Frechet distance between samples
   and reference in the classifier's feature space); always the settings (`sample_*`). The
   tidy table joins the line to the run's evaluation at the same step.

Exit status: 2 for a configuration or input error (a missing weights file, wrong reference
statistics, a bad sample folder), 1 for a runtime failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from analysis.sample_metrics import (
    SAMPLE_PANELS,
    class_accuracy,
    frechet_distance,
    gaussian_stats,
    inception_score,
    precision_recall,
)
from contracts.atomic import atomic_write, atomic_write_json
from contracts.metrics import MetricsRecord
from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.core.config_io import Located, build, to_dict
from scaling.core.rundir import RunDir
from scaling.core.runtime import pick_device
from scaling.core.stopwatch import Stopwatch
from scaling.data.images import ImageFolder
from scaling.training.config import SamplesConfig, load_run_config
from scaling.training.sample_features import (
    ClassifierFeatures,
    FeatureError,
    FeatureNet,
    InceptionFeatures,
    extract,
)
from scaling.training.trained_models import load_run_var, load_store_vqvae
from var_core import sample

log = logging.getLogger(__name__)
SAMPLE_KEYS = ("per_class", "classes", "cfg", "top_k", "top_p", "seed", "shard_size")


class SampleEvalError(InputError):
    """Bad input to the sample evaluation (message names the file and what is wrong)."""


# ----------------------------------------------------------------------------- samples


def sample_folder(run_dir: str | Path, cfg: SamplesConfig, step: int) -> Path:
    """Where the samples of these settings at this step go (the hash covers what they depend on)."""
    key = json.dumps({k: getattr(cfg, k) for k in SAMPLE_KEYS}, sort_keys=True)
    return (
        Path(run_dir) / "samples" / f"step{step:08d}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    )


def _batch_seed(seed: int, shard: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, shard, batch]).generate_state(1)[0])


def draw_samples(var, vqvae, cfg: SamplesConfig, folder: Path, num_classes: int) -> list[Path]:
    """Write the balanced sample set into `folder` (labels i % C for image i); resumes.

    Each shard holds `shard_size` images (the last one fewer), sampled in batches of
    `batch_size` with a seed derived from (seed, shard, batch). Returns the shard paths.
    """
    total = cfg.per_class * num_classes
    folder.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(cfg, k) for k in SAMPLE_KEYS} | {
        "num_classes": num_classes,
        "total": total,
    }
    settings_file = folder / "settings.json"
    if settings_file.exists() and json.loads(settings_file.read_text()) != settings:
        raise SampleEvalError(
            f"{settings_file}: the folder holds samples of other settings; remove it"
        )
    atomic_write_json(settings_file, settings)
    labels = np.arange(total) % num_classes
    shards = []
    for s, start in enumerate(range(0, total, cfg.shard_size)):
        path = folder / f"shard_{s:05d}.npz"
        shards.append(path)
        if path.exists():
            continue
        lab = labels[start : start + cfg.shard_size]
        imgs = []
        for b, i in enumerate(range(0, len(lab), cfg.batch_size)):
            x = sample(
                var,
                vqvae,
                torch.as_tensor(lab[i : i + cfg.batch_size]),
                cfg=cfg.cfg,
                top_k=cfg.top_k,
                top_p=cfg.top_p,
                seed=_batch_seed(cfg.seed, s, b),
            )
            imgs.append(
                (x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            )

        shard = np.concatenate(imgs)

        def write(f, imgs=shard, lab=lab):
            buf = io.BytesIO()
            np.savez(buf, images=imgs, labels=lab.astype(np.int64))
            f.write(buf.getvalue())

        atomic_write(path, write)
        log.info("samples: wrote %s (%d images)", path, len(lab))
    return shards


def read_samples(folder: str | Path, image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """All shards of a sample folder -> (uint8 images [N, H, W, 3], labels [N]).

    Every shard must hold `images` uint8 [n, S, S, 3] (S = image_size when given) and
    `labels` [n]; otherwise SampleEvalError names the shard.
    """
    folder = Path(folder)
    files = sorted(folder.glob("shard_*.npz"))
    if not files:
        raise SampleEvalError(f"{folder}: no sample shards (shard_*.npz)")
    images, labels = [], []
    for f in files:
        try:
            with np.load(f) as z:
                x, y = z["images"], z["labels"]
        except (OSError, ValueError, KeyError) as e:
            raise SampleEvalError(
                f"{f}: not a sample shard with `images` and `labels` ({e})"
            ) from None
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or x.shape[1] != x.shape[2]:
            raise SampleEvalError(
                f"{f}: images must be uint8 [n, S, S, 3], got {x.dtype} {list(x.shape)}"
            )
        if image_size is not None and x.shape[1] != image_size:
            raise SampleEvalError(
                f"{f}: images are {x.shape[1]}x{x.shape[2]} px but {image_size}x{image_size} "
                f"are expected (the model's / feature network's image size)"
            )
        if y.shape != (len(x),):
            raise SampleEvalError(f"{f}: labels must be [{len(x)}], got {list(y.shape)}")
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


# ----------------------------------------------------------------------------- reference


def _image_folder_uint8(root: Path, size: int, cap: int | None) -> tuple[np.ndarray, int]:
    """(the readable images of `root` as uint8 [N, size, size, 3], files skipped as
    unreadable: the image skip policy of scaling.data.images)."""
    ds = ImageFolder(root, size, train=False)  # shorter side resized, centre crop
    n = len(ds) if cap is None else min(cap, len(ds))
    idx = np.linspace(0, len(ds) - 1, n).round().astype(int) if n < len(ds) else range(n)
    items = ds.readable(idx, ds.load)
    out = np.stack(
        [
            ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            for _, x in items
        ]
    )
    return out, len(ds.skipped)


def load_reference(
    ref: str | None, net: FeatureNet, image_size: int, cap: int | None
) -> dict[str, Any]:
    """Reference statistics for `net`: {'mu', 'sigma', 'features' (or None), 'n', 'source'}.

    `ref`: an image folder (class subfolders; images resized and centre-cropped to
    `image_size`), or an .npz with `mu` [D] and `sigma` [D, D] and/or `arr_0` uint8 images
    [N, H, W, 3]. Statistics of another feature size are an error.
    """
    if ref is None:
        raise SampleEvalError(
            "samples.reference is not set: give a val image folder or an .npz of "
            "reference statistics (for ImageNet 256: the ADM suite's "
            "VIRTUAL_imagenet256_labeled.npz, fetched once and copied here)"
        )
    path = Path(ref)
    if not path.exists():
        raise SampleEvalError(
            f"{path}: no such reference (samples.reference); give a val image folder or "
            f"an .npz with mu/sigma or arr_0 (for ImageNet 256: fetch the ADM reference "
            f"batch VIRTUAL_imagenet256_labeled.npz and put it at this path)"
        )
    out: dict[str, Any] = {"source": str(path), "features": None}
    if path.is_dir():
        imgs, out["skipped"] = _image_folder_uint8(path, image_size, cap)
        out["features"], _ = extract(net, imgs)
        out["mu"], out["sigma"] = gaussian_stats(out["features"])
        out["n"] = len(imgs)
        return out
    try:
        z = np.load(path)
    except (OSError, ValueError) as e:
        raise SampleEvalError(
            f"{path}: not a readable .npz of reference statistics ({e})"
        ) from None
    with z:
        keys = set(z.files)
        if not ({"mu", "sigma"} <= keys or "arr_0" in keys):
            raise SampleEvalError(
                f"{path}: needs `mu` and `sigma` (statistics) or `arr_0` (images); "
                f"has {sorted(keys)}"
            )
        if "arr_0" in keys:
            imgs = z["arr_0"]
            if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[3] != 3:
                raise SampleEvalError(
                    f"{path}: arr_0 must be uint8 images [N, H, W, 3], got "
                    f"{imgs.dtype} {list(imgs.shape)}"
                )
            if net.image_size is not None and imgs.shape[1:3] != (net.image_size, net.image_size):
                raise SampleEvalError(
                    f"{path}: arr_0 images are {imgs.shape[1]}x{imgs.shape[2]} px, the "
                    f"feature network takes {net.image_size}x{net.image_size}"
                )
            if cap is not None:
                imgs = imgs[:cap]
            out["features"], _ = extract(net, imgs)
            out["n"] = len(imgs)
        if {"mu", "sigma"} <= keys:
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
            if mu.shape != (net.dim,) or sigma.shape != (net.dim, net.dim):
                raise SampleEvalError(
                    f"{path}: reference statistics have {mu.shape[0] if mu.ndim else '?'} "
                    f"features (mu {list(mu.shape)}, sigma {list(sigma.shape)}) but the "
                    f"feature network {net.name} gives {net.dim}: they were computed with "
                    f"another network"
                )
            out["mu"], out["sigma"] = mu, sigma
            out.setdefault("n", None)
        else:
            out["mu"], out["sigma"] = gaussian_stats(out["features"])
    return out


# ----------------------------------------------------------------------------- metrics


def compute_metrics(
    images: np.ndarray, labels: np.ndarray, reference: dict[str, Any], net: FeatureNet, kind: str
) -> dict[str, float | None]:
    """The metrics of `kind` ('inception' or 'classifier') for uint8 samples [N, H, W, 3]."""
    feats, logits = extract(net, images)
    mu, sigma = gaussian_stats(feats)
    fd = frechet_distance(mu, sigma, reference["mu"], reference["sigma"])
    if kind == "classifier":
        acc = class_accuracy(logits, labels)
        return {"sample_acc": acc, "sample_err": 1.0 - acc, "sample_fd": fd}
    is_mean, is_std = inception_score(logits)
    out: dict[str, float | None] = {
        "fid": fd,
        "is": is_mean,
        "is_std": is_std,
        "precision": None,
        "recall": None,
    }
    if reference["features"] is not None:
        out["precision"], out["recall"] = precision_recall(reference["features"], feats)
    else:
        log.warning(
            "reference %s has statistics only: precision and recall need its images (arr_0)",
            reference["source"],
        )
    return out


def feature_net(cfg: SamplesConfig, device: str | torch.device = "cpu") -> FeatureNet:
    """The feature network the config names (errors say what file to fetch or train)."""
    if cfg.features == "classifier":
        if cfg.classifier is None:
            raise FeatureError(
                "samples.classifier is not set: train one with `python -m scaling.classifier "
                "IMAGES_ROOT OUT.pt` (the demo's `classifier` preparation stage)"
            )
        return ClassifierFeatures(cfg.classifier, device)
    return InceptionFeatures(cfg.inception_weights, device)


def _last_eval(run: RunDir) -> MetricsRecord:
    evals = [r for r in run.read_metrics() if r.kind == "full"]
    if not evals:
        raise SampleEvalError(
            f"{run.metrics}: no full evaluation yet; sample quality is measured on trained runs"
        )
    return evals[-1]


def has_samples_line(run_dir: str | Path, config: SamplesConfig | None = None) -> bool:
    """Whether metrics.jsonl already holds a sample-quality line of these settings (default:
    the run config's) at the run's last evaluation step."""
    run = RunDir(run_dir)
    cfg = config or load_run_config(run.config).samples
    records = run.read_metrics()
    evals = [r for r in records if r.kind == "full"]
    if not evals:
        return False
    folder = str(sample_folder(run.path, cfg, int(evals[-1].step or 0)))
    return any(r.kind == "samples" and r.samples.get("sample_folder") == folder for r in records)


def evaluate_run(
    run_dir: str | Path,
    config: SamplesConfig | None = None,
    *,
    features: FeatureNet | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Sample, measure and append the metrics line of a finished run; returns that line
    (status.json records `samples: done` and the folder).

    `config` defaults to the run config's `samples` section; `features` overrides the
    feature network (tests use a small one); `device` defaults to cuda when available.
    """
    run = RunDir(run_dir)
    if not run.config.exists():
        raise SampleEvalError(f"{run.path}: not a run directory (no config.yaml)")
    run_cfg = load_run_config(run.config)
    cfg = config or run_cfg.samples
    state = run.status().state
    if state != "done":
        raise SampleEvalError(
            f"{run.path}: the run is {state}, not done; sample quality is measured on finished runs"
        )
    last = _last_eval(run)
    dev = torch.device(device) if device else pick_device("auto")
    timer = Stopwatch().start()
    var, _ = load_run_var(run.path, dev)  # the run's own files first: a bad checkpoint is named
    net = features if features is not None else feature_net(cfg, dev)
    kind = (
        "classifier"
        if (features is None and cfg.features == "classifier")
        else getattr(net, "kind", cfg.features)
    )
    vqvae = load_store_vqvae(run_cfg.data.store, dev)
    num_classes = cfg.classes or var.num_classes
    if num_classes > var.num_classes:
        raise SampleEvalError(
            f"samples.classes: must be <= the model's {var.num_classes} classes, got {num_classes}"
        )
    folder = sample_folder(run.path, cfg, int(last.step or 0))
    draw_samples(var, vqvae, cfg, folder, num_classes)
    images, labels = read_samples(folder, vqvae.image_size)
    if net.image_size is not None and net.image_size != vqvae.image_size:
        raise SampleEvalError(
            f"{folder}: samples are {vqvae.image_size} px but the feature network "
            f"{net.name} takes {net.image_size} px"
        )
    reference = load_reference(cfg.reference, net, vqvae.image_size, cfg.reference_images)
    metrics = compute_metrics(images, labels, reference, net, kind)
    record = MetricsRecord(  # the compute columns of the evaluation it measured
        run=last.run,
        depth=last.depth,
        params=last.params,
        step=last.step,
        images=last.images,
        tokens=last.tokens,
        flops=last.flops,
        flops_6nd=last.flops_6nd,
        eval="samples",
        samples=dict(
            **metrics,
            sample_count=int(len(images)),
            sample_per_class=cfg.per_class,
            sample_classes=num_classes,
            sample_cfg=cfg.cfg,
            sample_top_k=cfg.top_k,
            sample_top_p=cfg.top_p,
            sample_seed=cfg.seed,
            sample_features=net.name,
            sample_reference=reference["source"],
            sample_reference_images=reference["n"],
            sample_reference_skipped=reference.get("skipped", 0),
            sample_folder=str(folder),
            sample_s=round(timer.elapsed, 2),
        ),
    )
    run.append_metrics(record)
    run.update_status(samples="done", samples_error=None, samples_folder=str(folder))
    log.info(
        "%s: %s",
        run.path.name,
        ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if v is not None),
    )
    return record.columns()


# ----------------------------------------------------------------------------- CLI


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m scaling.sample_eval", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories (finished runs)")
    for f in dataclasses.fields(SamplesConfig):
        if f.name != "after_training":
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                dest=f.name,
                default=None,
                help=f"override samples.{f.name} of the run config",
            )
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace, cfg: SamplesConfig) -> SamplesConfig:
    """`cfg` with the command line's --options (YAML values, paths as given)."""
    data = to_dict(cfg)
    for f in dataclasses.fields(SamplesConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = (
                yaml.safe_load(value)
                if f.name not in ("inception_weights", "classifier", "reference")
                else value
            )
    return build(SamplesConfig, data, Located("the command line"), ("samples",))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: one metrics line per run; exit 2 on bad input, 1 on a runtime
    failure (scaling.core.cli)."""
    args = _parse(argv)
    setup_logging()
    return run_cli(lambda: _evaluate_all(args))


def _evaluate_all(args: argparse.Namespace) -> int:
    """Evaluate each run directory of the command line in turn; one summary line each."""
    for run_dir in args.run_dirs:
        cfg = _overrides(
            args,
            load_run_config(run_dir / "config.yaml").samples
            if (run_dir / "config.yaml").exists()
            else SamplesConfig(),
        )
        rec = evaluate_run(run_dir, cfg, device=args.device)
        shown = {k: rec[k] for k, _ in SAMPLE_PANELS if rec.get(k) is not None}
        print(
            f"{run_dir}: "
            + "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
            + f"  ({rec['sample_count']} samples, cfg {rec['sample_cfg']}, "
            f"top-k {rec['sample_top_k']}, "
            f"top-p {rec['sample_top_p']}, seed {rec['sample_seed']}; {rec['sample_s']:.1f} s)"
        )
    return 0
