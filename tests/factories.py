"""Test data builders: tiny token stores with learnable structure, and run configs over them."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from scaling.core.config_io import dump_yaml
from scaling.data.token_store import save_quantizer, store_identity, write_meta
from scaling.training.config import (
    DataConfig,
    EvalConfig,
    LengthConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    RuntimeConfig,
)
from var_core.counting import tokens_per_image

# a VQVAE recipe and a synthetic image set that prepare in seconds on a CPU
TINY_VQVAE = {
    "resolution": 16,
    "vocab_size": 32,
    "z_channels": 8,
    "ch": 32,
    "ch_mult": [1, 2, 2],
    "patch_nums": [1, 2, 4],
    "batch_size": 4,
    "steps": 3,
    "eval_images": 4,
    "log_every": 1,
}
SYNTHETIC = {"num_classes": 3, "train_per_class": 4, "val_per_class": 2, "resolution": 16}


def class_conditional_tokens(
    n: int,
    *,
    patch_nums,
    vocab: int,
    protos: np.ndarray,
    rng: np.random.Generator,
    noise: float = 0.3,
):
    """Tokens [n, L] and labels [n]: each class has a prototype token map per scale, and
    each token is the prototype's with prob 1-noise, else a child of its parent token
    (so coarser scales predict finer ones); enough structure for loss to fall quickly."""
    labels = rng.integers(0, len(protos), size=n)
    tokens = protos[labels].copy()
    start = prev_start = 0
    for k, pn in enumerate(patch_nums):
        end = start + pn * pn
        flip = rng.random((n, pn * pn)) < noise
        if k == 0:
            fresh = rng.integers(0, vocab, size=(n, pn * pn))
        else:
            parent = tokens[:, prev_start : prev_start + 1]  # first token of the coarser scale
            fresh = (parent * 3 + np.arange(pn * pn)[None] + 1) % vocab
        tokens[:, start:end] = np.where(flip, fresh, tokens[:, start:end])
        prev_start, start = start, end
    return tokens.astype(np.uint16), labels.astype(np.int32)


def make_token_store(
    path: Path,
    *,
    patch_nums=(1, 2, 3),
    vocab: int = 32,
    num_classes: int = 4,
    n_train: int = 256,
    n_val: int = 64,
    z_channels: int = 8,
    seed: int = 0,
) -> Path:
    """Write a complete token store (meta.json, splits, quantizer.pt) at `path`."""
    from var_core import MultiScaleQuantizer

    rng = np.random.default_rng(seed)
    path = Path(path)
    splits = {}
    protos = rng.integers(0, vocab, size=(num_classes, tokens_per_image(patch_nums)))
    for split, n in (("train", n_train), ("val", n_val)):
        tokens, labels = class_conditional_tokens(
            n, patch_nums=patch_nums, vocab=vocab, protos=protos, rng=rng
        )
        (path / split).mkdir(parents=True, exist_ok=True)
        np.save(path / split / "tokens.npy", tokens)
        np.save(path / split / "labels.npy", labels)
        splits[split] = {"count": n, "flip": False}
    torch.manual_seed(seed)
    quantizer = MultiScaleQuantizer(vocab, z_channels, patch_nums)
    save_quantizer(path, quantizer)
    identity = store_identity(
        vqvae_sha256="0" * 64,
        vqvae_config={
            "vocab_size": vocab,
            "z_channels": z_channels,
            "patch_nums": list(patch_nums),
        },
        vocab_size=vocab,
        patch_nums=patch_nums,
        image_size=patch_nums[-1] * 8,
        classes=[f"class{i}" for i in range(num_classes)],
    )
    write_meta(path, identity, splits)
    return path


def tiny_run_config(
    store: Path,
    run_id: str = "tiny",
    *,
    steps: int = 24,
    batch: int = 16,
    depth: int = 2,
    width: int = 32,
    eval_points: int = 4,
    **runtime,
) -> RunConfig:
    """A run that trains in about a second on a CPU."""
    return RunConfig(
        run_id=run_id,
        data=DataConfig(store=store),
        model=ModelConfig(depth=depth, width=width, heads=2, init_adaln_gamma=1e-3),
        optim=OptimConfig(
            batch_size=batch, base_lr=3e-3 * 256 / batch, final_lr_frac=0.1
        ),  # peak lr 3e-3
        length=LengthConfig(steps=steps),
        eval=EvalConfig(points=eval_points, first_frac=0.2, batch_size=32),
        runtime=RuntimeConfig(num_threads=1, **runtime),
    )


def write_run(run_dir: Path, config: RunConfig) -> Path:
    """Create a run directory holding `config` as config.yaml."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(config))
    return run_dir


