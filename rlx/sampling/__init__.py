"""Sampling: the KV-cache sampler (groups, prefix continuation) and tree sampling.

    out, state = rlx.sampling.generate(params, model_cfg, scfg, state, prompts, mask, group_size)
    out, state = rlx.sampling.continue_from(params, model_cfg, scfg, state, prompts, mask,
                                            completions, prefix_len, num_continuations)
    tree, state = rlx.sampling.sample_tree(params, model_cfg, scfg, state, prompts, mask,
                                           branching=(6, 6, 6), segment_len=30)
"""

from rlx.sampling.filters import filter_logits
from rlx.sampling.sampler import (
    DecodeState,
    SampleOutput,
    SamplerConfig,
    SamplerState,
    continue_from,
    generate,
    init_state,
    make_prefixes,
)
from rlx.sampling.tree import Tree, node_sequences, sample_tree, segment_lengths

__all__ = ["DecodeState", "SampleOutput", "SamplerConfig", "SamplerState", "Tree", "continue_from",
           "filter_logits", "generate", "init_state", "make_prefixes", "node_sequences", "sample_tree",
           "segment_lengths"]
