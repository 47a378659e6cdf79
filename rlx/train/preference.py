"""Preference training in the engine: offline pairs or on-policy pairs, any pairwise loss.

When `config.rl.loss` names a preference loss (`rlx.losses.preference_names()`: dpo,
ipo, robust_dpo, hinge, apo_zero, discopop, ...), each engine step builds N pairs
(prompt, chosen y_w, rejected y_l) and takes `rl.epochs` optimizer steps on

    loss(sum_t log pi(y_w), sum_t log pi(y_l), sum_t log pi_ref(y_w), sum_t log pi_ref(y_l), **loss_kwargs)

with pi_ref the frozen initial policy (after the SFT warm start), its log-probs
computed once per batch. `pref.average_logps` uses token-mean log-probs instead (the
length-normalized variant, e.g. IPO as evaluated in its paper).

Pair sources (`pref.source`):
  offline  the task's gold completion (chosen) against the same completion with a
           corrupted answer (rejected) — a numeric answer shifted by a nonzero offset,
           a Knights & Knaves role flipped — for the step's prompts; or, with
           `pref.path`, pairs read from a local JSONL of {"prompt", "chosen", "rejected"}
  online   G samples per prompt from the current policy, scored by the task's reward;
           the best sample is chosen, the worst rejected; groups whose samples all
           score the same give no pair (valid = False) — online DPO / RSO-style pairs.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlx import losses, models
from rlx.data.jsonl import records
from rlx.data.preference import PreferenceBatch
from rlx.models import lora
from rlx.train import data as tdata
from rlx.train.microbatch import map_rows
from rlx.train.state import TrainState
from rlx.train.update import apply_if_finite, reduce_metrics


def is_preference(loss_name: str) -> bool:
    return loss_name in losses.preference_names()


def corrupt(example: dict, rng: np.random.Generator) -> str:
    """The example's gold completion with a wrong answer (see the module docstring)."""
    gold = tdata.demonstration(example)
    ans = str(example["answer"])
    if re.fullmatch(r"-?\d+", ans.strip()):
        wrong = str(int(ans) + int(rng.choice([-3, -2, -1, 1, 2, 3])))
    elif "knight" in ans or "knave" in ans:
        lines = ans.split("\n")
        i = int(rng.integers(len(lines)))
        lines[i] = lines[i].replace("knight", "\0").replace("knave", "knight").replace("\0", "knave")
        wrong = "\n".join(lines)
    else:
        raise ValueError(f"pref.source='offline': no answer corruption for task answer {ans!r}; "
                         "give pairs with pref.path")
    return gold.replace(ans, wrong) if ans in gold else wrong


def load_pairs(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"config.pref.path: no such file {path!r}")
    pairs = []
    for _, where, rec in records(path):
        missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(rec.get(k), str)]
        if missing:
            raise ValueError(f"{where}: missing or non-string field(s) {missing}")
        pairs.append(rec)
    if not pairs:
        raise ValueError(f"{path}: no pairs")
    return pairs


def encode_responses(tokenizer, texts: list[str], T: int, pad_id: int):
    """Right-padded responses + EOS, truncated to T (as the SFT demonstrations)."""
    tok = np.full((len(texts), T), pad_id, np.int32)
    mask = np.zeros((len(texts), T), bool)
    eos = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    for i, t in enumerate(texts):
        ids = (tokenizer.encode(t, add_special_tokens=False) + eos)[:T]
        tok[i, :len(ids)] = ids
        mask[i, :len(ids)] = True
    return tok, mask


def pair_batch(ctx, prompts, chosen, rejected, valid) -> PreferenceBatch:
    """The pairs tokenized by the run's tokenizer and placed on its mesh (`ctx`: a
    `rlx.train.kinds.RunContext`)."""
    s = ctx.sampler_cfg
    pt, pm, _ = tdata.encode_prompts(ctx.tokenizer, prompts, s.max_prompt_len, s.pad_id, encode=ctx.encode_prompt)
    ct, cm = encode_responses(ctx.tokenizer, chosen, s.max_new_tokens, s.pad_id)
    rt, rm = encode_responses(ctx.tokenizer, rejected, s.max_new_tokens, s.pad_id)
    return PreferenceBatch(*(ctx.put(x) for x in (pt, pm, ct, cm, rt, rm, np.asarray(valid, bool))))


def online_pairs(groups: dict) -> tuple[dict, np.ndarray]:
    """Best / worst sample of each group as token arrays; valid where they differ in reward."""
    r = groups["rewards"]
    best, worst = r.argmax(1), r.argmin(1)
    P = r.shape[0]
    pick = lambda k, i: groups[k][np.arange(P), i]  # noqa: E731
    pairs = {"prompt_tokens": groups["prompt_tokens"][:, 0], "prompt_mask": groups["prompt_mask"][:, 0],
             "chosen_tokens": pick("completion_tokens", best), "chosen_mask": pick("completion_mask", best),
             "rejected_tokens": pick("completion_tokens", worst),
             "rejected_mask": pick("completion_mask", worst)}
    return pairs, r.max(1) > r.min(1)


def make_pref_update(model_cfg, loss_name: str, loss_kwargs: tuple, optimizer, *, epochs: int,
                     average: bool, vocab_chunk: int = 0, forward_rows: int = 0):
    """(`update(state, batch, ref_c, ref_r) -> (state, metrics)`: `epochs` optimizer steps,
    `reference(ref_params, batch) -> (ref_c, ref_r)`: the reference's sequence log-probs in
    chunks of `forward_rows` pairs). The update's loss is a mean over the batch's valid
    pairs and runs on the whole batch of pairs (not micro-batched)."""
    fn = losses.preference_get(loss_name)
    kw = dict(loss_kwargs)

    def seq_logp(p, b, which):
        tok, mask = getattr(b, f"{which}_tokens"), getattr(b, f"{which}_mask")
        lp = models.completion_logprobs(p, model_cfg, b.prompt_tokens, b.prompt_mask, tok, mask,
                                        vocab_chunk=vocab_chunk or None)
        s = jnp.sum(lp, axis=1)
        return s / jnp.maximum(jnp.sum(mask, axis=1), 1) if average else s

    def loss_fn(params, b, ref_c, ref_r):
        loss, met = fn(seq_logp(params, b, "chosen"), seq_logp(params, b, "rejected"), ref_c, ref_r,
                       valid=b.valid, **kw)
        return loss, met

    def update(state: TrainState, b, ref_c, ref_r):
        def one(state, _):
            (loss, met), g = jax.value_and_grad(      # trainable params only (LoRA: the adapters)
                lambda tr: loss_fn(lora.combine(state.params, tr), b, ref_c, ref_r), has_aux=True)(
                lora.trainable(state.params))
            met = dict(met, loss=loss, grad_norm=optax.global_norm(g))
            return apply_if_finite(state, g, optimizer, jnp.isfinite(loss) & jnp.isfinite(met["grad_norm"]), met)
        state, mets = jax.lax.scan(one, state, None, length=epochs)
        return state, reduce_metrics(mets)

    def reference(ref_params, b):
        def one(*leaves):
            bb = jax.tree.unflatten(treedef, leaves)
            return seq_logp(ref_params, bb, "chosen"), seq_logp(ref_params, bb, "rejected")
        leaves, treedef = jax.tree.flatten(b)
        return map_rows(one, forward_rows, *leaves)

    return update, reference
