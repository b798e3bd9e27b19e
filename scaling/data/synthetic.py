"""A synthetic class-conditional image set, written as an ImageNet-style image folder.

    python -m scaling.synthetic --out data/synth --classes 10 --train-per-class 500 \\
        --val-per-class 50 --resolution 32 --seed 0

Layout: `<out>/{train,val}/<class>/<index>.png`, `<out>/classes.json` (the sorted class
names = label order) and `<out>/synthetic.json` (the parameters; written last, so its
presence means the set is complete; re-running with the same parameters does nothing).

Why it suits a scaling study: each class is a combination of independent factors at
several scales, and every image draws its own random values around them, so there is real
within-class entropy whose fine detail is predictable from the coarse content:

- coarse (1x1-2x2 token maps): a two-colour gradient background; the class fixes the hue
  pair and the gradient direction, the image jitters hue, brightness and angle;
- mid scales: 1-3 shapes (disc, square, triangle, ring, cross, diamond); the class fixes the
  shape type, typical size and the region they sit in, the image draws positions and sizes;
  the shape colour is derived from the image's own background hue (so a model that reads
  the coarse tokens can predict it);
- finest scale: a texture on the background (stripes of a class-specific orientation and
  period, a checkerboard, dots or fine noise), with a random phase per image.

Everything is deterministic: image (split, class, i) is drawn from its own seeded
generator, so the bytes do not depend on the order of generation or on the set's size.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from contracts.atomic import atomic_write_json
from scaling.core.cli import InputError, run_cli, setup_logging

FORMAT = "var-synthetic/1"
SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond")
TEXTURES = ("stripes", "checker", "dots", "noise")
# where a class's shapes sit: (centre u, centre v, spread) in unit coordinates
REGIONS = (
    (0.5, 0.5, 0.18),
    (0.3, 0.3, 0.12),
    (0.7, 0.3, 0.12),
    (0.3, 0.7, 0.12),
    (0.7, 0.7, 0.12),
    (0.5, 0.3, 0.2),
    (0.5, 0.7, 0.2),
)
SPLIT_IDS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class ClassStyle:
    """The factors that define one class."""

    hue: float  # background hue in [0, 1)
    hue_shift: float  # the gradient's second colour: hue + hue_shift
    angle: float  # gradient direction (radians)
    shape: str
    shape_size: float  # typical radius as a fraction of the image side
    n_shapes: int  # maximum number of shapes (1..3)
    region: int  # index into REGIONS
    shape_hue_offset: float  # shape hue = image's background hue + this
    texture: str
    tex_angle: float
    tex_period: float  # in pixels at the image resolution (>= 3 so it is resolvable)


def class_style(c: int, num_classes: int, seed: int, resolution: int) -> ClassStyle:
    """Class `c`'s factors: spread over each factor's options so classes differ in several."""
    rng = np.random.default_rng([seed, 7919, c])
    # different moduli per factor, so two classes rarely share every factor
    return ClassStyle(
        hue=(c / num_classes + 0.05 * rng.random()) % 1.0,
        hue_shift=(0.12, 0.3, 0.5)[c % 3] * (1 if (c // 3) % 2 == 0 else -1),
        angle=2 * math.pi * ((c * 3) % 8) / 8,
        shape=SHAPES[(c * 5 + c // len(SHAPES)) % len(SHAPES)],
        shape_size=(0.12, 0.17, 0.22)[(c // 2) % 3],
        n_shapes=1 + (c % 3),
        region=(c * 2 + c // len(REGIONS)) % len(REGIONS),
        shape_hue_offset=(0.5, 0.33, 0.66, 0.0)[(c // 4) % 4],
        texture=TEXTURES[(c + c // 4) % len(TEXTURES)],
        tex_angle=math.pi * ((c * 3 + 1) % 4) / 4,
        tex_period=max(3.0, resolution / (4 + 2 * ((c * 7) % 4))),
    )


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1)))


def _shape_mask(
    shape: str, x: np.ndarray, y: np.ndarray, r: float, rot: float, px: float
) -> np.ndarray:
    """Soft (anti-aliased) mask of a shape centred at the origin; x, y in pixels; r radius."""
    c, s = math.cos(rot), math.sin(rot)
    xr, yr = c * x + s * y, -s * x + c * y
    if shape == "disc":
        d = np.hypot(x, y) - r
    elif shape == "square":
        d = np.maximum(np.abs(xr), np.abs(yr)) - r * 0.85
    elif shape == "diamond":
        d = (np.abs(xr) + np.abs(yr)) - r * 1.1
    elif shape == "ring":
        d = np.abs(np.hypot(x, y) - r * 0.8) - max(r * 0.25, px)
    elif shape == "cross":
        w = max(r * 0.3, px)
        d = np.minimum(
            np.maximum(np.abs(xr) - r, np.abs(yr) - w), np.maximum(np.abs(yr) - r, np.abs(xr) - w)
        )
    elif shape == "triangle":
        # equilateral triangle: max over three half-planes
        d = np.full_like(x, -np.inf)
        for k in range(3):
            a = rot + 2 * math.pi * k / 3 + math.pi / 2
            d = np.maximum(d, x * math.cos(a) + y * math.sin(a) - r * 0.6)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - d / px, 0.0, 1.0)


def render(style: ClassStyle, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """One image of a class: uint8 [H, W, 3]."""
    n = resolution
    v, u = (np.mgrid[0:n, 0:n] + 0.5) / n  # rows, cols in (0, 1)
    # coarse: gradient between two colours along a jittered direction
    hue = style.hue + rng.normal(0, 0.025)
    val = 0.55 + rng.uniform(-0.2, 0.2)
    angle = style.angle + rng.normal(0, 0.3)
    t = ((u - 0.5) * math.cos(angle) + (v - 0.5) * math.sin(angle)) * 1.2 + 0.5
    t = np.clip(t, 0, 1)[..., None]
    c0 = _hsv(hue, 0.75, val + 0.2)
    c1 = _hsv(hue + style.hue_shift, 0.8, val - 0.15)
    img = (1 - t) * c0 + t * c1
    # finest: a texture with a random phase, modulating brightness
    x, y = u * n, v * n
    phase = rng.uniform(0, 2 * math.pi)
    along = x * math.cos(style.tex_angle) + y * math.sin(style.tex_angle)
    across = -x * math.sin(style.tex_angle) + y * math.cos(style.tex_angle)
    w = 2 * math.pi / style.tex_period
    if style.texture == "stripes":
        tex = np.sign(np.sin(w * along + phase))
    elif style.texture == "checker":
        tex = np.sign(np.sin(w * along + phase) * np.sin(w * across + phase))
    elif style.texture == "dots":
        tex = (np.cos(w * along + phase) * np.cos(w * across) > 0.5) * 2.0 - 1.0
    else:
        tex = rng.uniform(-1, 1, size=(n, n))
    amp = 0.12 + rng.uniform(-0.03, 0.03)
    img = img * (1 + amp * tex[..., None])
    # mid: shapes in the class's region, colour tied to this image's background hue
    cu, cv, spread = REGIONS[style.region]
    k = int(rng.integers(1, style.n_shapes + 1))
    shape_rgb = _hsv(hue + style.shape_hue_offset, 0.9, 0.95 if val < 0.55 else 0.3)
    for _ in range(k):
        pu = np.clip(cu + rng.normal(0, spread), 0.15, 0.85)
        pv = np.clip(cv + rng.normal(0, spread), 0.15, 0.85)
        r = style.shape_size * n * math.exp(rng.normal(0, 0.15))
        rot = rng.uniform(0, 2 * math.pi) if style.shape != "disc" else 0.0
        m = _shape_mask(style.shape, x - pu * n, y - pv * n, r, rot, px=1.0)[..., None]
        shade = 1 + 0.25 * ((x - pu * n) / max(r, 1.0))[..., None] * 0.5  # light from the left
        img = img * (1 - m) + m * np.clip(shape_rgb * shade, 0, 1)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def class_names(num_classes: int) -> list[str]:
    """Zero-padded names, so the sorted folder order is the label order."""
    width = max(3, len(str(num_classes - 1)))
    return [f"class_{c:0{width}d}" for c in range(num_classes)]


@dataclass(frozen=True)
class SyntheticParams:
    """Everything that determines the generated bytes (stored in `synthetic.json`)."""

    num_classes: int
    train_per_class: int
    val_per_class: int
    resolution: int
    seed: int
    format: str = FORMAT


def _check_complete(out: Path, params: SyntheticParams) -> bool:
    manifest = out / "synthetic.json"
    if not manifest.exists():
        return False
    try:
        stored = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    if stored.get("params") != asdict(params):
        raise InputError(
            f"{out} already holds a synthetic set with other parameters "
            f"({stored.get('params')}); asked for {asdict(params)}: use another --out or delete it"
        )
    return True


def generate(
    out: str | Path,
    *,
    num_classes: int,
    train_per_class: int,
    val_per_class: int,
    resolution: int,
    seed: int = 0,
    progress: bool | None = None,
) -> Path:
    """Write the set to `out` (see the module docstring) and return `out`.

    Does nothing if `out` already holds a complete set with the same parameters; refuses a
    complete set with different ones; an incomplete set (no manifest) is regenerated.
    """
    for name, value, low in (
        ("num_classes", num_classes, 1),
        ("train_per_class", train_per_class, 1),
        ("val_per_class", val_per_class, 1),
        ("resolution", resolution, 8),
    ):
        if not isinstance(value, int) or value < low:
            raise InputError(f"synthetic: {name} must be an integer >= {low}, got {value!r}")
    out = Path(out)
    params = SyntheticParams(num_classes, train_per_class, val_per_class, resolution, seed)
    if _check_complete(out, params):
        return out
    names = class_names(num_classes)
    jobs = [
        (split, c, i)
        for split, per in (("train", train_per_class), ("val", val_per_class))
        for c in range(num_classes)
        for i in range(per)
    ]
    styles = [class_style(c, num_classes, seed, resolution) for c in range(num_classes)]
    for split in SPLIT_IDS:
        if (out / split).exists():
            shutil.rmtree(out / split)  # an incomplete earlier attempt
        for name in names:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    disable = (not sys.stderr.isatty()) if progress is None else not progress
    for split, c, i in tqdm(jobs, desc="synthetic images", disable=disable, mininterval=1.0):
        rng = np.random.default_rng([seed, SPLIT_IDS[split], c, i])
        arr = render(styles[c], resolution, rng)
        Image.fromarray(arr).save(out / split / names[c] / f"{i:06d}.png", compress_level=1)
    atomic_write_json(out / "classes.json", names)
    atomic_write_json(
        out / "synthetic.json",
        {
            "params": asdict(params),
            "counts": {"train": num_classes * train_per_class, "val": num_classes * val_per_class},
            "styles": {names[c]: asdict(styles[c]) for c in range(num_classes)},
        },
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI: see the module docstring. Exit 2 on bad parameters or a set made with others."""
    p = argparse.ArgumentParser(
        prog="python -m scaling.synthetic", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", required=True, help="output folder (dataset root)")
    p.add_argument("--classes", type=int, default=10, help="number of classes")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--resolution", type=int, default=32, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    setup_logging()

    def run() -> None:
        out = generate(
            a.out,
            num_classes=a.classes,
            train_per_class=a.train_per_class,
            val_per_class=a.val_per_class,
            resolution=a.resolution,
            seed=a.seed,
        )
        n = a.classes * (a.train_per_class + a.val_per_class)
        print(f"synthetic set: {out} ({a.classes} classes, {n} images at {a.resolution}px)")

    return run_cli(run)
