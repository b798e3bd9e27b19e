"""ImageNet-style image folders (`root/<class>/<image>`) and the official VAR transforms.

Transforms (VAR's `utils/data.py`, re-implemented on Pillow so torchvision is not needed):
resize the shorter side to round(1.125 * resolution) with Lanczos, random crop
(training) or centre crop (evaluation) to resolution x resolution, scale to [-1, 1].
Grayscale, palette, CMYK and RGBA images are converted to RGB (alpha is dropped, as in
the official loader).

Class indices are the sorted class-folder names. A dataset root keeps them in
`classes.json` (written by the synthetic generator and the tokenizer) so indices never
shift when a folder is added or missing on another machine.

One skip policy for unreadable images, used by every stage that reads images (VQVAE
training, tokenisation, the classifier, sample reference sets, online views): an unreadable or
truncated image never stops a pass. `ImageFolder.load` raises `UnreadableImage`, and
`ImageFolder.try_load` is the one place that turns that into a skip (a warning once per file,
counted in the folder's `skipped` and in this process's `skipped_files()`); `readable` loads
many and drops the unreadable ones (tokenizer, classifier, reference sets); `__getitem__`,
the VQVAE trainer's crops and online views take the next readable image instead
(`first_readable`). Each stage counts the files it skipped in its output (the token store's
meta.json, the VQVAE's `skipped_images.json`, the classifier's checkpoint, a sample line's
`sample_reference_skipped`) and the launcher's stage records (status.json `skipped_images`),
which `scaling.status` shows. Only when no image of a folder can be read is it an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from scaling.core.cli import InputError
from scaling.data.folders import (  # noqa: F401  (their home; importable from here too)
    CLASSES_FILE,
    IMG_EXTENSIONS,
    SPLIT_NAMES,
    ImageFolderError,
    ImageFolderMissing,
    find_classes,
    is_image_file,
    read_classes_file,
)

T = TypeVar("T")


class UnreadableImage(InputError):
    """An image file could not be decoded (corrupt, truncated or not an image)."""


# every file skipped by this process (`try_load`): a stage's job reports it when it ends
_SKIPPED: set[Path] = set()


def skipped_files() -> list[str]:
    """The image files this process skipped as unreadable so far (sorted)."""
    return sorted(str(p) for p in _SKIPPED)


def reset_skipped() -> None:
    """Forget `skipped_files()` (a stage run in the launcher's own process starts afresh)."""
    _SKIPPED.clear()


def load_rgb(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB; raises `UnreadableImage` on any decode error."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # PIL's advice for palette + transparency
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                # 16-bit / float grayscale: rescale to 8 bits instead of clipping
                arr = np.asarray(img, dtype=np.float64)
                if arr.size and arr.max() > 255:
                    arr = arr * (255.0 / arr.max())
                arr = np.clip(arr, 0, 255)
                img = Image.fromarray(arr.astype(np.uint8), "L")
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"cannot read image {path}: {e}") from None


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is `size` (torchvision `Resize(int)` rounding), Lanczos."""
    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    return img.resize((new_w, new_h), Image.Resampling.LANCZOS)


def to_tensor_pm1(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, H, W] in [-1, 1]."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def _resize_for_crop(img: Image.Image, resolution: int, resize_ratio: float) -> Image.Image:
    """The official transform's resize: shorter side to round(ratio * res), at least the crop."""
    img = resize_shorter(img, round(resize_ratio * resolution))
    w, h = img.size
    if w < resolution or h < resolution:
        raise ValueError(f"resized image {w}x{h} is smaller than the crop {resolution}")
    return img


def transform(
    img: Image.Image,
    resolution: int,
    train: bool,
    *,
    resize_ratio: float = 1.125,
    generator: torch.Generator | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """The official transform: shorter side to round(ratio * res), random/centre crop, [-1, 1].

    Returns [3, resolution, resolution]. `train` picks the random crop (drawn from
    `generator`, or torch's global RNG, which DataLoader seeds per worker); `flip` mirrors
    the result horizontally.
    """
    img = _resize_for_crop(img, resolution, resize_ratio)
    w, h = img.size
    if train:
        top = int(torch.randint(0, h - resolution + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - resolution + 1, (1,), generator=generator))
    else:  # torchvision CenterCrop rounding
        top = int(round((h - resolution) / 2.0))
        left = int(round((w - resolution) / 2.0))
    img = img.crop((left, top, left + resolution, top + resolution))
    x = to_tensor_pm1(img)
    return x.flip(-1) if flip else x


def crop_views(
    img: Image.Image,
    resolution: int,
    n_views: int,
    seed: tuple[int, ...],
    *,
    resize_ratio: float = 1.125,
    flip: bool = False,
) -> torch.Tensor:
    """`n_views` random crops of the official training transform, reproducibly.

    The image is resized once (shorter side to round(ratio * res), Lanczos); crop v's offsets
    come from numpy's generator seeded by (*seed, v), so the same (seed, v) always gives the
    same crop on any machine, shard or resume. With `flip`, each crop is followed by its
    mirror. Returns [n_views * (2 if flip else 1), 3, res, res] in [-1, 1].
    """
    img = _resize_for_crop(img, resolution, resize_ratio)
    w, h = img.size
    out = []
    for v in range(n_views):
        rng = np.random.default_rng([*seed, v])
        top = int(rng.integers(0, h - resolution + 1))
        left = int(rng.integers(0, w - resolution + 1))
        x = to_tensor_pm1(img.crop((left, top, left + resolution, top + resolution)))
        out += [x, x.flip(-1)] if flip else [x]
    return torch.stack(out)


class ImageFolder(torch.utils.data.Dataset):
    """`root/<class>/<image>` as a Dataset of (image [3, res, res] in [-1, 1], int label).

    `classes`: the class list to index with (names -> position). If None it is read from
    `classes.json` in `root` or its parent (the dataset root holding the splits), else the
    sorted folder names. A class folder with no images, or a folder with none at all, is an
    error; a folder listed in `classes` but absent is an error; a folder present but not
    listed is an error (its label would be undefined).
    """

    def __init__(
        self,
        root: str | Path,
        resolution: int,
        train: bool,
        classes: list[str] | None = None,
        *,
        resize_ratio: float = 1.125,
    ):
        self.root = Path(root)
        self.resolution = int(resolution)
        self.train = bool(train)
        self.resize_ratio = float(resize_ratio)
        present = find_classes(self.root)
        if classes is None:
            classes = read_classes_file(self.root) or read_classes_file(self.root.parent) or present
        self.classes = list(classes)
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [c for c in present if c not in index]
        if unknown:
            raise ImageFolderError(
                f"{self.root}: class folders {unknown[:5]} are not in the class list "
                f"({len(self.classes)} classes); regenerate classes.json or remove them"
            )
        missing = [c for c in self.classes if c not in present]
        if missing:
            raise ImageFolderError(
                f"{self.root}: class folders {missing[:5]} from the class list are missing"
            )
        self.samples: list[tuple[Path, int]] = []
        for c in present:
            files = sorted(
                p for p in (self.root / c).rglob("*") if p.is_file() and is_image_file(p)
            )
            if not files:
                raise ImageFolderError(
                    f"class folder {self.root / c} has no images "
                    f"(extensions: {', '.join(IMG_EXTENSIONS)})"
                )
            self.samples.extend((p, index[c]) for p in files)
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        """int64 [N]: the label of every file, in sample order."""
        return np.array([lab for _, lab in self.samples], dtype=np.int64)

    def load(
        self,
        index: int,
        *,
        train: bool | None = None,
        flip: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Image `index` as [3, res, res] in [-1, 1]; raises `UnreadableImage` if it cannot be
        read."""
        path, _ = self.samples[index]
        img = load_rgb(path)
        return transform(
            img,
            self.resolution,
            self.train if train is None else train,
            resize_ratio=self.resize_ratio,
            generator=generator,
            flip=flip,
        )

    def load_views(
        self, index: int, n_views: int, *, seed: int = 0, flip: bool = False
    ) -> torch.Tensor:
        """Views of image `index` as stored in a token store: [R, 3, res, res] in [-1, 1].

        n_views = 1: the evaluation transform (centre crop); more: `crop_views` seeded by
        (seed, index). With `flip`, each view is followed by its mirror (R = 2 n_views).
        Raises `UnreadableImage` if the file cannot be read.
        """
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        if n_views == 1:
            x = self.load(index, train=False)
            return torch.stack([x, x.flip(-1)] if flip else [x])
        return crop_views(
            load_rgb(self.samples[index][0]),
            self.resolution,
            n_views,
            (seed, index),
            resize_ratio=self.resize_ratio,
            flip=flip,
        )

    def try_load(self, index: int, load: Callable[[int], T]) -> T | None:
        """`load(index)` (e.g. `self.load`), or None when image `index` cannot be read: the
        skip, warned once per file and counted in `skipped`."""
        try:
            return load(index)
        except UnreadableImage as e:
            path = self.samples[index][0]
            if path not in self.skipped:
                self.skipped.add(path)
                _SKIPPED.add(path)
                warnings.warn(f"skipping {e}", stacklevel=3)
            return None

    def readable(self, indices: Iterable[int], load: Callable[[int], T]) -> list[tuple[int, T]]:
        """[(i, load(i))] for the readable images among `indices` (the others are skipped:
        `try_load`); `UnreadableImage` naming the folder when none of them can be read."""
        out = []
        for i in indices:
            item = self.try_load(int(i), load)
            if item is not None:
                out.append((int(i), item))
        if not out and len(self.samples):
            raise UnreadableImage(f"no readable image in {self.root}")
        return out

    def first_readable(self, index: int, load: Callable[[int], T]) -> tuple[int, T]:
        """(i, load(i)) for the first readable image i from `index` on (wrapping around);
        `UnreadableImage` when no image of the folder can be read."""
        for k in range(len(self.samples)):
            i = (index + k) % len(self.samples)
            item = self.try_load(i, load)
            if item is not None:
                return i, item
        raise UnreadableImage(f"no readable image in {self.root}")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(image [3, res, res], label); an unreadable file gives the next readable image."""
        i, x = self.first_readable(index, self.load)
        return x, self.samples[i][1]

    def summary(self) -> str:
        """One line: files, classes, and how many were skipped as unreadable so far."""
        return (
            f"{self.root}: {len(self.samples)} images in {len(self.classes)} classes, "
            f"{len(self.skipped)} unreadable skipped"
        )
