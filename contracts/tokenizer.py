"""``tokenizer_quality.json``: how good a multi-scale VQVAE is, measured once when a sweep
prepares it (`scaling.training.tokenizer_quality`, the one writer, called by the preparation
stage ``quality``) and written beside the VQVAE; read by the status CLI and joined to the tidy
table by the fit CLI (one row per run, through the run's token store).

    schema_version: 1
    vqvae_sha256: 43ea...            # the checkpoint measured (a stale file is detected)
    vqvae_path: .../vqvae/vqvae.pt
    vocab_size: 256
    patch_nums: [1, 2, 3, 4]
    split: val                       # the images measured: the first `images` of this split
    images: 500
    psnr: 24.1                       # reconstruction PSNR (dB, images on [0, 1])
    psnr_mean_colour: 14.2           # the trivial baseline: each image its mean colour
    scales:                          # per scale, coarse to fine (analysis.tokenizer.scale_codes)
      - {pn: 1, count: 500, used: 61, usage: 0.238, entropy_nats: 3.6, entropy_bits: 5.2,
         bias_nats: 0.06}
    features: classifier:classifier.pt   # the feature network of recon_fd (None: not measured)
    recon_fd: 1.9                    # Frechet distance of reconstructions to the originals
    recon_acc: 0.97                  # the classifier's accuracy on the reconstructions
    recon_fid: null                  # the same distance in Inception features (weights given)

Files without ``schema_version`` are version 0 and read the same. Policy: a file that is not
a JSON object of this shape, a missing key or a value of the wrong type is a `ContractError`
naming the file and the key (``scales[2].usage``); a newer version than this code is an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.atomic import atomic_write_json
from contracts.errors import ContractError

SCHEMA_VERSION = 1
FILE = "tokenizer_quality.json"
FIX = "; the preparation stage 'quality' rewrites it (remove the file and launch again)"


@dataclasses.dataclass(frozen=True)
class ScaleQuality:
    """The codes of one scale on the measured images."""

    pn: int  # token map pn x pn
    count: int  # codes seen (images x pn^2)
    used: int  # distinct codes
    usage: float  # used / vocab_size
    entropy_nats: float  # plug-in entropy of the code distribution
    entropy_bits: float
    bias_nats: float  # Miller-Madow estimate of the plug-in's low bias


@dataclasses.dataclass(frozen=True)
class TokenizerQuality:
    """One tokenizer_quality.json."""

    vqvae_sha256: str
    vqvae_path: str
    vocab_size: int
    patch_nums: tuple[int, ...]
    split: str
    images: int
    psnr: float
    psnr_mean_colour: float
    scales: tuple[ScaleQuality, ...]
    features: str | None = None
    recon_fd: float | None = None
    recon_acc: float | None = None
    recon_fid: float | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_nums", tuple(int(p) for p in self.patch_nums))
        object.__setattr__(self, "scales", tuple(self.scales))

    @property
    def tokens_per_image(self) -> int:
        """L = sum of pn^2."""
        return sum(p * p for p in self.patch_nums)

    def as_dict(self) -> dict[str, Any]:
        """The JSON document (schema_version first)."""
        d = dataclasses.asdict(self)
        d["patch_nums"] = list(self.patch_nums)
        return {"schema_version": d.pop("schema_version"), **d}

    def summary(self) -> str:
        """One line: 'V 256, L 30, PSNR 22.3 dB, usage 0.12/0.39/0.30/0.83, entropy
        4.2/5.7/3.7/5.8 bits, recon FD 20.7, recon acc 0.990'."""
        parts = [
            f"V {self.vocab_size}, L {self.tokens_per_image}, PSNR {self.psnr:.1f} dB",
            "usage " + "/".join(f"{s.usage:.2f}" for s in self.scales),
            "entropy " + "/".join(f"{s.entropy_bits:.1f}" for s in self.scales) + " bits",
        ]
        if self.recon_fd is not None:
            parts.append(f"recon FD {self.recon_fd:.3g}")
        if self.recon_acc is not None:
            parts.append(f"recon acc {self.recon_acc:.3f}")
        if self.recon_fid is not None:
            parts.append(f"recon FID {self.recon_fid:.3g}")
        return ", ".join(parts)

    def columns(self) -> dict[str, Any]:
        """The tidy table's columns for a run on this tokenizer (``tok_*``)."""
        out: dict[str, Any] = {
            "tok_vocab": self.vocab_size,
            "tok_L": self.tokens_per_image,
            "tok_psnr": self.psnr,
            "tok_recon_fd": self.recon_fd,
            "tok_recon_acc": self.recon_acc,
            "tok_recon_fid": self.recon_fid,
        }
        for k, s in enumerate(self.scales):
            out[f"tok_usage_s{k}"] = s.usage
            out[f"tok_entropy_bits_s{k}"] = s.entropy_bits
        # the code length of an image's tokens if each were coded by its scale's frequencies
        out["tok_entropy_bits_image"] = sum(s.entropy_bits * s.pn * s.pn for s in self.scales)
        return out


