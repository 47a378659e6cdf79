"""Supervised warm start on generated demonstrations (cached in the run directory).

A random tiny model cannot be rewarded into arithmetic from scratch in minutes: every
sample is wrong, every GRPO group has zero variance, nothing is learned. The default
experiment therefore first fits the model for `sft.steps` steps to (prompt, gold
completion) pairs of the training task — deliberately short, so the policy is right
sometimes and RL has room to improve it. The loss is the token-mean negative
log-likelihood of the completion (prompt tokens are context only), computed with the
same `rlx.models.completion_logprobs` the RL update uses, in micro-batches of
`train.forward_rows` rows (`rlx.train.programs.make_sft_step`: one compiled step).

The result is cached in run_dir/sft as an HF checkpoint (`rlx.models.to_hf`) together
with the settings that produced it; a later run with the same settings reuses it.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from tqdm import trange

from rlx import models
from rlx.train import data as tdata
from rlx.train.config import init_seed
from rlx.train.programs import shardings_like_params


def _settings(c) -> dict:
    """What the cached warm start depends on: the config less the LoRA adapters (SFT trains
    the base; adapters come later) and less the keys a resume may change (`resume.FREE_KEYS`:
    where and how a run executes, e.g. `model.vocab_chunk`, `sampler.rows_per_call`)."""
    from rlx.train.resume import _free

    def keep(section):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(c[section]).items()
                if k != "lora" and not _free(f"{section}.{k}", ())}
    out = {"seed": init_seed(c), "model": keep("model"), "data": keep("data"), "sft": dict(c.sft),
           "sampler": keep("sampler")}
    if c.env.name:                 # environment runs: their demonstrations (no key of older caches)
        out["env"] = {k: (dict(v) if k.endswith("_kwargs") else v) for k, v in keep("env").items()}
    return out


def demonstrations(ctx, num: int, seed: int):
    """Tokenized (prompt, gold completion + EOS) pairs drawn uniformly from the sources."""
    tok = ctx.tokenizer
    s = ctx.sampler_cfg
    key = jax.random.key(seed)
    src, ex = tdata.select_prompts(key, ctx.train_src.sizes, num, "uniform")
    examples = ctx.train_src.lookup(src, ex)
    p_tok, p_mask, _ = tdata.encode_prompts(tok, [e["prompt"] for e in examples], s.max_prompt_len, s.pad_id,
                                            encode=ctx.encode_prompt)
    c_tok = np.full((num, s.max_new_tokens), s.pad_id, np.int32)
    c_mask = np.zeros((num, s.max_new_tokens), bool)
    eos = [] if tok.eos_token_id is None else [int(tok.eos_token_id)]
    for i, e in enumerate(examples):
        ids = (tok.encode(tdata.demonstration(e), add_special_tokens=False) + eos)[: s.max_new_tokens]
        c_tok[i, :len(ids)] = ids
        c_mask[i, :len(ids)] = True
    return p_tok, p_mask, c_tok, c_mask


def warm_start(ctx, params, *, cached_only: bool = False, demos=None):
    """The SFT warm start of `params` (`ctx`: the run's `rlx.train.kinds.RunContext`;
    `demos(num, seed)` the examples, default `demonstrations` of the data task):
    the run's cache (`run_dir/sft`) when its settings match, else trained and cached.
    `cached_only` (a LoRA run resuming: its checkpoints hold adapters trained on this
    very base) refuses to retrain — and so to overwrite the cache — with a RestoreError."""
    c = ctx.config
    cache = os.path.join(ctx.run_dir, "sft")
    settings = _settings(c)
    stamp = os.path.join(cache, "rlx_sft.json")
    why = "it is missing"
    if os.path.exists(stamp):
        with open(stamp) as f:
            old = json.load(f)
        if old == json.loads(json.dumps(settings)):
            cached, _ = models.from_hf(cache)
            cached = jax.tree.map(lambda x, p: x.astype(p.dtype), cached, params)
            return jax.device_put(cached, ctx.programs.base_param_sh)
        why = "it was made with other settings"
    if cached_only:
        from rlx.train.checkpoint import RestoreError
        raise RestoreError(f"--resume: this LoRA run's checkpoints hold adapters trained on the SFT warm start "
                           f"cached in {cache}, but {why}; restore that directory (or start a new run)")
    progs = ctx.programs
    cfg = progs.base_cfg
    opt_sh = shardings_like_params(jax.eval_shape(progs.sft_optimizer.init, params), params, progs.base_param_sh,
                                   ctx.mesh)
    opt_state = jax.jit(progs.sft_optimizer.init, out_shardings=opt_sh)(params)
    step = progs.sft_step
    n = c.sft.steps * c.sft.batch_size
    data = (demos or (lambda k, s: demonstrations(ctx, k, s)))(n, init_seed(c) + 1)
    bs = c.sft.batch_size
    bar = trange(c.sft.steps, desc="SFT warm start", disable=not c.log.progress or jax.process_index() != 0)
    for i in bar:
        sl = slice(i * bs, (i + 1) * bs)
        params, opt_state, loss = step(params, opt_state, *(ctx.put(x[sl]) for x in data))
        if i % 10 == 0 or i == c.sft.steps - 1:
            bar.set_postfix(nll=f"{float(loss):.3f}", refresh=False)
    from rlx.train.rollout import to_host
    host = jax.tree.map(to_host, params)
    if jax.process_index() == 0:
        models.to_hf(host, cfg, cache)
        with open(stamp, "w") as f:
            json.dump(settings, f)
    return params
