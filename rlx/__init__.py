"""rlx: JAX-native reinforcement-learning post-training of language models.

The public API is organised by what a piece of RL post-training is:
`rlx.ops` (masked reductions, log-probs), `rlx.types` (Rollout / Batch pytrees),
`rlx.registry` (name -> function registries used by configs).
"""

from rlx import ops, registry, types
from rlx.types import Batch, FinishReason, Rollout

__version__ = "0.1.0"

__all__ = ["Batch", "FinishReason", "Rollout", "ops", "registry", "types"]
