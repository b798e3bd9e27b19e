"""Seeds of per-step random draws, derived from (run seed, step): no RNG state to checkpoint.

A draw seeded this way is the same for any number of processes and after any resume, so the
trainer's class-dropout mask and the VQVAE trainer's crop seeds need nothing saved.
"""

from __future__ import annotations

_STEP_STRIDE = 1_000_003  # a prime above any step count: (seed, step) pairs never collide


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step` of a run seeded `seed` (distinct for every (seed, step))."""
    return seed * _STEP_STRIDE + step
