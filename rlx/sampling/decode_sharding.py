"""Where the decode loop keeps the weights (`SamplerConfig.decode_sharding`).

A decode step reads every weight to produce one token per row, so on a mesh its cost is
set by where the weights live. Training shards them FSDP-style; decoding with that
layout all-gathers the whole model on every step (each chip receives, writes and reads
all of it: `rlx.plan`'s decode step of configs/scale/qwen05b_v5e8.py reads 4.4 GB per
chip, 10x the floor). `decode_weights` places the per-call decode params once per
sampling call (`rlx.models.cache.decode_params`, then `constrain_decode_params` under
`rlx.parallel.decode_rules`), and `decode_scope` traces the decode step under the same
rules, so the partitioner keeps that placement inside the loop. The modes
(`rlx.parallel.decode_rules` has the details): "params" (as trained; the default),
"replicated" (every chip holds the whole model: for small models on few chips),
"tensor" (MLP and vocabulary over every chip, attention weights replicated, attention
per row shard). Outside a mesh (`rlx.parallel.use_rules`) all three are the same
program. Results do not depend on the mode beyond float rounding of the sharded
reductions (tested on 8 devices against 1).
"""

from __future__ import annotations

import contextlib

from rlx.models.cache import constrain_decode_params, decode_params
from rlx.models.config import ModelConfig
from rlx.parallel import rules
from rlx.sampling.config import SamplerConfig


def decode_scope(scfg: SamplerConfig):
    """A context that traces decode steps under the mode's rules (a no-op for "params"
    or outside a mesh)."""
    active = rules.active()
    if active is None or scfg.decode_sharding == "params":
        return contextlib.nullcontext()
    mesh, table = active
    return rules.use_rules(mesh, rules.decode_rules(table, scfg.decode_sharding))


def decode_weights(params, cfg: ModelConfig, scfg: SamplerConfig) -> dict:
    """`decode_params(params)`, placed where the mode wants them (once per call)."""
    dp = decode_params(params, cfg)
    if scfg.decode_sharding == "params":
        return dp
    with decode_scope(scfg):
        return constrain_decode_params(dp, cfg)


def rows_sharded(scfg: SamplerConfig, logits_BV):
    """Next-token logits back on the rows' shards (the sampler's per-row picking and
    bookkeeping run there); "tensor" leaves them sharded over the vocabulary."""
    if scfg.decode_sharding == "params":
        return logits_BV
    return rules.constrain(logits_BV, ("cache_batch", None))
