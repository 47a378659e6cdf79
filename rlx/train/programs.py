"""The compiled programs of a run, built from its config alone (no weights, no data).

The engine runs these; `python -m rlx.plan` compiles the same objects ahead of time for
a TPU topology on abstract inputs. One place builds them so the plan measures exactly
what a run executes:

  update        rlx.train.update.make_update (epochs x minibatches x micro-batches),
                in/out state shardings, the state donated
  logprobs      old / reference log-probs: make_logprobs_fn in chunks of
                `train.forward_rows` rows, at the trained policy's temperature
                (`rl.policy_temperature`)
  logprobs_T    the same at the sampling temperature (SPO cutpoints); the same
                program as `logprobs` when the two temperatures agree (the default)
  values        critic values in row chunks; critic_update (gae / egae only)
  sft_step      one SFT step (micro-batches of `train.forward_rows`) — when sft.steps > 0
  pref_update / pref_ref   preference losses
The sampler's programs are `rlx.sampling`'s own jitted functions (static configs).

Shardings: params by the logical-axis rules; optimizer / train / critic state leaves
shaped like a param take that param's sharding (matched by key path), everything else
(step counters, RNG) is replicated.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rlx import models, parallel
from rlx.models import lora
from rlx.train import critic as tcritic
from rlx.train import preference as tpref
from rlx.train.estimate import CRITIC_ESTIMATORS
from rlx.train.microbatch import num_chunks, split_rows
from rlx.train.optim import make_optimizer
from rlx.train.state import TrainState
from rlx.train.update import UpdateSpec, make_logprobs_fn, make_update


def abstract_params(model_cfg) -> dict:
    """ShapeDtypeStructs of the params (`init_params` traced, nothing allocated); of a
    LoRA config, the policy's: frozen (maybe quantized) base + adapters."""
    return jax.eval_shape(lambda: lora.attach(models.init_params(model_cfg, jax.random.key(0)), model_cfg,
                                              jax.random.key(1)))


def param_shardings(model_cfg, mesh, rules, params=None):
    params = abstract_params(model_cfg) if params is None else params
    return parallel.tree_shardings(params, models.param_logical_axes(model_cfg), mesh, rules)


def _path_keys(path) -> tuple:
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def shardings_like_params(tree, params, param_sh, mesh):
    """Shardings for `tree` (arrays or ShapeDtypeStructs): a leaf whose key path ends with
    a param's path and has its shape gets that param's sharding; the rest is replicated.
    The trainable part of a LoRA policy (`lora.trainable`) matches by its own paths too
    (optimizer state over the adapters alone)."""
    by_path = {}
    pairs = [(params, param_sh)]
    if lora.has_adapters(params):
        pairs.append((lora.trainable(params), lora.trainable(param_sh)))
    for tree_p, tree_sh in pairs:
        for (path, p), sh in zip(jax.tree_util.tree_flatten_with_path(tree_p)[0], jax.tree.leaves(tree_sh)):
            by_path.setdefault(_path_keys(path), (tuple(p.shape), sh))
    rep = parallel.replicated(mesh)

    def one(path, x):
        keys = _path_keys(path)
        for i in range(len(keys)):
            hit = by_path.get(keys[i:])
            if hit is not None and hit[0] == tuple(x.shape):
                return hit[1]
        return rep

    return jax.tree_util.tree_map_with_path(one, tree)


def total_optimizer_steps(c) -> int:
    return max(1, c.train.steps * c.rl.epochs * c.rl.minibatches)


def ref_dtype(model_cfg):
    """The reference policy is stored in the compute dtype: the forward casts every weight
    to it before use, so its log-probs equal those of the full-precision copy."""
    return model_cfg.dtype


def reference_params(params, model_cfg):
    """The reference policy of `params` (the policy at the start of RL): of a LoRA policy,
    its base with the adapters switched off — the same arrays, no copy; otherwise a copy
    in the compute dtype (`ref_dtype`)."""
    if lora.enabled(model_cfg):
        return lora.base_of(params)
    return cast_params(params, ref_dtype(model_cfg))


def critic_trunk(params, model_cfg):
    """The critic's initial trunk from the policy's params: the policy itself, or for a
    LoRA policy its base, dequantized, in the param dtype (the critic is a full model)."""
    if lora.enabled(model_cfg):
        return lora.merged(lora.base_of(params), model_cfg, model_cfg.param_dtype)
    return params


def cast_params(params, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), params)


