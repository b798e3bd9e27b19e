"""Images -> token store: encode every image of each split with a multi-scale VQVAE.

    python -m scaling.tokenize --images ROOT --vqvae CKPT --out DIR [--splits train val]
        [--views K] [--view-seed S] [--flip] [--shard I --num-shards N] [--merge]
        [--batch-size B] [--device auto]

`ROOT/<split>/<class>/<image>`. The train split stores K views of each image (`--views K`):
K = 1 is the evaluation transform (shorter side to 1.125x, centre crop to the VQVAE's image
size, [-1, 1]); K > 1 are K random crops of the official training transform (the same
resize, then a random crop), seeded by (--view-seed, image, view) so any shard or resume
makes the same views. With `--flip` each view is followed by its horizontal mirror (the
official recipe does not flip). Image j's R = K x (2 with flips) views are rows R*j..R*j+R-1.
Val (and any other split) is always one centre crop. Budgets count images, never views:
training reads one view per image per epoch (scaling.data.token_store.permuted_views).

Sharding (e.g. one SLURM array task per shard): `--shard I --num-shards N` encodes only
shard I's contiguous block of each split into `DIR/<split>/shards/I-of-N/`, resumably; once
all shards are done, `--merge` (same --num-shards) assembles and checks them and writes
`meta.json`. With no shard arguments everything is done and merged in one go. Re-running
skips finished shards and merged splits; an interrupted shard resumes from its last
committed batch. A store made with another VQVAE, patch_nums or class list is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from contracts.atomic import atomic_write_json
from scaling.core.cli import InputError, run_cli, setup_logging
from scaling.core.provenance import sha256_file
from scaling.core.runtime import pick_device, resolve
from scaling.data.images import CLASSES_FILE, ImageFolder, find_classes, read_classes_file
from scaling.data.token_store import (
    MAX_VOCAB,
    ShardWriter,
    TokenStoreError,
    merge_split,
    merged_info,
    mismatch,
    read_meta,
    rows_per_image,
    save_quantizer,
    shard_range,
    split_meta,
    store_identity,
    write_meta,
)
from var_core import VQVAE, load_vqvae

log = logging.getLogger(__name__)


def encode(vqvae: VQVAE, x: torch.Tensor) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> token rows int64 [B, L] (img_to_idx, coarse to fine)."""
    with torch.inference_mode():
        return torch.cat([t.reshape(t.shape[0], -1) for t in vqvae.img_to_idx(x)], dim=1)


class _Items(torch.utils.data.Dataset):
    """The R stored views of image j of a split ([R, 3, res, res]); unreadable: ok=False."""

    def __init__(self, ds: ImageFolder, views: int = 1, flip: bool = False, seed: int = 0):
        self.ds, self.views, self.flip, self.seed = ds, views, flip, seed

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, j: int) -> tuple[torch.Tensor, int, bool, int]:
        x = self.ds.try_load(
            j, lambda i: self.ds.load_views(i, self.views, seed=self.seed, flip=self.flip)
        )
        if x is None:  # skipped: a placeholder the batch drops (ok=False)
            r, R = self.ds.resolution, self.views * (2 if self.flip else 1)
            return torch.zeros(R, 3, r, r), self.ds.samples[j][1], False, j
        return x, self.ds.samples[j][1], True, j


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass
class Plan:
    """What one tokenize call does to the store at `out`.

    `identity`: the store's identity (token_store.store_identity); `splits`: plan.json's
    entry per split ({"inputs", "flip", "num_shards", "views", "view_seed"}), for every split
    of the store so far; `folders`: the image folders this call encodes; `shards`: the
    (split, shard) pairs to encode (a finished shard is skipped by `encode_shard`).
    """

    out: Path
    identity: dict
    splits: dict[str, dict]
    folders: dict[str, ImageFolder]
    shards: list[tuple[str, int]]

    def entry(self, split: str) -> dict:
        """plan.json's entry of `split` (plans written before views existed: one view)."""
        return {"views": 1, "view_seed": 0, **self.splits[split]}


