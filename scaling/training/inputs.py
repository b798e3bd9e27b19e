"""What a training step reads: the global batch of the step, this process's share of it in
micro-batches, class dropout, and the teacher-forcing input of the model.

The data order (scaling.data.token_store.TrainOrder) and the class-dropout draw are functions
of (seed, step), so the global batch is the same for any number of processes and after any
resume. A step reads one stored view of each image, in a per-image permutation of its views
across epochs or drawn afresh each epoch (`data.view_draw`), or encodes a fresh crop with the
VQVAE (`data.views: online`). With `data.subset` the order runs over a seeded subset of the
images (`token_store.train_subset`), the same in every process and on resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from scaling.core.provenance import sha256_file
from scaling.core.seeds import step_seed
from scaling.data.online_views import OnlineViews
from scaling.data.token_store import (
    TokenStore,
    TokenStoreError,
    TrainOrder,
    mismatch,
    train_subset,
)
from scaling.training.config import RunConfig
from var_core import MultiScaleQuantizer, counting, load_vqvae


def split_scales(tokens: torch.Tensor, patch_nums: tuple[int, ...]) -> list[torch.Tensor]:
    """[B, L] -> list of K tensors [B, pn*pn], coarse to fine."""
    return list(torch.split(tokens, [pn * pn for pn in patch_nums], dim=1))


def class_dropout(seed: int, step: int, batch_size: int, p: float) -> torch.Tensor:
    """BoolTensor [batch_size]: which labels of the global batch of step `step` become the
    null class (probability `p`).

    Drawn from a generator seeded by (seed, step): the same for any number of processes and
    on resume, with no state to save. (Drop-path masks, by contrast, come from each process's
    RNG: runs with different world sizes agree in distribution only.)
    """
    generator = torch.Generator().manual_seed(step_seed(seed, step))
    return torch.rand(batch_size, generator=generator) < p


def check_views(store: TokenStore, config: RunConfig, source: str) -> None:
    """Refuse a store whose train views, flips or transform differ from what `config.data`
    asks (naming the field and both values), or whose evaluation split holds several views."""
    data, split = config.data, config.data.train_split
    if store.rows_per_image(data.eval_split) != 1:
        raise TokenStoreError(
            f"token store {store.path}: evaluation split {data.eval_split!r} holds "
            f"{store.rows_per_image(data.eval_split)} rows per image (views or flips); the test "
            f"metrics need one centre crop per image: re-tokenise it without --views/--flip"
        )
    if data.views == "online":
        return  # the train split comes from the images (scaling.data.online_views)
    store.split_size(split)
    for field, wanted, stored in (
        ("views", data.views, store.views(split)),
        ("flip", data.flip, store.flip(split)),
        ("transform", data.transform, store.transform(split)),
    ):
        if wanted is not None and wanted != stored:
            raise mismatch(store.path, f"splits.{split}.{field}", stored, wanted, source)


def open_online_views(store: TokenStore, config: RunConfig, device: torch.device) -> OnlineViews:
    """`data.views: online`: the VQVAE (checked to be the store's) over data.images."""
    data = config.data
    path = data.vqvae or store.meta.get("vqvae_path")
    if not path or not Path(path).is_file():
        raise TokenStoreError(
            f"data.views online: VQVAE checkpoint {path!r} not found (set "
            f"data.vqvae; the store records {store.meta.get('vqvae_path')!r})"
        )
    sha = sha256_file(path)
    if sha != store.meta["vqvae_sha256"]:
        raise mismatch(
            store.path, "vqvae_sha256", store.meta["vqvae_sha256"], sha, f"data.vqvae {path}"
        )
    assert data.images is not None  # DataConfig requires it for views online
    return OnlineViews(
        Path(data.images) / data.train_split,
        load_vqvae(path),
        store.classes,
        seed=config.seed,
        device=device,
    )


class TrainInputs:
    """The train split as the steps read it: data order, views, class dropout and the
    teacher-forcing input (from a device cache when it fits)."""

    def __init__(
        self,
        config: RunConfig,
        store: TokenStore,
        quantizer: MultiScaleQuantizer,
        online: OnlineViews | None,
        train_size: int,
        device: torch.device,
    ):
        self.config, self.store, self.quantizer, self.online = config, store, quantizer, online
        self.device = device
        self.patch_nums = tuple(store.patch_nums)
        # the images trained on: int64 [train_size] image ids (a seeded subset), or None: all
        self.images = self._subset(train_size)
        self.order = TrainOrder(train_size, config.optim.batch_size, seed=config.seed)
        self.input_cache = self._build_input_cache()

    def _subset(self, train_size: int) -> np.ndarray | None:
        """The subset's image ids (sorted int64 [train_size]) when data.subset is set: a
        function of (subset_seed, the images' classes) only (`token_store.subset_order`)."""
        data = self.config.data
        if data.subset is None:
            return None
        if self.online is not None:
            labels = np.array([label for _, label in self.online.ds.samples], dtype=np.int64)
        else:
            labels = self.store.image_labels(data.train_split)
        return train_subset(labels, train_size, data.subset_seed)

    def teacher_forcing_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] -> [B, L-1, Cvae], built on the device in float32."""
        with torch.no_grad():
            return self.quantizer.idx_to_var_input(split_scales(tokens, self.patch_nums))

    def _build_input_cache(self) -> torch.Tensor | None:
        """The teacher-forcing input of every row of the train split (each stored view),
        [rows, L - pn_0^2, Cvae] float32 on the device, when it fits in
        runtime.input_cache_mb (the demo: 19 MB; ImageNet at 256px: 111 GB, never). It is a
        fixed function of the stored tokens, so a step gathers it instead of recomputing it
        (on CPU that was most of the trainer's overhead over a bare loop at the smallest
        sizes)."""
        budget = self.config.runtime.input_cache_mb
        L = counting.tokens_per_image(self.patch_nums)
        per_row = (L - self.patch_nums[0] ** 2) * self.quantizer.z_channels * 4
        split, rows = self.config.data.train_split, []
        n = self.store.split_size(split)  # rows: every stored view of every image
        if not budget or n * per_row > budget * 2**20:
            return None
        for start in range(0, n, 1024):
            tokens, _ = self.store.gather(split, np.arange(start, min(start + 1024, n)))
            rows.append(self.teacher_forcing_input(tokens.to(self.device)))
        return torch.cat(rows)

    def micro_batches(
        self, step: int, mine: slice, micro_batch: int
    ) -> Iterator[tuple[bool, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The next global batch (optimizer step `step`, 0-based), this process's images
        `mine` of it, in micro-batches of `micro_batch` images: yields (last, labels [b],
        x_in [b, L-1, Cvae], tokens [b, L]) on the device, labels dropped to the null class
        where class dropout says. Labels are range-checked on the host, where data enters
        (TokenStore); nothing is read back from the device."""
        cfg = self.config
        images = self.order.next()  # one view of each image, a function of (seed, epoch, image)
        if self.images is not None:
            images = self.images[images]  # positions in the subset -> image ids
        epoch = self.order.epoch
        indices = (
            images[mine]
            if self.online is not None
            else self.store.view_rows(
                cfg.data.train_split,
                images,
                epoch,
                cfg.seed,
                views=cfg.data.use_views,
                draw=cfg.data.view_draw,
            )[mine]
        )
        dropped = class_dropout(cfg.seed, step, cfg.optim.batch_size, cfg.model.cond_drop)[mine]
        starts = range(0, len(indices), micro_batch)
        for i, start in enumerate(starts):
            chunk = slice(start, start + micro_batch)
            if self.online is not None:  # the VQVAE in the loop (official behaviour)
                tokens, labels = self.online.batch(indices[chunk], epoch)
            else:
                tokens, labels = self.store.gather(cfg.data.train_split, indices[chunk])
            labels = torch.where(dropped[chunk], self.store.num_classes, labels)
            tokens = tokens.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if self.input_cache is not None:
                x_in = self.input_cache[torch.from_numpy(indices[chunk]).to(self.device)]
            else:
                x_in = self.teacher_forcing_input(tokens)
            yield i == len(starts) - 1, labels, x_in, tokens
