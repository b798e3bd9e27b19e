"""The models: multi-scale residual VQVAE and the VAR transformer (official layout).

The names below are imported on first use (PEP 562), so that the torch-free parts
(`var_core.counting`, `var_core.scales`) can be imported without torch: planning and fitting
tools count FLOPs on machines without it. ``from var_core import VAR`` works as before.
"""

from __future__ import annotations

import importlib

# public name -> the submodule that defines it
_EXPORTS = {
    "attend": "attention",
    "make_block_mask": "attention",
    "CheckpointError": "checkpoint",
    "load_into": "checkpoint",
    "load_state_dict_file": "checkpoint",
    "load_var": "checkpoint",
    "load_vqvae": "checkpoint",
    "save_model": "checkpoint",
    "unwrap": "checkpoint",
    "attention_pairs": "counting",
    "forward_flops": "counting",
    "main_params": "counting",
    "params": "counting",
    "train_flops_per_image": "counting",
    "MultiScaleQuantizer": "quantizer",
    "head_cross_entropy": "loss",
    "head_token_losses": "loss",
    "sample": "sampling",
    "sample_idx": "sampling",
    "top_k_top_p_filter": "sampling",
    "edit": "editing",
    "edit_idx": "editing",
    "scale_masks": "editing",
    "VAR": "var",
    "KVCache": "var",
    "DEFAULT_PATCH_NUMS": "scales",
    "VQVAE": "vqvae",
    "VQVAEOutput": "vqvae",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """Import the submodule defining `name` on first access (keeps `var_core.counting`
    torch-free)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'var_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
