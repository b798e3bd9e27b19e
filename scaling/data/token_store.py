"""The token store: pre-tokenised images, memory-mapped, and the batch readers over it.

Layout of a store directory:

    meta.json                 {"format": "var-token-store/1", "vqvae_sha256", "vqvae_config",
                               "vocab_size", "patch_nums", "L", "image_size", "classes",
                               "num_classes", "splits": {"train": {"count", "images", "views",
                               "flip", "transform", "view_seed", "skipped"}, ...}}
    <split>/tokens.npy        uint16 [count, L]: img_to_idx of each image, coarse to fine
    <split>/labels.npy        int32 [count]
    <split>/shards/<i>-of-<n>/{tokens.npy, labels.npy, progress.json, done.json}
                              one shard's part while tokenising (see `ShardWriter`)
    plan.json                 what the shards are writing (checked by every shard and the merge)

Views: each image of a split has R = views x (2 with flips) consecutive rows, image j at rows
R*j .. R*j + R-1 (same label). views = 1 is the evaluation transform (centre crop); views K > 1
are K random crops of the official training transform, each followed by its mirror when
flips are stored (so K = 1 with flips is rows 2j, 2j+1: the image and its mirror). Training
reads one of the R rows per image per epoch: by default each image walks through its rows in
a seeded permutation, every row once before any repeats (`permuted_views`), or, as the
official trainer's fresh crops, an independent draw per epoch (`draw_views`); budgets count
images, never rows. A run may train on a seeded, class-balanced subset of the images
(`subset_order`).
`meta.json` is written last by the merge (`write_meta`, the one writer of it), so a store with
it is complete.

Readers: `TokenStore` (open + validate), `TrainOrder` (a seeded, resumable stream of
global batches of indices), `eval_batches` (a fixed pass, split across ranks).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from contracts.atomic import atomic_write, atomic_write_json
from scaling.core.cli import InputError
from scaling.core.safe_load import load_checkpoint_file

if TYPE_CHECKING:  # torch is imported where tensors are made: the meta helpers stay torch-free
    import torch

    from var_core import MultiScaleQuantizer

FORMAT = "var-token-store/1"
MAX_VOCAB = 65536  # tokens are stored as uint16
META_KEYS = (
    "format",
    "vqvae_sha256",
    "vqvae_config",
    "vocab_size",
    "patch_nums",
    "L",
    "image_size",
    "classes",
    "num_classes",
    "splits",
)


class TokenStoreError(InputError):
    """A token store is missing, incomplete or corrupt."""


class TokenStoreMismatch(TokenStoreError):
    """A token store was made for another VQVAE / vocab / patch_nums than expected."""


def mismatch(
    path: Path | str, field: str, stored: Any, expected: Any, source: str
) -> TokenStoreMismatch:
    """The error for one differing field: names the store, the field and both values."""
    return TokenStoreMismatch(
        f"token store {path}: {field} is {stored!r} but the {source} expects {expected!r}; "
        f"re-tokenise into another directory (python -m scaling.tokenize) or fix the {source}"
    )


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TokenStoreError(f"{what}: {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenStoreError(f"{what}: {path} is not valid JSON ({e})") from None


def read_meta(store: str | Path) -> dict[str, Any]:
    """A store's meta.json as written (keys unchecked: `TokenStore` validates them); raises
    `TokenStoreError` when it is missing or not a JSON object. Torch-free."""
    path = Path(store) / "meta.json"
    meta = _read_json(path, f"token store {store}")
    if not isinstance(meta, dict):
        raise TokenStoreError(f"token store {path}: expected a JSON object")
    return meta


class TokenStore:
    """An open, validated token store (see the module docstring for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise TokenStoreError(
                f"token store {self.path} does not exist (make one with python -m scaling.tokenize)"
            )
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            hint = (
                " (tokenisation started but was not merged: run scaling.tokenize ... --merge)"
                if (self.path / "plan.json").exists()
                else ""
            )
            raise TokenStoreError(f"token store {self.path}: meta.json is missing{hint}")
        meta = read_meta(self.path)
        missing = [k for k in META_KEYS if k not in meta]
        if missing:
            raise TokenStoreError(f"token store {meta_path}: missing keys {missing}")
        if meta["format"] != FORMAT:
            raise TokenStoreError(
                f"token store {meta_path}: format {meta['format']!r}, expected {FORMAT!r}"
            )
        from var_core.counting import tokens_per_image  # here: importing a reader stays light

        if tokens_per_image(meta["patch_nums"]) != meta["L"]:
            raise TokenStoreError(
                f"token store {meta_path}: L={meta['L']} does not match "
                f"patch_nums {meta['patch_nums']}"
            )
        if len(meta["classes"]) != meta["num_classes"]:
            raise TokenStoreError(
                f"token store {meta_path}: {len(meta['classes'])} classes listed, "
                f"num_classes={meta['num_classes']}"
            )
        self.meta: dict = meta
        self._tokens: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        for split, info in meta["splits"].items():
            tokens = self._open(split, "tokens.npy", np.uint16, (info["count"], meta["L"]))
            labels = np.array(self._open(split, "labels.npy", np.int32, (info["count"],)))
            if labels.size and (labels.min() < 0 or labels.max() >= meta["num_classes"]):
                raise TokenStoreError(
                    f"token store {self.path}/{split}/labels.npy: labels outside "
                    f"[0, {meta['num_classes']})"
                )
            self._tokens[split], self._labels[split] = tokens, labels

    def _open(self, split: str, name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        path = self.path / split / name
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise TokenStoreError(f"token store {self.path}: {split}/{name} is missing") from None
        except ValueError as e:
            raise TokenStoreError(f"token store {path}: not a readable .npy file ({e})") from None
        if arr.dtype != np.dtype(dtype) or tuple(arr.shape) != shape:
            raise TokenStoreError(
                f"token store {path}: expected {np.dtype(dtype).name} {list(shape)}, "
                f"found {arr.dtype.name} {list(arr.shape)} (corrupt or partial store)"
            )
        return arr

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.meta["patch_nums"])

    @property
    def L(self) -> int:
        return int(self.meta["L"])

    @property
    def num_classes(self) -> int:
        return int(self.meta["num_classes"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def split_size(self, name: str) -> int:
        """Number of rows (every view and flip copy) in split `name`."""
        if name not in self._tokens:
            raise TokenStoreError(
                f"token store {self.path} has no split {name!r} (has {self.splits})"
            )
        return int(self.meta["splits"][name]["count"])

    def split_images(self, name: str) -> int:
        """Number of images in split `name` (what epochs and budgets count)."""
        return self.split_size(name) // self.rows_per_image(name)

    def rows_per_image(self, name: str) -> int:
        """R: rows stored per image of split `name` (views x 2 with flips)."""
        self.split_size(name)  # names an unknown split
        return rows_per_image(self.meta["splits"][name])

    def views(self, name: str) -> int:
        """K: augmented views per image of split `name` (1 = one centre crop)."""
        return int(self.meta["splits"][name].get("views", 1))

    def flip(self, name: str) -> bool:
        """Whether split `name` stores each view's horizontal mirror too."""
        return bool(self.meta["splits"][name].get("flip", False))

    def transform(self, name: str) -> str:
        """The transform split `name` was made with ("center_crop" or "random_crop")."""
        return str(self.meta["splits"][name].get("transform", transform_name(self.views(name))))

    def view_rows(
        self,
        name: str,
        images: np.ndarray,
        epoch: int,
        seed: int,
        *,
        views: int | None = None,
        draw: str = "permutation",
    ) -> np.ndarray:
        """Rows to read for `images` (int [B]) in `epoch`: one row each (int64 [B]).

        `views`: use only the first this many stored views of each image (None: all; with
        flips each view brings its mirror); `draw`: "permutation" (`permuted_views`: every
        row once before any repeats) or "independent" (`draw_views`)."""
        R = self.rows_per_image(name)
        used = R if views is None else used_rows(self.meta["splits"][name], views)
        images = np.asarray(images, dtype=np.int64)
        if used == 1:
            return images * R
        pick = {"permutation": permuted_views, "independent": draw_views}[draw]
        return images * R + pick(seed, epoch, images, used)

    def image_labels(self, name: str) -> np.ndarray:
        """The class of each image of split `name`: int32 [images] (its first row's label)."""
        return np.asarray(self._labels[name][:: self.rows_per_image(name)])

    def check_matches(
        self,
        *,
        vocab_size: int,
        patch_nums,
        vqvae_sha256: str | None = None,
        source: str = "config",
    ) -> None:
        """Raise `TokenStoreMismatch` unless the store was made with these settings."""
        if int(vocab_size) != self.vocab_size:
            raise mismatch(self.path, "vocab_size", self.vocab_size, int(vocab_size), source)
        if tuple(patch_nums) != self.patch_nums:
            raise mismatch(self.path, "patch_nums", list(self.patch_nums), list(patch_nums), source)
        if vqvae_sha256 is not None and vqvae_sha256 != self.meta["vqvae_sha256"]:
            raise mismatch(
                self.path, "vqvae_sha256", self.meta["vqvae_sha256"], vqvae_sha256, source
            )

    def check_tokens(self, split: str, chunk_rows: int = 65536) -> None:
        """Raise TokenStoreError unless every token of `split` is in [0, vocab_size).

        Reads the split once (memory-mapped, in chunks): a bad token found here costs a
        second at start-up instead of an IndexError hours into training.
        """
        tokens = self._tokens[split]
        for start in range(0, len(tokens), chunk_rows):
            block = np.asarray(tokens[start : start + chunk_rows])
            if block.size and int(block.max()) >= self.vocab_size:
                row = start + int(np.argmax(block.max(axis=1) >= self.vocab_size))
                raise TokenStoreError(
                    f"token store {self.path}/{split}/tokens.npy: row {row} holds token "
                    f"{int(np.asarray(tokens[row]).max())}, outside the vocabulary [0, "
                    f"{self.vocab_size}) of meta.json"
                )

    def check_quantizer(self, quantizer: Any) -> None:
        """Raise TokenStoreError unless the store's quantizer has its meta's vocab, scales and
        code width (meta's `vqvae_config.z_channels` sizes the VAR's input; the quantizer's
        codebook must have that width)."""
        z_channels = self.meta.get("vqvae_config", {}).get("z_channels")
        for field, mine in (
            ("vocab_size", self.vocab_size),
            ("patch_nums", list(self.patch_nums)),
            ("z_channels", z_channels),
        ):
            theirs = getattr(quantizer, field, None)
            theirs = list(theirs) if isinstance(theirs, (tuple, list)) else theirs
            if theirs is not None and mine is not None and theirs != mine:
                raise TokenStoreError(
                    f"token store {self.path}: meta.json says {field} {mine} but its quantizer "
                    f"({QUANTIZER_FILE}) has {theirs}; the store was not made by one tokenisation"
                )

    def gather(self, split: str, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows `indices` of `split` -> (tokens int64 [B, L], labels int64 [B])."""
        n = self.split_size(split)
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"token store {self.path}/{split}: index out of range [0, {n})")
        order = np.argsort(idx, kind="stable")  # read the memmap in file order
        rows = np.empty((idx.size, self.L), dtype=np.uint16)
        rows[order] = self._tokens[split][idx[order]]
        import torch

        tokens = torch.from_numpy(rows.astype(np.int64))
        labels = torch.from_numpy(self._labels[split][idx].astype(np.int64))
        return tokens, labels

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={self.split_size(s)}" for s in self.splits)
        patch_nums = list(self.patch_nums)
        return f"TokenStore({self.path}, V={self.vocab_size}, patch_nums={patch_nums}, {counts})"


def store_identity(
    *,
    vqvae_sha256: str,
    vqvae_config: dict,
    vocab_size: int,
    patch_nums: Sequence[int],
    image_size: int,
    classes: Sequence[str],
) -> dict:
    """The fields of meta.json that decide what a store's tokens mean (all but "splits").

    `format`, `L` and `num_classes` are derived here; tokenize's plan.json holds the same
    fields, so a shard run with another VQVAE or class list is refused before it writes.
    """
    from var_core.counting import tokens_per_image

    pn = [int(p) for p in patch_nums]
    return {
        "format": FORMAT,
        "vqvae_sha256": vqvae_sha256,
        "vqvae_config": vqvae_config,
        "vocab_size": int(vocab_size),
        "patch_nums": pn,
        "L": tokens_per_image(pn),
        "image_size": int(image_size),
        "classes": list(classes),
        "num_classes": len(classes),
    }


def write_meta(
    store: str | Path, identity: dict, splits: dict[str, dict], *, vqvae_path: str | None = None
) -> dict:
    """Write `store/meta.json` atomically: the last file of a store (its presence = complete).

    `identity`: `store_identity(...)`; `splits`: {split: {"count": rows, ...}} (see the module
    docstring; `split_meta` builds the full entry); `vqvae_path`: where the VQVAE was
    (informational: decoding samples needs its decoder). Returns the written dict.
    """
    meta = {
        **identity,
        **({"vqvae_path": vqvae_path} if vqvae_path is not None else {}),
        "splits": splits,
    }
    atomic_write_json(Path(store) / "meta.json", meta)
    return meta


def split_meta(
    count: int, *, views: int = 1, flip: bool = False, view_seed: int = 0, skipped: int = 0
) -> dict:
    """One split's meta.json entry for `count` rows made with `views` views (x2 with `flip`)."""
    name = transform_name(views)
    return {
        "count": count,
        "images": count // (views * (2 if flip else 1)),
        "views": views,
        "flip": flip,
        "transform": name,
        "transform_text": TRANSFORM_TEXT[name],
        "view_seed": view_seed,
        "skipped": skipped,
    }


def rows_per_image(split_meta: dict) -> int:
    """R = views x (2 if flips) for one split's entry of meta.json (older stores: views 1)."""
    return int(split_meta.get("views", 1)) * (2 if split_meta.get("flip", False) else 1)


def used_rows(split_meta: dict, views: int | None) -> int:
    """Rows per image a run reads when it uses the first `views` stored views of a split
    (None: all of them): views x (2 if flips). Raises TokenStoreError when the split holds
    fewer views. The first k of K stored random-crop views are exactly the views a k-view
    store holds (crop v of image j is seeded by (view_seed, j, v))."""
    stored = int(split_meta.get("views", 1))
    if views is None:
        return rows_per_image(split_meta)
    if views > stored:
        raise TokenStoreError(
            f"data.use_views: {views} views per image asked, but the token store's train split "
            f"holds {stored}; re-tokenise with --views {views} or more"
        )
    return views * (2 if split_meta.get("flip", False) else 1)


def images_in_split(split_meta: dict) -> int:
    """Images of one split's meta.json entry: its "images", else rows / R (older stores)."""
    if "images" in split_meta:
        return int(split_meta["images"])
    return int(split_meta["count"]) // rows_per_image(split_meta)


def transform_name(views: int) -> str:
    """The transform that makes `views` views per image: one centre crop, or random crops."""
    return "center_crop" if views == 1 else "random_crop"


TRANSFORM_TEXT = {
    "center_crop": "shorter side to round(1.125 x res) (Lanczos), centre crop res x res, [-1, 1] "
    "(the official evaluation transform)",
    "random_crop": "shorter side to round(1.125 x res) (Lanczos), random crop res x res drawn from "
    "a generator seeded by (view_seed, image, view), [-1, 1] (the official training "
    "transform)",
}

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (a well-mixed counter-based hash)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK64)
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(_MASK64)
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(_MASK64)
        return x ^ (x >> np.uint64(31))


def draw_views(seed: int, epoch: int, images: np.ndarray, n_views: int) -> np.ndarray:
    """Which of `n_views` rows each image uses in `epoch`: int64 [B] in [0, n_views).

    A counter-based generator of (seed, epoch, image): no state, so a resumed run and any
    number of processes draw exactly the same views; each (seed, epoch) gives each image an
    independent, uniform draw (to 2^-64 / n_views).
    """
    images = np.asarray(images, dtype=np.int64).astype(np.uint64)
    key = _splitmix64(
        _splitmix64(np.array([seed & _MASK64], dtype=np.uint64)) ^ np.uint64(epoch & _MASK64)
    )
    return (_splitmix64(key ^ images) % np.uint64(n_views)).astype(np.int64)


def permuted_views(seed: int, epoch: int, images: np.ndarray, n_views: int) -> np.ndarray:
    """Which of `n_views` rows each image uses in `epoch`: int64 [B] in [0, n_views), drawn
    without replacement across epochs.

    Epochs c*K .. c*K + K-1 (cycle c, K = n_views) walk image i through a uniform random
    permutation of its K rows, keyed by (seed, c, i): every row once before any repeats, so
    over E epochs each row is read floor(E/K) or ceil(E/K) times. A pure function of (seed,
    epoch, image), like `draw_views`: a resumed run and any number of processes read the
    same rows. Costs B x K hashes and a sort of K keys per image.
    """
    images = np.asarray(images, dtype=np.int64)
    if n_views == 1:
        return np.zeros(images.shape, dtype=np.int64)
    cycle, position = divmod(int(epoch), int(n_views))
    # a key per (seed, cycle), salted apart from draw_views' keys of (seed, epoch)
    key = _splitmix64(
        _splitmix64(np.array([(seed ^ _PERMUTATION_SALT) & _MASK64], dtype=np.uint64))
        ^ np.uint64(cycle & _MASK64)
    )
    per_image = _splitmix64(key ^ images.astype(np.uint64))
    sort_keys = _splitmix64(per_image[:, None] ^ np.arange(n_views, dtype=np.uint64)[None, :])
    # argsort of i.i.d. uniform keys is a uniform permutation (ties: 2^-64, broken stably)
    return np.argsort(sort_keys, axis=1, kind="stable")[:, position].astype(np.int64)


_PERMUTATION_SALT = 0x7065726D75746531  # "permute1": permuted_views' keys differ from draw_views'


def subset_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """The order in which a seeded subset takes the images of a split: int64 [n], a
    permutation of range(n) for `labels` (int [n], each image's class).

    A subset of m images is the first m of this order (`train_subset`): subsets of one seed
    are nested (a smaller one lies inside a larger one) and class-balanced (the first image of
    every class, in a seeded class order, then the second of every class, ...; a class with
    fewer images simply runs out). Depends on (seed, labels) only.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = labels.size
    rng = np.random.default_rng([int(seed), 0x5B5E7])
    priority = rng.permutation(n)  # within a class, images are taken in this seeded order
    classes, class_of = np.unique(labels, return_inverse=True)
    class_position = rng.permutation(classes.size)[class_of]
    # rank of each image within its class: sort by (class, priority), count from each start
    by_class = np.lexsort((priority, class_of))
    starts = np.concatenate([[0], np.cumsum(np.bincount(class_of))[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[by_class] = np.arange(n) - starts[class_of[by_class]]
    return np.lexsort((class_position, rank)).astype(np.int64)


def train_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The `count` images (sorted int64 [count]) of a seeded subset of a split whose images
    have classes `labels` (int [n]); see `subset_order`."""
    if not 1 <= count <= len(labels):
        raise TokenStoreError(
            f"data.subset: {count} images asked of a split of {len(labels)} images"
        )
    return np.sort(subset_order(labels, seed)[:count])


class TrainOrder:
    """A deterministic infinite stream of global batches of row indices.

    Epoch e is a permutation drawn with seed `seed + e`; each epoch yields
    num_items // global_batch batches (the tail is dropped). `state_dict()` /
    `load_state_dict()` resume the stream exactly.
    """

    def __init__(self, num_items: int, global_batch: int, seed: int):
        if global_batch < 1:
            raise InputError(f"TrainOrder: global_batch must be >= 1, got {global_batch}")
        if num_items < global_batch:
            raise InputError(
                f"TrainOrder: {num_items} items cannot fill one global batch of {global_batch}"
            )
        self.num_items, self.global_batch, self.seed = int(num_items), int(global_batch), int(seed)
        self.batches_per_epoch = self.num_items // self.global_batch
        self.epoch, self.position = 0, 0
        self._perm: np.ndarray | None = None

    def _permutation(self) -> np.ndarray:
        if self._perm is None:
            self._perm = np.random.default_rng(self.seed + self.epoch).permutation(self.num_items)
        return self._perm

    def next(self) -> np.ndarray:
        """The next global batch: int64 [global_batch]; `self.epoch` is then its epoch."""
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._perm = self.epoch + 1, 0, None
        start = self.position * self.global_batch
        batch = self._permutation()[start : start + self.global_batch].astype(np.int64)
        self.position += 1
        return batch

    __next__ = next

    def __iter__(self) -> TrainOrder:
        return self

    def state_dict(self) -> dict:
        """{"epoch", "position"}: enough to continue the stream exactly."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict()`."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.batches_per_epoch:
            raise ValueError(
                f"TrainOrder: bad state {state} ({self.batches_per_epoch} batches per epoch)"
            )
        self.epoch, self.position, self._perm = epoch, position, None


def eval_batches(
    store: TokenStore,
    split: str,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    limit: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A fixed pass over the first `limit` rows of `split` (all if None), split across ranks.

    Rank r gets a contiguous, balanced block (sizes differ by at most one), so each row is
    evaluated on exactly one rank. Yields (tokens int64 [b, L], labels int64 [b]), b <= batch_size.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"eval_batches: rank {rank} not in [0, {world_size})")
    if batch_size < 1:
        raise ValueError(f"eval_batches: batch_size must be >= 1, got {batch_size}")
    n = store.split_size(split)
    n = n if limit is None else min(int(limit), n)
    start, end = n * rank // world_size, n * (rank + 1) // world_size
    for s in range(start, end, batch_size):
        yield store.gather(split, np.arange(s, min(s + batch_size, end)))


# ----------------------------------------------------------------------------- writing


def shard_range(total: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Inputs [start, end) handled by `shard` of `num_shards` (balanced, contiguous)."""
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} not in [0, {num_shards})")
    return total * shard // num_shards, total * (shard + 1) // num_shards


def shard_dir(store: Path, split: str, shard: int, num_shards: int) -> Path:
    return Path(store) / split / "shards" / f"{shard}-of-{num_shards}"


class ShardWriter:
    """Writes one shard of one split, resumably.

    Rows are preallocated for every input of the shard (times 2 with flips); after each
    chunk, the memmap is flushed and then `progress.json` ({"inputs_done", "rows",
    "skipped"}) is replaced atomically, so an interrupted run resumes after the last
    committed chunk and rewrites anything past it: no image is duplicated or lost.
    """

    def __init__(
        self,
        store: str | Path,
        split: str,
        shard: int,
        num_shards: int,
        *,
        num_inputs: int,
        rows_per_input: int,
        L: int,
    ):
        self.dir = shard_dir(Path(store), split, shard, num_shards)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.num_inputs, self.rows_per_input, self.L = num_inputs, rows_per_input, L
        cap = num_inputs * rows_per_input
        tok_path, lab_path, prog_path = (
            self.dir / "tokens.npy",
            self.dir / "labels.npy",
            self.dir / "progress.json",
        )
        progress = None
        if prog_path.exists() and tok_path.exists() and lab_path.exists():
            try:
                progress = json.loads(prog_path.read_text())
                self.tokens = np.load(tok_path, mmap_mode="r+")
                self.labels = np.load(lab_path, mmap_mode="r+")
                if self.tokens.shape != (cap, L) or self.labels.shape != (cap,):
                    progress = None
            except (ValueError, OSError, json.JSONDecodeError):
                progress = None
        if progress is None:
            self.tokens = np.lib.format.open_memmap(
                tok_path, mode="w+", dtype=np.uint16, shape=(cap, L)
            )
            self.labels = np.lib.format.open_memmap(
                lab_path, mode="w+", dtype=np.int32, shape=(cap,)
            )
            progress = {"inputs_done": 0, "rows": 0, "skipped": []}
            atomic_write_json(prog_path, progress)
        self.inputs_done = int(progress["inputs_done"])
        self.rows = int(progress["rows"])
        self.skipped: list[str] = list(progress["skipped"])

    @property
    def done(self) -> bool:
        return (self.dir / "done.json").exists()

    def commit(
        self, tokens: np.ndarray, labels: np.ndarray, inputs: int, skipped: list[str]
    ) -> None:
        """Append rows (uint16-able [k, L], [k]) produced from the next `inputs` inputs."""
        k = len(tokens)
        if self.rows + k > len(self.tokens) or self.inputs_done + inputs > self.num_inputs:
            raise RuntimeError(f"{self.dir}: more rows or inputs than the shard holds")
        self.tokens[self.rows : self.rows + k] = tokens
        self.labels[self.rows : self.rows + k] = labels
        self.tokens.flush()
        self.labels.flush()
        self.rows += k
        self.inputs_done += inputs
        self.skipped += skipped
        atomic_write_json(
            self.dir / "progress.json",
            {"inputs_done": self.inputs_done, "rows": self.rows, "skipped": self.skipped},
        )

    def finish(self) -> None:
        """Mark the shard complete (all inputs consumed)."""
        if self.inputs_done != self.num_inputs:
            raise RuntimeError(f"{self.dir}: {self.inputs_done} of {self.num_inputs} inputs done")
        atomic_write_json(
            self.dir / "done.json",
            {"inputs": self.num_inputs, "rows": self.rows, "skipped": self.skipped},
        )


def merge_split(
    store: str | Path, split: str, num_shards: int, *, num_inputs: int, rows_per_input: int, L: int
) -> dict:
    """Concatenate the shards of `split` into `<split>/tokens.npy` / `labels.npy`.

    Checks that every shard is done and that inputs add up; returns
    {"count": rows, "skipped": [files]}, also saved as `<split>/merged.json`; the shard
    folders are removed afterwards.
    """
    store = Path(store)
    parts, missing, skipped, inputs = [], [], [], 0
    for i in range(num_shards):
        d = shard_dir(store, split, i, num_shards)
        if not (d / "done.json").exists():
            missing.append(i)
            continue
        try:
            done = json.loads((d / "done.json").read_text())
            int(done["inputs"]), int(done["rows"]), list(done["skipped"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TokenStoreError(
                f"{d / 'done.json'}: unreadable shard record ({e}); run that shard again"
            ) from None
        start, end = shard_range(num_inputs, i, num_shards)
        if done["inputs"] != end - start:
            raise TokenStoreError(
                f"{d}: shard covers {done['inputs']} inputs, expected {end - start}"
            )
        inputs += done["inputs"]
        skipped += done["skipped"]
        parts.append((d, int(done["rows"])))
    if missing:
        raise TokenStoreError(
            f"token store {store}: split {split!r}: shards {missing} of {num_shards} "
            f"are not finished; run them (--shard I --num-shards {num_shards}) before --merge"
        )
    if inputs != num_inputs:
        raise TokenStoreError(
            f"token store {store}: split {split!r}: shards cover {inputs} of {num_inputs} inputs"
        )
    count = sum(r for _, r in parts)
    if count != (num_inputs - len(skipped)) * rows_per_input:
        raise TokenStoreError(
            f"token store {store}: split {split!r}: {count} rows for "
            f"{num_inputs} inputs with {len(skipped)} skipped"
        )
    arrays = [
        (_shard_array(d / "tokens.npy", rows, L), _shard_array(d / "labels.npy", rows, None))
        for d, rows in parts
    ]  # every shard checked before anything is written
    out = store / split
    tmp_tok, tmp_lab = out / ".tokens.npy.tmp", out / ".labels.npy.tmp"
    tokens = np.lib.format.open_memmap(tmp_tok, mode="w+", dtype=np.uint16, shape=(count, L))
    labels = np.lib.format.open_memmap(tmp_lab, mode="w+", dtype=np.int32, shape=(count,))
    row = 0
    for (_, rows), (tok, lab) in zip(parts, arrays, strict=True):
        tokens[row : row + rows] = tok[:rows]
        labels[row : row + rows] = lab[:rows]
        row += rows
    tokens.flush()
    labels.flush()
    del tokens, labels
    tmp_tok.replace(out / "tokens.npy")
    tmp_lab.replace(out / "labels.npy")
    result = {"count": count, "skipped": skipped}
    atomic_write_json(out / "merged.json", result)
    shutil.rmtree(out / "shards", ignore_errors=True)
    return result


def _shard_array(path: Path, rows: int, width: int | None) -> np.ndarray:
    """A shard's tokens [rows, width] or labels [rows] (memory-mapped), or TokenStoreError
    naming the file when it is missing, truncated or shorter than its done.json says."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise TokenStoreError(
            f"{path}: unreadable token shard (truncated or not a .npy file: {reason}); "
            "run that shard again (delete its folder) before the merge"
        ) from None
    if arr.shape[0] < rows or (width is not None and (arr.ndim != 2 or arr.shape[1] != width)):
        raise TokenStoreError(
            f"{path}: token shard of shape {list(arr.shape)}, but its done.json says {rows} rows"
            + (f" of {width} tokens" if width is not None else "")
            + "; run that shard again (delete its folder) before the merge"
        )
    return arr


def merged_info(store: str | Path, split: str) -> dict | None:
    """{"count", "skipped"} if `split` has been merged, else None."""
    path = Path(store) / split / "merged.json"
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------- quantizer
# The store carries its VQVAE's quantizer (codebook + phi refiners, a few hundred kB even for
# the official VQVAE), so training builds the teacher-forcing input on the device from the
# tokens alone: the store is self-contained, and no VQVAE runs in the training loop.
QUANTIZER_FILE = "quantizer.pt"
QUANTIZER_FORMAT = "var-token-store.quantizer/1"


def save_quantizer(store: str | Path, quantizer: MultiScaleQuantizer) -> Path:
    """Write `quantizer` (a var_core.MultiScaleQuantizer) into the store, atomically."""
    import torch

    config = dict(
        vocab_size=quantizer.vocab_size,
        z_channels=quantizer.z_channels,
        patch_nums=list(quantizer.patch_nums),
        beta=quantizer.beta,
        phi_ratio=quantizer.phi_ratio,
        phi_sharing=quantizer.phi_sharing,
    )
    payload = {
        "format": QUANTIZER_FORMAT,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in quantizer.state_dict().items()},
    }
    path = Path(store) / QUANTIZER_FILE
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_quantizer(store: str | Path, device: torch.device | str = "cpu") -> MultiScaleQuantizer:
    """The store's quantizer, in eval mode on `device`, frozen."""

    from var_core import MultiScaleQuantizer

    path = Path(store) / QUANTIZER_FILE
    if not path.exists():
        raise TokenStoreError(
            f"token store {store}: {QUANTIZER_FILE} is missing (re-run "
            f"python -m scaling.tokenize ... --merge to write it)"
        )
    payload = load_checkpoint_file(path, "token-store quantizer")
    if not isinstance(payload, dict) or payload.get("format") != QUANTIZER_FORMAT:
        raise TokenStoreError(f"{path}: not a token-store quantizer file")
    quantizer = MultiScaleQuantizer(**payload["config"])
    quantizer.load_state_dict(payload["state_dict"])
    return quantizer.to(device).eval().requires_grad_(False)
