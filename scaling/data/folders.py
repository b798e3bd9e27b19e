"""Image folders as files on disk, torch-free: `root/<split>/<class>/<image>`.

What an image is (its extension), the class list (`classes.json` or the sorted class-folder
names) and how many images a split holds, counted without opening one: what the launch
table and the planner need before anything is tokenised. `scaling.data.images` reads the
images themselves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from scaling.core.cli import InputError

IMG_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".pbm",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)
SPLIT_NAMES = ("train", "val", "test")
CLASSES_FILE = "classes.json"


class ImageFolderError(InputError):
    """An image folder (or its classes.json) is empty, inconsistent or not a split."""


class ImageFolderMissing(ImageFolderError, FileNotFoundError):
    """An image folder does not exist."""


def is_image_file(path: Path) -> bool:
    """True for a file whose extension is a known image format (case-insensitive)."""
    return path.suffix.lower() in IMG_EXTENSIONS and not path.name.startswith(".")


def find_classes(root: str | Path) -> list[str]:
    """Sorted names of the class folders under `root` (an error if there are none)."""
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderMissing(f"image folder {root} does not exist or is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ImageFolderError(
            f"image folder {root} has no class folders (expected {root}/<class>/<image>)"
        )
    if set(classes) <= set(SPLIT_NAMES) and all(
        any(q.is_dir() for q in (root / c).iterdir()) for c in classes
    ):
        raise ImageFolderError(
            f"{root} looks like a dataset root with splits {classes}, not a split: "
            f"pass {root}/{classes[0]} (a folder of class folders)"
        )
    return classes


def read_classes_file(dataset_root: str | Path) -> list[str] | None:
    """The class list saved in `<dataset_root>/classes.json`, or None if there is none."""
    path = Path(dataset_root) / CLASSES_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ImageFolderError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list) or not all(isinstance(c, str) for c in data) or not data:
        raise ImageFolderError(f"{path}: expected a non-empty JSON list of class-folder names")
    if len(set(data)) != len(data):
        raise ImageFolderError(f"{path}: class names are not unique")
    return data


def count_split(root: str | Path) -> tuple[int, int]:
    """(images, classes) of a split folder `root/<class>/<image>`, from file names only (an
    unreadable file counts: the tokenizer skips it later). Errors as `find_classes`."""
    root = Path(root)
    classes = find_classes(root)
    images = 0
    for c in classes:
        for _, _, files in os.walk(root / c):
            images += sum(1 for name in files if is_image_file(Path(name)))
    return images, len(classes)
