"""The policy model: Llama-3 / Qwen2 / Qwen3 decoder in JAX, HF interop, tokenizers.

    cfg = rlx.models.tiny(vocab_size=104)              # or: params, cfg = rlx.models.from_hf(path)
    params = rlx.models.init_params(cfg, key)          # a plain nested dict of arrays
    logits = rlx.models.forward(params, cfg, tokens_BL, attention_mask_BL=mask_BL)   # float32 [B, L, V]
    logp_BT = rlx.models.completion_logprobs(params, cfg, prompt_BLp, prompt_mask_BLp, completion_BT,
                                             completion_mask_BT)
    logp_BT = rlx.models.shared_prefix_logprobs(params, cfg, prompt_PLp, prompt_mask_PLp, completion_BT,
                                                completion_mask_BT)   # each prompt encoded once

Logical axis names (mapped onto the mesh by the rules tables of `rlx.parallel`; every
annotation is a no-op when no rules table is active):
  params       "vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm",
               "layers" (the stacked-layer axis; see `param_logical_axes`)
  activations  "batch", "length", "act_embed", "act_heads", "act_kv_heads", "act_mlp",
               "act_vocab" (head_dim of activations is left unnamed: None)
  KV cache     "cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim":
               per layer keys [B, N, Dh, S] (`K_AXES`) and values [B, N, S, Dh]
               (`V_AXES`); `cache_logical_axes(cfg)`
"""

from rlx.models.cache import (
    K_AXES,
    V_AXES,
    cache_logical_axes,
    decode_params,
    decode_step,
    init_cache,
    prefill,
    repeat_rows,
)
from rlx.models.config import ModelConfig, tiny
from rlx.models.hf import from_hf, read_hf_config, to_hf
from rlx.models.logprobs import completion_logprobs, resolve_vocab_chunk, token_logprobs
from rlx.models.shared_prefix import (
    packed_logprobs,
    prefix_group_attention,
    shared_prefix_logprobs,
    tree_attention_mask,
)
from rlx.models.tokenizer import build_tokenizer, load_tokenizer
from rlx.models.transformer import (
    attend,
    causal_mask,
    forward,
    hidden_states,
    init_params,
    logits_from_hidden,
    padding_positions,
    param_logical_axes,
    unembed_matrix,
)

__all__ = [
    "K_AXES", "ModelConfig", "attend", "build_tokenizer", "cache_logical_axes", "causal_mask",
    "completion_logprobs", "decode_params", "decode_step", "forward", "from_hf", "hidden_states", "init_cache",
    "init_params", "load_tokenizer", "logits_from_hidden", "packed_logprobs", "padding_positions",
    "param_logical_axes", "prefill", "prefix_group_attention", "read_hf_config", "repeat_rows", "resolve_vocab_chunk",
    "shared_prefix_logprobs", "tiny", "to_hf", "token_logprobs", "tree_attention_mask", "unembed_matrix", "V_AXES",
]
