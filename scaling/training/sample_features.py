"""Feature networks for sample-quality metrics: the TF-compatible Inception (FID, IS,
precision/recall) from local weights, or the demo's small classifier.

A feature network maps uint8 images [B, H, W, 3] to (pool features [B, D], logits [B, C]) as
float64 numpy arrays; `name`, `dim` and `image_size` (None: any size) describe it.
Nothing is downloaded: a missing or wrong weights file is an error saying what to fetch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from scaling.core.cli import InputError
from scaling.data.classifier import load_classifier

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FETCH = (
    f"fetch the TF-FID Inception weights in torch-fidelity's format ({INCEPTION_URL}, "
    f"about 92 MB) on a machine with internet access, copy the file here and give its "
    f"path as samples.inception_weights"
)
# shapes that identify the TF-2015 Inception of torch-fidelity (FID's network)
INCEPTION_KEYS = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "fc.weight": (1008, 2048)}


class FeatureError(InputError):
    """A feature network cannot be built from what the config names (message says what to do)."""


class FeatureNet(Protocol):
    name: str
    dim: int
    image_size: int | None

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [B, H, W, 3] -> (features [B, dim], logits [B, C]) float64."""


class ClassifierFeatures:
    """The demo classifier (`scaling.classifier`): penultimate layer and class logits."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.model, self.meta = load_classifier(path)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.name = f"classifier:{Path(path).name}"
        self.dim = int(self.meta["config"]["feature_dim"])
        self.image_size: int | None = int(self.meta["config"]["resolution"])

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(images, device=self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
        feats, logits = self.model(x)
        return feats.double().cpu().numpy(), logits.double().cpu().numpy()


def check_inception_weights(path: str | Path | None) -> Path:
    """The path of a torch-fidelity Inception weights file, or FeatureError saying what to fetch."""
    if path is None:
        raise FeatureError(f"samples.inception_weights is not set: {INCEPTION_FETCH}")
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: no such Inception weights file: {INCEPTION_FETCH}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise FeatureError(
            f"{path}: not an Inception weights file (torch cannot read it: "
            f"{type(e).__name__}); {INCEPTION_FETCH}"
        ) from None
    bad = [
        k
        for k, shape in INCEPTION_KEYS.items()
        if not isinstance(state, dict)
        or not isinstance(state.get(k), torch.Tensor)
        or tuple(state[k].shape) != shape
    ]
    if bad:
        raise FeatureError(
            f"{path}: not the TF-FID Inception weights (missing or wrong-shaped "
            f"{', '.join(bad)}); {INCEPTION_FETCH}"
        )
    return path


class InceptionFeatures:
    """torch-fidelity's `FeatureExtractorInceptionV3` (the TF-FID port: bilinear resize to 299
    as TF 1.x did), pool features '2048' and 'logits_unbiased', weights from a local file."""

    name = "inception-v3-compat"
    dim = 2048
    image_size: int | None = None

    def __init__(self, weights: str | Path | None, device: str | torch.device = "cpu"):
        path = check_inception_weights(weights)
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise FeatureError(
                f"the Inception features need torch-fidelity (`pip install torch-fidelity`, "
                f"with a torchvision matching your torch): {e}"
            ) from None
        self.device = torch.device(device)
        self.model = FeatureExtractorInceptionV3(
            self.name, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        ).to(self.device)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(images, device=self.device).permute(0, 3, 1, 2).contiguous()
        pool, logits = self.model(x)
        return pool.double().cpu().numpy(), logits.double().cpu().numpy()


def extract(
    net: FeatureNet, images: np.ndarray, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Features and logits of uint8 images [N, H, W, 3], in batches."""
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        f, lg = net(images[i : i + batch_size])
        feats.append(f)
        logits.append(lg)
    return np.concatenate(feats), np.concatenate(logits)
