"""A small image classifier for sample quality where no Inception weights exist (the demo).

`python -m scaling.classifier IMAGES_ROOT OUT.pt` trains it on `IMAGES_ROOT/train` (an
ImageNet-style folder, e.g. the synthetic set) and reports its accuracy on `IMAGES_ROOT/val`;
the demo's preparation runs it as the `classifier` stage (seconds on a CPU). Its penultimate
layer is the feature space of the demo's Frechet distance, and its argmax the class a sample
is recognised as (`scaling.training.sample_features.ClassifierFeatures`).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from contracts.atomic import atomic_write
from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.data.images import ImageFolder, load_rgb

log = logging.getLogger(__name__)
FORMAT = "var-scaling-classifier-1"


class SmallClassifier(nn.Module):
    """Two conv stages (3x3 convs, ReLU, 2x2 max-pool), a `feature_dim` hidden layer, a linear head.

    forward(x [B, 3, R, R] in [-1, 1]) -> (features [B, feature_dim], logits [B, num_classes]).
    """

    def __init__(self, num_classes: int, resolution: int, width: int = 32, feature_dim: int = 64):
        super().__init__()
        if resolution % 4:
            raise InputError(f"classifier resolution must be a multiple of 4, got {resolution}")
        self.config = dict(
            num_classes=num_classes, resolution=resolution, width=width, feature_dim=feature_dim
        )
        self.resolution = resolution
        self.convs = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(2 * width * (resolution // 4) ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if (
            x.ndim != 4
            or x.shape[1] != 3
            or x.shape[2] != self.resolution
            or x.shape[3] != self.resolution
        ):
            raise ValueError(
                f"classifier expects images [B, 3, {self.resolution}, {self.resolution}], "
                f"got {list(x.shape)}"
            )
        feats = F.relu(self.fc(self.convs(x).flatten(1)))
        return feats, self.head(feats)


def load_split(
    root: Path, split: str, resolution: int | None = None, classes: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str], int, list[str]]:
    """The readable images of `root/split` as (images [N, 3, R, R] in [-1, 1], labels [N],
    classes, R, the files skipped as unreadable: the image skip policy of scaling.data.images)."""
    folder = root / split
    if resolution is None:  # the folder's own size (the first readable image; all must match)
        ds0 = ImageFolder(folder, 8, train=False, classes=classes)
        _, first = ds0.first_readable(0, lambda i: load_rgb(ds0.samples[i][0]))
        resolution = first.size[0]
    ds = ImageFolder(folder, resolution, train=False, classes=classes)
    items = ds.readable(range(len(ds)), ds.load)
    x = torch.stack([img for _, img in items])
    labels = torch.as_tensor(ds.labels[[i for i, _ in items]])
    return x, labels, ds.classes, resolution, sorted(str(p) for p in ds.skipped)


def train_classifier(
    images: str | Path,
    out: str | Path,
    *,
    epochs: int = 2,
    batch_size: int = 128,
    lr: float = 2e-3,
    width: int = 32,
    feature_dim: int = 64,
    seed: int = 0,
) -> Path:
    """Train on `images/train` (Adam, one-cycle lr, random horizontal flips), measure
    `images/val`, write the checkpoint to `out` atomically. The sweep's `prepare.classifier`
    section (`scaling.study.sweep.spec.ClassifierSpec`) holds these options.

    Does nothing if `out` exists (the stage resumes by being skipped). Returns `out`.
    """
    for name, value in (
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("width", width),
        ("feature_dim", feature_dim),
    ):
        if value < 1:
            raise InputError(f"classifier: {name} must be >= 1, got {value}")
    if not lr > 0:
        raise InputError(f"classifier: lr must be > 0, got {lr}")
    config = argparse.Namespace(
        epochs=epochs, batch_size=batch_size, lr=lr, width=width, feature_dim=feature_dim, seed=seed
    )
    images, out = Path(images), Path(out)
    if out.is_file():
        return out
    t0 = time.perf_counter()
    x, y, classes, res, skipped = load_split(images, "train")
    xv, yv, _, _, skipped_val = load_split(images, "val", res, classes)
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = SmallClassifier(len(classes), res, config.width, config.feature_dim)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    steps = config.epochs * ((len(x) + config.batch_size - 1) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), config.batch_size):
            b = order[i : i + config.batch_size]
            xb = x[b]
            flip = (
                torch.rand(len(b), generator=gen) < 0.5
            )  # the synthetic classes are flip-invariant
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb)[1], y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xv)[1].argmax(1) == yv).float().mean())
    state = {
        "format": FORMAT,
        "config": model.config,
        "classes": classes,
        "model": model.state_dict(),
        "val_accuracy": acc,
        "train_images": len(x),
        "val_images": len(xv),
        # files left out as unreadable (the image skip policy, scaling.data.images)
        "skipped_images": skipped + skipped_val,
        "train": vars(config),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: torch.save(state, f))
    log.info(
        "classifier: val accuracy %.4f on %d images (%d train images, %d unreadable "
        "skipped, %.1f s) -> %s",
        acc,
        len(xv),
        len(x),
        len(skipped) + len(skipped_val),
        state["seconds"],
        out,
    )
    return out


class ClassifierFileError(InputError):
    """The classifier file is missing or is not one written by `train_classifier`."""


def load_classifier(path: str | Path) -> tuple[SmallClassifier, dict]:
    """(model in eval mode, the checkpoint's metadata without weights); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ClassifierFileError(
            f"{path}: no classifier file; train one with `python -m scaling.classifier "
            f"IMAGES_ROOT {path}` (the demo's `classifier` preparation stage does)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise ClassifierFileError(
            f"{path}: not a readable torch file ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ClassifierFileError(
            f"{path}: not a classifier written by scaling.classifier (format {FORMAT!r} expected)"
        )
    model = SmallClassifier(**state["config"])
    model.load_state_dict(state["model"])
    return model.eval(), {k: v for k, v in state.items() if k != "model"}


def main(argv: list[str] | None = None) -> int:
    """CLI: train the classifier; prints its val accuracy. Exit 2 on a bad image folder."""
    p = argparse.ArgumentParser(
        prog="python -m scaling.classifier", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("images", type=Path, help="dataset root with train/ and val/ class folders")
    p.add_argument("out", type=Path, help="checkpoint to write (skipped if it exists)")
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args(argv)
    setup_logging()

    def run() -> None:
        out = train_classifier(a.images, a.out, epochs=a.epochs)
        _, meta = load_classifier(out)
        print(
            f"classifier {out}: val accuracy {meta['val_accuracy']:.4f} ({meta['val_images']} "
            "images)"
        )

    return run_cli(run)
