"""The models: multi-scale residual VQVAE and the VAR transformer (official layout)."""

from .attention import attend, make_block_mask
from .checkpoint import (CheckpointError, load_into, load_state_dict_file, load_var, load_vqvae,
                         save_model, unwrap)
from .counting import (attention_pairs, forward_flops, main_params, params,
                       train_flops_per_image)
from .quantizer import MultiScaleQuantizer
from .loss import head_cross_entropy, head_token_losses
from .sampling import sample, sample_idx, top_k_top_p_filter
from .var import VAR, KVCache
from .vqvae import DEFAULT_PATCH_NUMS, VQVAE, VQVAEOutput

__all__ = [
    "VQVAE", "VQVAEOutput", "VAR", "KVCache", "MultiScaleQuantizer", "DEFAULT_PATCH_NUMS",
    "sample", "sample_idx", "top_k_top_p_filter", "attend", "make_block_mask",
    "head_cross_entropy", "head_token_losses",
    "load_state_dict_file", "load_vqvae", "load_var", "load_into", "save_model", "unwrap", "CheckpointError",
    "params", "main_params", "forward_flops", "train_flops_per_image", "attention_pairs",
]