def _check_arguments(
    *,
    splits: Sequence[str],
    flip: bool,
    views: int,
    shard: int | None,
    num_shards: int,
    merge_only: bool,
    batch_size: int,
) -> None:
    if num_shards < 1 or (shard is not None and not 0 <= shard < num_shards):
        raise InputError(
            f"tokenize: need 0 <= shard < num_shards, got shard={shard}, num_shards={num_shards}"
        )
    if batch_size < 1:
        raise InputError(f"tokenize: batch_size must be >= 1, got {batch_size}")
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise InputError(
            f"tokenize: --views must be a whole number >= 1 (1 = one centre crop), got {views!r}"
        )
    if (views > 1 or flip) and not merge_only and "train" not in splits:
        raise InputError(
            f"tokenize: --views/--flip apply to the train split only (evaluation "
            f"splits are one centre crop each), but the splits asked are {list(splits)}"
        )
    if merge_only and shard is not None:
        raise InputError("tokenize: merge_only assembles all shards; do not give a shard")


def _jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    )


def _check_same(out: Path, stored: dict, expected: dict, what: str) -> None:
    # the fields that decide what the tokens mean; the first difference is reported
    for key in ("format", "vocab_size", "patch_nums", "image_size", "classes", "vqvae_sha256"):
        if key in stored and stored[key] != expected[key]:
            raise mismatch(out, key, stored[key], expected[key], what)


def plan_store(
    images: Path,
    out: Path,
    identity: dict,
    *,
    source: str,
    splits: Sequence[str],
    views: int,
    flip: bool,
    view_seed: int,
    shard: int | None,
    num_shards: int,
    merge_only: bool,
) -> Plan:
    """Check the image folders and the store at `out` against `identity`, record plan.json.

    A finished store (meta.json) and a store in progress (plan.json) must have the same
    identity, and a split already planned the same views, flips and shard count (`source`
    names the caller's side in the error). `views`, `flip`, `view_seed` apply to "train".
    """
    classes = identity["classes"]
    # every split folder is checked before anything is written (classes.json included): a
    # bad folder, once fixed, must not meet a class list written from the broken one
    folders = {
        split: ImageFolder(images / split, identity["image_size"], train=False, classes=classes)
        for split in (() if merge_only else splits)
    }
    if not (images / CLASSES_FILE).exists():
        try:  # persist the label order beside the images when we may
            atomic_write_json(images / CLASSES_FILE, classes)
        except OSError:
            pass
    if (out / "meta.json").exists():
        _check_same(out, read_meta(out), identity, source)
    plan_path = out / "plan.json"
    if merge_only and not plan_path.exists():
        raise TokenStoreError(
            f"token store {out}: nothing to merge (no plan.json: no shard has run)"
        )
    stored = json.loads(plan_path.read_text()) if plan_path.exists() else {**identity, "splits": {}}
    _check_same(out, stored, identity, source)
    plan_splits = stored["splits"]
    for split, ds in folders.items():
        train = split == "train"
        entry = {
            "inputs": len(ds),
            "flip": bool(flip and train),
            "num_shards": num_shards,
            "views": views if train else 1,
            "view_seed": view_seed if train else 0,
        }
        old = plan_splits.get(split)
        if old is not None:
            old = {"views": 1, "view_seed": 0, **old}  # plans written before views existed
            for key in entry:
                if old.get(key) != entry[key]:
                    raise mismatch(
                        out, f"splits.{split}.{key}", old.get(key), entry[key], "tokenize call"
                    )
        plan_splits[split] = entry
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan_path, {**identity, "splits": plan_splits})
    shards = [
        (split, i)
        for split in folders
        if merged_info(out, split) is None
        for i in ([shard] if shard is not None else range(num_shards))
    ]
    return Plan(out, identity, plan_splits, folders, shards)


# ----------------------------------------------------------------------------- encode


