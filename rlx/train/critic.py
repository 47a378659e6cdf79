"""The value function (critic) for PPO with GAE: a transformer with a scalar head.

Paper: "Proximal Policy Optimization Algorithms" (Schulman et al. 2017) with GAE
("High-Dimensional Continuous Control Using Generalized Advantage Estimation"); the LLM
recipe of verl / OpenRLHF: a separate critic network, token-level rewards (the outcome
score on the last response token, minus the KL penalty when it is folded into the
reward), advantages and returns from GAE, a clipped value loss

    L_V = 0.5 * agg( max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2) )

(eps_v = `critic.value_clip`, 0.2 in verl), trained by its own optimizer on the same
epochs x minibatches schedule as the policy.

Critic params: {"trunk": transformer params (initialized from the policy), "head":
{"w": [D], "b": []} (zeros)}. V_t is the value of the state before completion token t:
the trunk's hidden state at column Lp - 1 + t projected by the head.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from rlx import losses, models
from rlx.train.microbatch import map_rows, split_rows


@flax.struct.dataclass
class CriticState:
    params: dict
    opt_state: optax.OptState


def init_critic(policy_params, cfg, optimizer) -> CriticState:
    D = cfg.hidden_size
    params = {"trunk": jax.tree.map(jnp.array, policy_params),
              "head": {"w": jnp.zeros((D,), jnp.float32), "b": jnp.zeros((), jnp.float32)}}
    return CriticState(params, optimizer.init(params))


def values(params, cfg, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
    """float32 V [B, T] (0 where the completion mask is False)."""
    Lp, T = prompt_tokens.shape[1], completion_tokens.shape[1]
    tokens = jnp.concatenate([prompt_tokens, completion_tokens], axis=1)
    mask = jnp.concatenate([prompt_mask.astype(bool), completion_mask.astype(bool)], axis=1)
    h = models.hidden_states(params["trunk"], cfg, tokens, attention_mask_BL=mask)[:, Lp - 1:Lp - 1 + T]
    v = jnp.einsum("btd,d->bt", h.astype(jnp.float32), params["head"]["w"]) + params["head"]["b"]
    return jnp.where(completion_mask, v, 0.0)


def make_values_fn(cfg, rows: int = 0):
    """`values(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask)` in
    chunks of `rows` rows inside one program (0 = the whole batch)."""
    def fn(params, *batch):
        return map_rows(lambda *a: values(params, cfg, *a), rows, *batch)
    return fn


def value_loss(params, cfg, b, returns, old_values, *, clip: float, agg: str, denominator=None):
    v = values(params, cfg, b.prompt_tokens, b.prompt_mask, b.completion_tokens, b.completion_mask)
    clipped = old_values + jnp.clip(v - old_values, -clip, clip)
    per_tok = 0.5 * jnp.maximum(jnp.square(v - returns), jnp.square(clipped - returns))
    mask = b.completion_mask
    loss = losses.aggregate(per_tok, mask, agg, denominator=denominator)
    frac = losses.aggregate((jnp.abs(v - old_values) > clip).astype(jnp.float32), mask, "token-mean")
    return loss, {"critic/loss": loss, "critic/clip_frac": frac,
                  "critic/value_mean": losses.aggregate(v, mask, "token-mean")}


def make_critic_update(cfg, optimizer, *, clip: float, agg: str, epochs: int, minibatches: int,
                       group_size: int, micro_batches: int = 1):
    """`update(cstate, key, batch, returns, old_values) -> (cstate, metrics)`: epochs x
    minibatches (whole groups) x `micro_batches` (strided row chunks; gradients summed
    with the minibatch's global aggregation denominator, so exact for any split)."""
    K, G, M = minibatches, group_size, micro_batches

    def update(cs: CriticState, key, b, returns, old_values):
        B = returns.shape[0]
        P = B // G
        data = (b, returns, old_values)

        def epoch(cs, k):
            d = data
            if K > 1 or epochs > 1:
                rows = (jax.random.permutation(k, P)[:, None] * G + jnp.arange(G)[None, :]).reshape(B)
                d = jax.tree.map(lambda x: jnp.take(x, rows, axis=0), data)
            split = jax.tree.map(lambda x: x.reshape((K, B // K) + x.shape[1:]), d)

            def mb(cs, x):
                micro = jax.tree.map(lambda y: split_rows(y, M), x)
                den = jnp.sum(jax.vmap(lambda b: losses.aggregate_parts(
                    jnp.zeros(b.completion_mask.shape, jnp.float32), b.completion_mask, agg)[1])(micro[0]))

                def acc(carry, xm):
                    g_acc, m_acc = carry
                    (_, met), g = jax.value_and_grad(value_loss, has_aux=True)(
                        cs.params, cfg, xm[0], xm[1], xm[2], clip=clip, agg=agg, denominator=den)
                    met = {k: v if k == "critic/loss" else v / M for k, v in met.items()}
                    return (jax.tree.map(jnp.add, g_acc, g), jax.tree.map(jnp.add, m_acc, met)), None

                zeros_m = {k: jnp.zeros((), jnp.float32) for k in ("critic/loss", "critic/clip_frac",
                                                                  "critic/value_mean")}
                (g, met), _ = jax.lax.scan(acc, (jax.tree.map(jnp.zeros_like, cs.params), zeros_m), micro)
                u, opt = optimizer.update(g, cs.opt_state, cs.params)
                return CriticState(optax.apply_updates(cs.params, u), opt), met

            return jax.lax.scan(mb, cs, split)

        cs, mets = jax.lax.scan(epoch, cs, jax.random.split(key, epochs))
        return cs, jax.tree.map(jnp.mean, mets)

    return update
