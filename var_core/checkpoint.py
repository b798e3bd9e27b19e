"""Reading official and toolkit checkpoints safely (`weights_only=True`); writing toolkit ones.

Layouts understood by `load_state_dict_file`:
- official flat state dict (`vae_ch160v4096z32.pth`, `var_d16.pth`);
- official training checkpoint: `['trainer']['var_wo_ddp']` (VAR) / `['trainer']['vae_local']`
(VQVAE);
- toolkit: `{'format': 'var_core.<vqvae|var>.v1', 'config': {...}, 'state_dict': {...}}`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

from .counting import tokens_per_image
from .var import VAR
from .vqvae import VQVAE

PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)  # official 512px scales (L = 2240)
FORMATS = {"vqvae": "var_core.vqvae.v1", "var": "var_core.var.v1"}
_NESTED = {"var": "var_wo_ddp", "vqvae": "vae_local"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names file and
    key."""


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint is empty (0 bytes)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # objects beyond tensors and plain containers: never run
        raise CheckpointError(
            f"{path}: refused to load: it holds Python objects other than tensors and plain "
            "containers, which could run code when unpickled; nothing in it was run"
        ) from None
    except Exception as e:  # noqa: BLE001 -- truncated, or not a torch file at all
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or not a torch file: {reason})"
        ) from None