# ----------------------------------------------------------------------------- sweep files

# the runs of a test sweep: tiny models that train in seconds on a CPU
TINY_BASE: dict[str, Any] = {
    "model": {"width": 32, "heads": 2, "init_adaln_gamma": 1.0e-3},
    "optim": {"batch_size": 16, "base_lr": 0.005, "final_lr_frac": 0.1},
    "length": {"steps": 24},
    "runtime": {"num_threads": 1, "checkpoint_every_steps": 10},
}
TINY_EVAL: dict[str, Any] = {"points": 3, "first_frac": 0.2, "batch_size": 32}


def merged(into: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """`into` with `given` laid over it, mappings merged key by key (a None value drops it)."""
    out = dict(into)
    for key, value in given.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def sweep_spec(
    output: Path | str,
    *,
    store: Path | str | None = None,
    name: str = "tiny",
    depths: Sequence[int] = (1, 2),
    **sections: Any,
) -> dict[str, Any]:
    """The one sweep-file template of the tests, as a mapping: tiny runs (TINY_BASE,
    TINY_EVAL) of `depths` on the token store `store`, written to `output`, local backend.

    Each keyword names a top-level section laid over the template: mappings merge key by key
    (``base={"length": {"steps": 4}}`` keeps the tiny model), other values replace, and None
    removes a key (``eval=None``, ``base={"runtime": None}``)."""
    spec: dict[str, Any] = {
        "name": name,
        "output": str(output),
        "data": {"tokens": str(store) if store is not None else "/nonexistent/tokens"},
        "base": TINY_BASE,
        "eval": TINY_EVAL,
        "grid": {"depth": list(depths)},
        "cluster": {"backend": "local", "cpus_per_task": 1},
    }
    return merged(spec, sections)


def sweep_text(output: Path | str, *, flow: bool = False, **kw: Any) -> str:
    """`sweep_spec(output, **kw)` as YAML text, in template order. flow: mappings and lists
    of plain values on one line each (``optim: {batch_size: 16, base_lr: 0.005}``), so a test
    can edit one value in place; else one key per line."""
    return yaml.safe_dump(
        sweep_spec(output, **kw), sort_keys=False, default_flow_style=None if flow else False
    )


def write_sweep(path: Path, output: Path | str, *, flow: bool = False, **kw: Any) -> Path:
    """Write `sweep_text(output, flow=flow, **kw)` as the YAML file `path`; returns `path`."""
    path.write_text(sweep_text(output, flow=flow, **kw))
    return path


def line_of(text: str, needle: str) -> int:
    """The 1-based number of the one line of `text` holding `needle`: where a located error
    must point, read from the file as written rather than copied into the test."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    if len(found) != 1:
        raise AssertionError(f"{needle!r} is on {len(found)} lines of the sweep, not one")
    return found[0]


def tiny_sweep(
    path: Path,
    store: Path,
    output: Path,
    *,
    depths: Sequence[int] = (1, 2),
    steps: int = 24,
    backend: str = "local",
    partition: str = "debug",
    time_min: int = 10,
    signal_delay_s: int = 60,
    extra: str = "",
):
    """Write and load a sweep of tiny models on `store` (trains in seconds on a CPU); `extra`:
    more top-level sections as YAML text (a `base:` there is merged into the tiny one)."""
    from scaling.study.sweep.sweep import load_sweep

    more = yaml.safe_load(textwrap.dedent(extra)) or {}
    write_sweep(
        path,
        output,
        store=store,
        depths=depths,
        base=merged({"length": {"steps": steps}}, more.pop("base", {})),
        cluster={
            "backend": backend,
            "partition": partition,
            "time_min": time_min,
            "signal_delay_s": signal_delay_s,
        },
        **more,
    )
    return load_sweep(path)
