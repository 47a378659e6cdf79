"""The policy model: Llama-3 / Qwen2 / Qwen3 decoder in JAX, HF interop, tokenizers.

    cfg = rlx.models.tiny(vocab_size=104)              # or: params, cfg = from_hf(path)
    params = rlx.models.init_params(cfg, key)
    logits = rlx.models.forward(params, cfg, tokens)   # float32 [B, L, V]
    logp = rlx.models.completion_logprobs(params, cfg, prompt, prompt_mask, completion, completion_mask)

Logical axis names (mapped to the mesh by `rlx.parallel` rules):
  params       vocab, embed, q_heads, kv_heads, head_dim, mlp, norm, layers
  activations  batch, length, act_embed, act_heads, act_kv_heads, act_mlp, act_vocab
  KV cache     cache_batch, cache_length, cache_kv_heads, cache_head_dim
"""

from rlx.models.cache import decode_step, init_cache, prefill
from rlx.models.config import ModelConfig, tiny
from rlx.models.hf import from_hf, to_hf
from rlx.models.logprobs import completion_logprobs
from rlx.models.shared_prefix import shared_prefix_logprobs, tree_attention_mask
from rlx.models.tokenizer import build_tokenizer, load_tokenizer
from rlx.models.transformer import (
    forward,
    hidden_states,
    init_params,
    logits_from_hidden,
    param_logical_axes,
    unembed_matrix,
)

__all__ = [
    "ModelConfig", "build_tokenizer", "completion_logprobs", "decode_step", "forward", "from_hf",
    "hidden_states", "init_cache", "init_params", "load_tokenizer", "logits_from_hidden",
    "param_logical_axes", "prefill", "shared_prefix_logprobs", "tiny", "to_hf", "tree_attention_mask",
    "unembed_matrix",
]