def encode_shard(
    plan: Plan,
    split: str,
    shard: int,
    model: torch.nn.Module,
    device: torch.device,
    *,
    batch_size: int,
    num_workers: int = 0,
    progress: bool = False,
    report: Callable[[dict], None] | None = None,
) -> None:
    """Encode shard `shard` of `split` into its ShardWriter, from its last committed batch.

    Does nothing for a finished shard. Unreadable images are dropped (ImageFolder.try_load)
    and recorded by the writer. `report`: see `tokenize`.
    """
    ds, entry = plan.folders[split], plan.entry(split)
    num_shards, rpi, L = entry["num_shards"], rows_per_image(entry), plan.identity["L"]
    start, end = shard_range(len(ds), shard, num_shards)
    writer = ShardWriter(
        plan.out, split, shard, num_shards, num_inputs=end - start, rows_per_input=rpi, L=L
    )
    if writer.done:
        return
    todo = list(range(start + writer.inputs_done, end))
    items = _Items(ds, entry["views"], entry["flip"], entry["view_seed"])
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(items, todo),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    what = f"{split} shard {shard}-of-{num_shards}"
    t0, n_done = time.perf_counter(), 0
    bar = tqdm(
        total=len(todo),
        desc=f"tokenize {split} {shard}-of-{num_shards}",
        unit="img",
        disable=not progress,
    )
    for x, labels, ok, idx in loader:
        x, labels = x[ok].flatten(0, 1), labels[ok].repeat_interleave(rpi)  # R rows per image
        skipped = [str(ds.samples[j][0]) for j in idx[~ok].tolist()]
        rows = (
            encode(model, x.to(device, non_blocking=True)).cpu().numpy()
            if len(x)
            else np.zeros((0, L))
        )
        writer.commit(rows.astype(np.uint16), labels.numpy().astype(np.int32), len(idx), skipped)
        n_done += len(idx)
        bar.update(len(idx))
        if report is not None:
            rate = n_done / max(time.perf_counter() - t0, 1e-9)
            report(
                {
                    "done": n_done,
                    "total": len(todo),
                    "unit": "images",
                    "rate": rate,
                    "rate_unit": "images/s",
                    "eta_s": (len(todo) - n_done) / rate,
                    "what": what,
                }
            )
    bar.close()
    writer.finish()
    dt = max(time.perf_counter() - t0, 1e-9)
    log.info(
        "tokenize %s: %d images, %d rows, %d unreadable skipped, %.1f images/s "
        "(%.1f encodes/s) on %s",
        what,
        end - start,
        writer.rows,
        len(writer.skipped),
        n_done / dt,
        n_done * rpi / dt,
        device.type,
    )


# ----------------------------------------------------------------------------- merge


def merge_store(plan: Plan, quantizer: torch.nn.Module, vqvae: Path) -> dict:
    """Assemble every planned split from its shards, then write the quantizer and meta.json.

    Splits merged earlier are kept; meta.json comes last (a store with it is complete) and
    records where the VQVAE was (absolute path). Returns the meta.json dict.
    """
    out, splits = plan.out, {}
    for split in plan.splits:
        entry = plan.entry(split)
        info = merged_info(out, split) or merge_split(
            out,
            split,
            entry["num_shards"],
            num_inputs=entry["inputs"],
            rows_per_input=rows_per_image(entry),
            L=plan.identity["L"],
        )
        splits[split] = split_meta(
            info["count"],
            views=entry["views"],
            flip=entry["flip"],
            view_seed=entry["view_seed"],
            skipped=len(info["skipped"]),
        )
    if (out / "meta.json").exists():
        splits = {**read_meta(out)["splits"], **splits}
    save_quantizer(out, quantizer)  # before meta.json: a store with meta is complete
    meta = write_meta(out, plan.identity, splits, vqvae_path=str(Path(vqvae).resolve()))
    log.info(
        "token store %s: %s",
        out,
        ", ".join(
            f"{s}: {v['count']} rows ({v['skipped']} unreadable skipped)" for s, v in splits.items()
        ),
    )
    return meta


# ----------------------------------------------------------------------------- tokenize