def _layout(obj: Any, kind: str, path: Path) -> tuple[dict, dict | None]:
    """Return (flat state dict, toolkit config or None)."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict, got {type(obj).__name__}")
    if "format" in obj and "state_dict" in obj:
        fmt = obj["format"]
        if kind and fmt != FORMATS[kind]:
            raise CheckpointError(f"{path}: format {fmt!r} is not {FORMATS[kind]!r}")
        return dict(obj["state_dict"]), dict(obj.get("config") or {})
    if "trainer" in obj and isinstance(obj["trainer"], Mapping):
        key = _NESTED[kind or "var"]
        if key not in obj["trainer"]:
            raise CheckpointError(
                f"{path}: training checkpoint has no ['trainer'][{key!r}] "
                f"(has {sorted(obj['trainer'])})"
            )
        return dict(obj["trainer"][key]), None
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), None
    raise CheckpointError(f"{path}: unknown layout (top-level keys {sorted(map(str, obj))[:10]})")


def _strip_wrappers(sd: dict) -> dict:
    """Drop the `module.` (DDP) and `_orig_mod.` (torch.compile) prefixes when every key has one."""
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = cast(nn.Module, model._orig_mod)
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def load_state_dict_file(path: str | Path, kind: str = "var") -> dict[str, torch.Tensor]:
    """Flat state dict {key: tensor} from any supported layout; kind picks the nested entry."""
    if kind not in _NESTED:
        raise ValueError(f"kind must be 'var' or 'vqvae', got {kind!r}")
    return _strip_wrappers(_layout(_read(path), kind, Path(path))[0])


def load_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict"
) -> None:
    """Strictly load `state` into `model` (floats cast to the model dtype), with clear errors.

    Raises CheckpointError naming the first mismatching key with both shapes, or listing
    missing and unexpected keys.
    """
    model = unwrap(model)
    own = model.state_dict()
    state = _strip_wrappers(dict(state))
    # A VQVAE usage statistic with another number of scales is not a weight: keep ours.
    ema = "quantize.ema_vocab_hit_SV"
    if ema in state and ema in own and state[ema].shape != own[ema].shape:
        state[ema] = own[ema]
    bad = [
        (k, tuple(v.shape), tuple(own[k].shape))
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad:
        k, got, want = bad[0]
        more = f" (and {len(bad) - 1} more mismatching keys)" if len(bad) > 1 else ""
        raise CheckpointError(
            f"{source}: key {k!r} has shape {list(got)} in the checkpoint but "
            f"{list(want)} in the model{more}"
        )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: state dict does not match the model; missing keys "
            f"{missing[:20]}{'...' if len(missing) > 20 else ''}, unexpected keys "
            f"{unexpected[:20]}{'...' if len(unexpected) > 20 else ''}"
        )
    cast = {k: (v.to(own[k].dtype) if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(cast, strict=True)


def _infer_var_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """Constructor kwargs readable from an official VAR state dict.

    patch_nums: the 512px scales when L = 2240, otherwise the default (256px) ones.
    """
    try:
        depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        width = sd["word_embed.weight"].shape[0]
        cfg: dict[str, Any] = dict(
            depth=depth,
            width=width,
            z_channels=sd["word_embed.weight"].shape[1],
            num_classes=sd["class_emb.weight"].shape[0] - 1,
            vocab_size=sd["head.weight"].shape[0],
            shared_aln="shared_ada_lin.1.weight" in sd,
            attn_l2_norm="blocks.0.attn.scale_mul_1H11" in sd,
            mlp_ratio=sd["blocks.0.ffn.fc1.weight"].shape[0] / width,
        )
        L = sd["pos_1LC"].shape[1]
        if L == tokens_per_image(PATCH_NUMS_512):
            cfg["patch_nums"] = PATCH_NUMS_512
        if cfg["attn_l2_norm"]:
            cfg["heads"] = sd["blocks.0.attn.scale_mul_1H11"].shape[1]
        return cfg
    except (KeyError, ValueError, IndexError) as e:
        raise CheckpointError(f"state dict is not a VAR state dict (cannot read {e})") from e


def load_vqvae(path: str | Path, **overrides) -> VQVAE:
    """VQVAE from a checkpoint: toolkit file -> its config; official file -> default config
    (vocab_size, z_channels, ch read from the shapes; override anything with kwargs)."""
    obj = _read(path)
    sd, cfg = _layout(obj, "vqvae", Path(path))
    sd = _strip_wrappers(sd)
    cfg = {**(cfg or {}), **overrides}
    if "vocab_size" not in cfg and "quantize.embedding.weight" in sd:  # official file
        cfg["vocab_size"], cfg["z_channels"] = sd["quantize.embedding.weight"].shape
        if "encoder.conv_in.weight" in sd:
            cfg.setdefault("ch", sd["encoder.conv_in.weight"].shape[0])
    model = VQVAE(**cfg)
    load_into(model, sd, source=str(path))
    return model.eval()


def load_var(path: str | Path, **overrides) -> VAR:
    """VAR from a checkpoint: toolkit file -> its config; official -> config read from shapes.

    `overrides` replace config entries (e.g. patch_nums, attn_backend); a checkpoint that does
    not fit the resulting model raises CheckpointError naming the key and both shapes.
    """
    obj = _read(path)
    sd, cfg = _layout(obj, "var", Path(path))
    sd = _strip_wrappers(sd)
    if cfg is None:
        cfg = _infer_var_config(sd)
    cfg = {**cfg, **overrides}
    if "depth" in overrides and "width" not in overrides and "width" in cfg:
        cfg.pop("width")  # a new depth implies the default width 64*depth
        cfg.pop("heads", None)
    model = VAR(**cfg)
    load_into(model, sd, source=str(path))
    return model


def save_model(path: str | Path, model: nn.Module) -> None:
    """Write {'format', 'config', 'state_dict'} atomically (temp file, fsync, rename).

    DDP / torch.compile wrappers are unwrapped, so the keys are always the plain layout.
    """
    model = unwrap(model)
    if isinstance(model, VQVAE):
        fmt = FORMATS["vqvae"]
    elif isinstance(model, VAR):
        fmt = FORMATS["var"]
    else:
        raise TypeError(f"save_model takes a VQVAE or VAR, got {type(model).__name__}")
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.config().items()}
    payload = {
        "format": fmt,
        "config": cfg,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    _atomic_torch_save(payload, Path(path))


def _atomic_torch_save(payload: Any, path: Path) -> None:
    """torch.save to a temp file beside `path`, fsync, rename, fsync the folder.

    The same guarantees as `contracts.atomic.atomic_write` (which var_core cannot import:
    the model knows nothing of the study), checked against it by tests/core/test_atomic_writers.py:
    a failed write keeps the old file and leaves no temp file, the result has the mode a
    plain open() gives (a team can read it), and the rename itself is made durable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)  # the rename is durable once the folder is
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    """This process's umask, read without changing it (Linux: /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022
