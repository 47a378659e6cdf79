"""The train state: everything an update changes, as one pytree (checkpointed whole)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from rlx.models import lora


@flax.struct.dataclass
class TrainState:
    """step      int32 scalar: optimizer updates applied so far
    params    the policy parameters (plain pytree; a LoRA policy's include its frozen base)
    opt_state optax state of the trainable params only (`rlx.models.lora.trainable`:
              the adapters of a LoRA policy, else all params)
    rng       uint32 [2]: raw key data (checkpoint-friendly), advanced by every use
    """
    step: Any
    params: Any
    opt_state: Any
    rng: Any

    @classmethod
    def create(cls, params, optimizer, key: jax.Array) -> TrainState:
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(lora.trainable(params)),
                   rng=jax.random.key_data(key))

    def split_rng(self, n: int = 1):
        """(new state, n fresh keys): the RNG advances on every call."""
        keys = jax.random.split(jax.random.wrap_key_data(self.rng), n + 1)
        return self.replace(rng=jax.random.key_data(keys[0])), keys[1:]
