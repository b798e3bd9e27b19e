"""What a VQVAE checkpoint makes, read without torch and without reading its weights.

A sweep's estimates need the vocabulary, the scales and the code width of an existing VQVAE
(`data.vqvae`, or a tokenizer variant's `checkpoint:`) before anything is tokenised, on any
machine, in a moment. A checkpoint written by `torch.save` is a zip archive whose
``data.pkl`` holds the structure and whose tensors are separate entries; `read_vqvae_header`
unpickles only that structure, with every tensor replaced by its shape, and refuses any
global outside a short list (nothing in the file runs). The toolkit's files carry their
config; the official flat state dict gives the vocabulary and code width by the shape of
``quantize.embedding.weight`` and uses the default scales (what `var_core.load_vqvae` builds).
"""

from __future__ import annotations

import collections
import dataclasses
import pickle
import zipfile
from pathlib import Path
from typing import Any

# the scales the official VQVAE (vae_ch160v4096z32.pth) is built with (var_core's defaults)
OFFICIAL_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
MAX_PICKLE_BYTES = 64 << 20  # a structure larger than this is not a VQVAE checkpoint's


class HeaderUnreadable(ValueError):
    """The checkpoint's structure cannot be read cheaply (the message says why)."""


@dataclasses.dataclass(frozen=True)
class VQVAEHeader:
    """A VQVAE checkpoint's token geometry: what a token store made with it holds."""

    vocab_size: int  # codebook size
    z_channels: int  # code width
    patch_nums: tuple[int, ...]  # scales of the token maps
    layout: str  # 'toolkit' (its config) or 'official' (shapes, default scales)


@dataclasses.dataclass(frozen=True)
class _Shape:
    """A tensor in the unpickled structure: its shape only."""

    shape: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *rest: Any) -> _Shape:
    return _Shape(tuple(int(s) for s in size))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


class _Marker:
    """Stands for a storage type or other torch object named in the pickle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _ShapesOnly(pickle.Unpickler):
    """Unpickles the structure: tensors become `_Shape`, storages and dtypes markers; any
    other global is refused (nothing in the file runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and (name.endswith("Storage") or name in ("device", "Size")):
            return _Marker
        raise pickle.UnpicklingError(f"global {module}.{name} is not read here")

    def persistent_load(self, pid: Any) -> Any:
        return _Marker()


def _structure(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise HeaderUnreadable(f"{path}: no single data.pkl in the archive")
            info = z.getinfo(names[0])
            if info.file_size > MAX_PICKLE_BYTES:
                raise HeaderUnreadable(f"{path}: its structure is too large to be a VQVAE's")
            with z.open(info) as f:
                return _ShapesOnly(f).load()
    except HeaderUnreadable:
        raise
    except zipfile.BadZipFile:
        raise HeaderUnreadable(
            f"{path}: not a zip-format torch checkpoint (an old torch format?)"
        ) from None
    except OSError as e:
        raise HeaderUnreadable(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 -- any unpickling failure: not readable cheaply
        raise HeaderUnreadable(f"{path}: cannot read its structure ({e})") from None


def _flat_state(obj: Any) -> dict | None:
    """The flat state dict of a toolkit, official-training or official flat checkpoint."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    trainer = obj.get("trainer")
    if isinstance(trainer, dict) and isinstance(trainer.get("vae_local"), dict):
        return trainer["vae_local"]
    return obj


def read_vqvae_header(path: str | Path) -> VQVAEHeader:
    """The vocabulary, code width and scales of the VQVAE checkpoint `path`, read from its
    structure only (torch-free; see the module docstring). Raises `HeaderUnreadable` when the
    file is missing, not a zip-format torch file or not a VQVAE checkpoint."""
    path = Path(path)
    obj = _structure(path)
    if isinstance(obj, dict) and isinstance(obj.get("config"), dict):
        cfg = obj["config"]
        try:
            return VQVAEHeader(
                vocab_size=int(cfg["vocab_size"]),
                z_channels=int(cfg["z_channels"]),
                patch_nums=tuple(int(p) for p in cfg.get("patch_nums", OFFICIAL_PATCH_NUMS)),
                layout="toolkit",
            )
        except (KeyError, TypeError, ValueError):
            raise HeaderUnreadable(f"{path}: its config names no vocab_size/z_channels") from None
    state = _flat_state(obj) or {}
    state = {
        (k[len("module.") :] if isinstance(k, str) and k.startswith("module.") else k): v
        for k, v in state.items()
    }
    emb = state.get("quantize.embedding.weight")
    if not isinstance(emb, _Shape) or len(emb.shape) != 2:
        raise HeaderUnreadable(f"{path}: no quantize.embedding.weight: not a VQVAE checkpoint")
    return VQVAEHeader(
        vocab_size=emb.shape[0],
        z_channels=emb.shape[1],
        patch_nums=OFFICIAL_PATCH_NUMS,
        layout="official",
    )
