"""Sampling: the KV-cache sampler (groups, prefix continuation) and tree sampling.

    state = rlx.sampling.init_state(jax.random.key(0))
    out, state = rlx.sampling.generate(params, model_cfg, scfg, state, prompts_PLp, mask_PLp, group_size)
    out, state = rlx.sampling.continue_from(params, model_cfg, scfg, state, prompts_NLp, mask_NLp,
                                            completions_NT, prefix_len_N, num_continuations)
    tree, state = rlx.sampling.sample_tree(params, model_cfg, scfg, state, prompts_PLp, mask_PLp,
                                           branching=(6, 6, 6), segment_len=30)
    edges, valid_PE = rlx.sampling.edge_samples(tree)       # SPO-tree training rows
"""

from rlx.sampling.categorical import argmax, sample_categorical
from rlx.sampling.config import SampleOutput, SamplerConfig, SamplerState, init_state, split_state
from rlx.sampling.sampler import (
    DecodeState,
    continue_from,
    decode,
    fork,
    generate,
    make_prefixes,
    pick,
    row_keys,
    sample_rows,
    start,
)
from rlx.sampling.topk import filter_logits
from rlx.sampling.tree import (
    Tree,
    edge_samples,
    node_completions,
    sample_tree,
    segment_lengths,
    tree_logprobs,
    tree_structure,
)

__all__ = [
    "DecodeState", "SampleOutput", "SamplerConfig", "SamplerState", "Tree", "argmax", "continue_from", "decode",
    "edge_samples", "filter_logits", "fork", "generate", "init_state", "make_prefixes", "node_completions", "pick",
    "row_keys", "sample_categorical", "sample_rows", "sample_tree", "segment_lengths", "split_state", "start",
    "tree_logprobs", "tree_structure",
]
