"""The token-map side lengths of VAR's scales (torch-free: used by FLOP counting and planning)."""

from __future__ import annotations

# the official 256px schedule: 10 scales, L = sum(pn^2) = 680 tokens per image
DEFAULT_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