def _get(path: Path, data: Mapping[str, Any], key: str, kind: type | tuple, where: str = ""):
    name = f"{where}{key}"
    if key not in data:
        raise ContractError(path, f"{name}: missing{FIX}")
    value = data[key]
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        if not ok:
            raise ContractError(path, f"{name}: expected a finite number, got {value!r}{FIX}")
        return float(value)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ContractError(path, f"{name}: expected a count, got {value!r}{FIX}")
        return value
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ContractError(path, f"{name}: expected {expected}, got {value!r}{FIX}")
    return value


def _optional(path: Path, data: Mapping[str, Any], key: str, kind: type):
    return None if data.get(key) is None else _get(path, data, key, kind)


def from_dict(data: Any, path: str | Path = FILE) -> TokenizerQuality:
    """A quality record from its JSON object; any bad key is a `ContractError` naming it."""
    path = Path(path)
    if not isinstance(data, dict):
        raise ContractError(path, f"expected a JSON object{FIX}")
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ContractError(path, f"schema_version: expected a count, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ContractError(
            path, f"schema_version {version} is newer than this code reads ({SCHEMA_VERSION})"
        )
    patch_nums = _get(path, data, "patch_nums", list)
    bad = [p for p in patch_nums if not isinstance(p, int) or isinstance(p, bool) or p < 1]
    if bad or not patch_nums:
        raise ContractError(path, f"patch_nums: expected positive integers, got {patch_nums!r}")
    scales_raw = _get(path, data, "scales", list)
    if len(scales_raw) != len(patch_nums):
        raise ContractError(
            path, f"scales: {len(scales_raw)} entries for {len(patch_nums)} patch_nums{FIX}"
        )
    scales = []
    for k, s in enumerate(scales_raw):
        where = f"scales[{k}]."
        if not isinstance(s, dict):
            raise ContractError(path, f"scales[{k}]: expected a JSON object{FIX}")
        scales.append(
            ScaleQuality(
                pn=_get(path, s, "pn", int, where),
                count=_get(path, s, "count", int, where),
                used=_get(path, s, "used", int, where),
                usage=_get(path, s, "usage", float, where),
                entropy_nats=_get(path, s, "entropy_nats", float, where),
                entropy_bits=_get(path, s, "entropy_bits", float, where),
                bias_nats=_get(path, s, "bias_nats", float, where),
            )
        )
    for k, (s, pn) in enumerate(zip(scales, patch_nums)):
        if s.pn != pn:
            raise ContractError(path, f"scales[{k}].pn: {s.pn}, patch_nums says {pn}{FIX}")
    return TokenizerQuality(
        vqvae_sha256=_get(path, data, "vqvae_sha256", str),
        vqvae_path=_get(path, data, "vqvae_path", str),
        vocab_size=_get(path, data, "vocab_size", int),
        patch_nums=tuple(patch_nums),
        split=_get(path, data, "split", str),
        images=_get(path, data, "images", int),
        psnr=_get(path, data, "psnr", float),
        psnr_mean_colour=_get(path, data, "psnr_mean_colour", float),
        scales=tuple(scales),
        features=_optional(path, data, "features", str),
        recon_fd=_optional(path, data, "recon_fd", float),
        recon_acc=_optional(path, data, "recon_acc", float),
        recon_fid=_optional(path, data, "recon_fid", float),
        schema_version=version,
    )


def read_quality(path: str | Path) -> TokenizerQuality | None:
    """The quality in `path`; None when the file does not exist (not measured yet)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ContractError(path, f"cannot read it ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ContractError(path, f"not JSON ({e.msg}){FIX}", line=e.lineno) from None
    return from_dict(data, path)


def write_quality(path: str | Path, quality: TokenizerQuality) -> None:
    """Replace `path` with `quality` atomically (this contract's schema version)."""
    doc = dataclasses.replace(quality, schema_version=SCHEMA_VERSION).as_dict()
    atomic_write_json(path, doc)