def tokenize(
    images: str | Path,
    vqvae: str | Path,
    out: str | Path,
    *,
    splits: Sequence[str] = ("train", "val"),
    flip: bool = False,
    views: int = 1,
    view_seed: int = 0,
    shard: int | None = None,
    num_shards: int = 1,
    merge: bool | None = None,
    merge_only: bool = False,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    progress: bool | None = None,
    report: Callable[[dict], None] | None = None,
) -> Path:
    """Encode `images` with the VQVAE checkpoint `vqvae` into the token store `out`.

    `shard`/`num_shards`: do only that shard (None: all shards); `merge`: assemble the
    shards and write meta.json (default: when no single shard was asked for); `merge_only`:
    encode nothing, only check that every shard is finished and merge. `views`, `flip`,
    `view_seed` apply to the split named "train" only (see the module docstring). Returns `out`.
    Logs a summary per shard (images, rows, unreadable files skipped, images/s).
    `report` (the launcher's relay) is called after every batch with {"done": images,
    "total": images of this shard, "unit": "images", "rate": images/s, "eta_s", "what"}.
    """
    images, vqvae, out = Path(images), Path(vqvae), Path(out)
    _check_arguments(
        splits=splits,
        flip=flip,
        views=views,
        shard=shard,
        num_shards=num_shards,
        merge_only=merge_only,
        batch_size=batch_size,
    )
    merge = (shard is None if merge is None else merge) or merge_only
    if not vqvae.is_file():
        raise InputError(f"tokenize: VQVAE checkpoint {vqvae} does not exist")
    dev = pick_device(device)
    # fp32 (bf16 would change the quantizer's argmin); TF32 and threads are the runtime
    # policy's, applied by the entry point (main, the launcher's stage job)
    sha = sha256_file(vqvae)
    model = load_vqvae(vqvae).to(dev).eval()
    if model.vocab_size > MAX_VOCAB:
        raise InputError(
            f"tokenize: vocab_size {model.vocab_size} does not fit the store's uint16 "
            f"tokens (max {MAX_VOCAB})"
        )
    identity = store_identity(
        vqvae_sha256=sha,
        vqvae_config=_jsonable(model.config()),
        vocab_size=model.vocab_size,
        patch_nums=model.patch_nums,
        image_size=model.image_size,
        classes=read_classes_file(images) or find_classes(images / splits[0]),
    )
    plan = plan_store(
        images,
        out,
        identity,
        source=f"VQVAE {vqvae}",
        splits=splits,
        views=views,
        flip=flip,
        view_seed=view_seed,
        shard=shard,
        num_shards=num_shards,
        merge_only=merge_only,
    )
    show = sys.stderr.isatty() if progress is None else progress
    for split, i in plan.shards:
        encode_shard(
            plan,
            split,
            i,
            model,
            dev,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=show,
            report=report,
        )
    if merge:
        merge_store(plan, model.quantize, vqvae)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scaling.tokenize", description=__doc__.split("\n")[0]
    )
    p.add_argument("--images", required=True, help="dataset root with <split>/<class>/<image>")
    p.add_argument(
        "--vqvae",
        required=True,
        help="VQVAE checkpoint (official vae_ch160v4096z32.pth or toolkit)",
    )
    p.add_argument("--out", required=True, help="token store directory")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument(
        "--views",
        type=int,
        default=1,
        help="views per train image: 1 = one centre crop (default); K > 1 = K random "
        "crops of the official training transform",
    )
    p.add_argument("--view-seed", type=int, default=0, help="seed of the random crops (default 0)")
    p.add_argument(
        "--flip",
        action="store_true",
        help="also store each train view's horizontal mirror (not the official recipe)",
    )
    p.add_argument(
        "--shard", type=int, default=None, help="this shard's index (e.g. $SLURM_ARRAY_TASK_ID)"
    )
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument(
        "--merge", action="store_true", help="assemble finished shards and write meta.json"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: the runtime policy's, 1 on CPU)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI: see the module docstring. Exit 2 on bad input (folders, checkpoint, store)."""
    p = _parser()
    a = p.parse_args(argv)
    if a.merge and a.shard is not None:
        p.error("--merge assembles all shards: give it without --shard")
    if a.threads is not None and a.threads < 1:
        p.error(f"--threads must be >= 1, got {a.threads}")
    setup_logging()

    def run() -> None:
        # fp32 with TF32 on CUDA, threads: scaling.core.runtime's choices, restored on return
        with resolve(None, device=a.device, precision="fp32", threads=a.threads).applied():
            tokenize(
                a.images,
                a.vqvae,
                a.out,
                splits=a.splits,
                flip=a.flip,
                views=a.views,
                view_seed=a.view_seed,
                shard=a.shard,
                num_shards=a.num_shards,
                merge_only=a.merge,
                batch_size=a.batch_size,
                device=a.device,
                num_workers=a.num_workers,
            )

    return run_cli(run)