@dataclasses.dataclass
class Programs:
    """Every jitted program of a run (see the module docstring). Build with `build`."""
    config: object
    model_cfg: object
    mesh: object
    rules: tuple
    spec: UpdateSpec
    optimizer: optax.GradientTransformation
    param_sh: object
    state_sh: object
    base_cfg: object            # the base model alone (== model_cfg without LoRA): SFT, critic
    base_param_sh: object
    forward_rows: int
    update: object
    logprobs: object
    logprobs_T: object = None
    values: object = None
    critic_update: object = None
    critic_optimizer: object = None
    critic_sh: object = None
    sft_step: object = None
    sft_optimizer: object = None
    pref_update: object = None
    pref_ref: object = None
    init_state: object = None
    attach: object = None

    @classmethod
    def build(cls, c, model_cfg, mesh, rules) -> Programs:
        params = abstract_params(model_cfg)
        param_sh = param_shardings(model_cfg, mesh, rules, params)
        spec = UpdateSpec.from_config(c)
        optimizer = make_optimizer(c.optimizer, total_optimizer_steps(c))
        state = jax.eval_shape(lambda p: TrainState.create(p, optimizer, jax.random.key(0)), params)
        state_sh = shardings_like_params(state, params, param_sh, mesh)
        rows = int(c.train.forward_rows)
        vc = int(c.model.vocab_chunk)
        upd_spec = spec
        if c.rl.estimator == "spo_tree":
            from rlx import sampling
            lens = sampling.segment_lengths(c.sampler.max_new_tokens, len(c.spo.branching), c.spo.segment_len)
            upd_spec = dataclasses.replace(spec, group_size=1, max_len=max(lens))
        base_cfg = lora.base_config(model_cfg)
        base_abs = abstract_params(base_cfg)
        base_sh = param_shardings(base_cfg, mesh, rules, base_abs)
        p = cls(config=c, model_cfg=model_cfg, mesh=mesh, rules=tuple(rules), spec=upd_spec, optimizer=optimizer,
                param_sh=param_sh, state_sh=state_sh, base_cfg=base_cfg, base_param_sh=base_sh, forward_rows=rows,
                update=jax.jit(make_update(model_cfg, upd_spec, optimizer), out_shardings=(state_sh, None),
                               donate_argnums=(0,)),
                logprobs=jax.jit(make_logprobs_fn(model_cfg, vc, rows, temperature=spec.temperature)))
        p.init_state = jax.jit(lambda prm, key: TrainState.create(prm, optimizer, key), out_shardings=state_sh)
        if lora.enabled(model_cfg):      # base params -> LoRA policy (frozen base + fresh adapters)
            p.attach = jax.jit(lambda prm, key: lora.attach(prm, model_cfg, key), out_shardings=param_sh,
                               donate_argnums=(0,))     # the full-precision base is not kept beside it
        if c.rl.estimator in ("spo_chain", "spo_tree"):
            t_sample = float(c.sampler.temperature) or 1.0
            p.logprobs_T = p.logprobs if t_sample == spec.temperature else jax.jit(
                make_logprobs_fn(model_cfg, vc, rows, temperature=t_sample))
        if c.rl.estimator in CRITIC_ESTIMATORS and not tpref.is_preference(c.rl.loss):
            copt = optax.adam(c.critic.lr)
            if c.critic.max_grad_norm:
                copt = optax.chain(optax.clip_by_global_norm(c.critic.max_grad_norm), copt)
            cstate = jax.eval_shape(lambda prm: tcritic.init_critic(prm, base_cfg, copt), base_abs)
            p.critic_optimizer = copt
            p.critic_sh = shardings_like_params(cstate, base_abs, base_sh, mesh)
            p.values = jax.jit(tcritic.make_values_fn(base_cfg, rows))
            p.critic_update = jax.jit(tcritic.make_critic_update(
                base_cfg, copt, clip=c.critic.value_clip, agg=c.rl.agg, epochs=c.rl.epochs,
                minibatches=c.rl.minibatches, group_size=c.rl.group_size, micro_batches=c.rl.micro_batches),
                out_shardings=(p.critic_sh, None), donate_argnums=(0,))
        if c.sft.steps:
            p.sft_optimizer = optax.adam(c.sft.lr)
            opt_sh = shardings_like_params(jax.eval_shape(p.sft_optimizer.init, base_abs), base_abs, base_sh, mesh)
            p.sft_step = jax.jit(make_sft_step(base_cfg, p.sft_optimizer, rows, vc),      # SFT: the base model
                                 out_shardings=(base_sh, opt_sh, None), donate_argnums=(0, 1))
        if tpref.is_preference(c.rl.loss):
            upd, ref = tpref.make_pref_update(
                model_cfg, c.rl.loss, tuple(sorted(dict(c.rl.loss_kwargs).items())), optimizer,
                epochs=c.rl.epochs, average=c.pref.average_logps, vocab_chunk=vc, forward_rows=rows)
            p.pref_update = jax.jit(upd, out_shardings=(state_sh, None), donate_argnums=(0,))
            p.pref_ref = jax.jit(ref)
        return p

    def sharding(self):
        return parallel.use_rules(self.mesh, self.rules)


def make_sft_step(model_cfg, optimizer, rows: int, vocab_chunk: int = 0):
    """`step(params, opt_state, prompt_tokens, prompt_mask, completion_tokens, completion_mask)
    -> (params, opt_state, loss)`: token-mean NLL of the completions, gradients summed
    over strided micro-batches of `rows` rows with the batch's total token count as the
    denominator (so exactly the whole-batch gradient)."""
    def nll_sum(p, pt, pm, ct, cm):
        logp = models.completion_logprobs(p, model_cfg, pt, pm, ct, cm, vocab_chunk=vocab_chunk or None)
        return -jnp.sum(jnp.where(cm, logp, 0.0))

    def step(params, opt_state, pt, pm, ct, cm):
        den = jnp.maximum(jnp.sum(cm), 1).astype(jnp.float32)
        n = num_chunks(pt.shape[0], rows)
        chunks = [split_rows(x, n) for x in (pt, pm, ct, cm)]

        def acc(carry, xs):
            g_acc, l_acc = carry
            loss, g = jax.value_and_grad(lambda p: nll_sum(p, *xs) / den)(params)
            return (jax.tree.map(jnp.add, g_acc, g), l_acc + loss), None

        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.result_type(x.dtype, jnp.float32)), params)
        (grads, loss), _ = jax.lax.scan(acc, (zeros, jnp.zeros((), jnp.float32)), chunks)
        grads = jax.tree.map(lambda g, x: g.astype(x.dtype), grads, params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step
