"""Sampler configuration (static, hashable), state (a pytree) and output (a pytree)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax

KV_CACHES = ("dense", "paged", "ragged")


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Static sampling settings (a jit static argument: changing one recompiles).

    max_prompt_len: prompt width Lp; `generate` left-pads narrower prompts to it so
      every call with the same batch size reuses one compilation.
    max_new_tokens: the completion budget T.
    temperature: 0 = greedy (argmax); otherwise logits are divided by it.
    top_k: keep the k most likely tokens (0 = off). top_p: nucleus sampling, keep the
      smallest set of most likely tokens whose mass reaches p (1.0 = off). Applied in
      the order temperature -> top-k -> top-p (as HF's logits warpers).
    stop_ids: tokens that end a completion (kept in it, mask True).
    pad_id: the token written after a row has finished (mask False).
    rows_per_call: rows (prompts x samples) per compiled sampler call; a call with more
      rows runs in chunks of whole prompts (the KV cache holds rows_per_call rows), with
      the same samples (randomness is per row). 0 = all rows in one call.
    kv_cache: "dense" (every row holds prompt + budget columns; the G samples of a
      prompt copy its cache; every row decodes until the slowest is done), or continuous
      batching (`rlx.sampling.continuous`: `slots` rows decode at once, a finished slot
      takes the next request) over "paged" KV (a page pool; the G samples share their
      prompt's pages; on TPU the Pallas paged-attention kernel) or "ragged" KV (a cache
      row per slot, the prompt copied into it when the slot takes a request; attention
      in place: the fast layout for XLA on CPU / GPU). Same samples for the same key
      whatever the layout or slot count (tested). Tree sampling (`sample_tree`) always
      uses the dense cache.
    slots: rows decoded at once by the paged sampler (0 = all rows of the call: no
      refills). Fewer slots than rows pays off when lengths are long-tailed.
    page_size: tokens per KV page of the paged sampler.
    decode_sharding: where the decode loop keeps the weights on a mesh
      (`rlx.sampling.decode_sharding`): "params" (as trained), "replicated", or
      "tensor" (MLP and vocabulary over every chip). No effect on one device.
    logprob_temperature: the temperature of the policy whose log-prob `logprobs`
      reports, log softmax(logits / logprob_temperature)[token] (> 0). The engine sets
      it to the trainer's policy temperature (`rl.policy_temperature`), so the sampler's
      log-probs are the trainer's pi_old; 1.0 = the untempered model.
    """
    max_prompt_len: int
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    stop_ids: tuple[int, ...] = ()
    pad_id: int = 0
    rows_per_call: int = 0
    kv_cache: str = "dense"
    slots: int = 0
    page_size: int = 16
    decode_sharding: str = "params"
    logprob_temperature: float = 1.0

    def __post_init__(self):
        for f in ("max_prompt_len", "max_new_tokens"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SamplerConfig.{f}: expected a positive int, got {v!r}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature >= 0:
            raise ValueError(f"SamplerConfig.temperature: must be a number >= 0, got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"SamplerConfig.top_k: must be an int >= 0, got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"SamplerConfig.top_p: must be in (0, 1], got {self.top_p!r}")
        try:
            stops = tuple(int(s) for s in self.stop_ids)
        except (TypeError, ValueError):
            raise ValueError(f"SamplerConfig.stop_ids: expected a tuple of ints, got {self.stop_ids!r}") from None
        if any(s < 0 for s in stops):
            raise ValueError(f"SamplerConfig.stop_ids: token ids must be >= 0, got {stops}")
        if not isinstance(self.pad_id, int) or self.pad_id < 0:
            raise ValueError(f"SamplerConfig.pad_id: must be an int >= 0, got {self.pad_id!r}")
        if not isinstance(self.rows_per_call, int) or self.rows_per_call < 0:
            raise ValueError(f"SamplerConfig.rows_per_call: must be an int >= 0, got {self.rows_per_call!r}")
        if self.kv_cache not in KV_CACHES:
            raise ValueError(f"SamplerConfig.kv_cache: expected one of {KV_CACHES}, got {self.kv_cache!r}")
        for f in ("slots", "page_size"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if f == "page_size" else 0):
                raise ValueError(f"SamplerConfig.{f}: expected an int >= {1 if f == 'page_size' else 0}, got {v!r}")
        from rlx.parallel.rules import DECODE_SHARDINGS
        if self.decode_sharding not in DECODE_SHARDINGS:
            raise ValueError(f"SamplerConfig.decode_sharding: expected one of {DECODE_SHARDINGS}, got "
                             f"{self.decode_sharding!r}")
        if not isinstance(self.logprob_temperature, (int, float)) or not self.logprob_temperature > 0:
            raise ValueError(f"SamplerConfig.logprob_temperature: must be a number > 0, got "
                             f"{self.logprob_temperature!r}")
        if self.slots and self.kv_cache == "dense":
            raise ValueError(f"SamplerConfig.slots={self.slots}: continuous batching needs kv_cache='paged' or "
                             "'ragged'")
        object.__setattr__(self, "stop_ids", stops)
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "logprob_temperature", float(self.logprob_temperature))

    def replace(self, **kw) -> SamplerConfig:
        return dataclasses.replace(self, **kw)


@flax.struct.dataclass
class SamplerState:
    """The sampler's state: raw uint32 key data (checkpointable with Orbax as is).
    Every sampling call splits it and returns the advanced state."""
    rng: Any


def init_state(key: jax.Array) -> SamplerState:
    """A sampler state from a JAX PRNG key (typed or raw)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return SamplerState(rng=key)


def split_state(state: SamplerState) -> tuple[jax.Array, SamplerState]:
    """(a typed key for this call, the advanced state)."""
    new, use = jax.random.split(jax.random.wrap_key_data(state.rng))
    return use, SamplerState(rng=jax.random.key_data(new))


@flax.struct.dataclass
class SampleOutput:
    """Sampled completions; fields map one-to-one onto `rlx.types.Rollout`.

    B rows; for `generate`, B = P * G and row p*G+g is sample g of prompt p.
      prompt_tokens      int32   [B, Lp]  left-padded prompt (repeated per sample)
      prompt_mask        bool    [B, Lp]
      completion_tokens  int32   [B, T]   right-padded with pad_id
      completion_mask    bool    [B, T]   real tokens (the stop token included)
      logprobs           float32 [B, T]   log pi_T(token), T = logprob_temperature (0 on padding)
      sampling_logprobs  float32 [B, T]   log-prob under the distribution actually
                                          sampled (temperature, top-k, top-p; 0 for greedy)
      lengths            int32   [B]      real completion tokens
      finish_reason      int32   [B]      rlx.types.FinishReason (STOP=0, LENGTH=1)
    """
    prompt_tokens: Any
    prompt_mask: Any
    completion_tokens: Any
    completion_mask: Any
    logprobs: Any
    sampling_logprobs: Any
    lengths: Any
    finish_reason: Any
