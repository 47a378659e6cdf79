"""The policy update: epochs x minibatches x micro-batches under one `jit`.

    update(state, batch) -> (state, metrics)

For each epoch the batch's groups are shuffled (whole groups stay together: group
losses such as DisCO need them), split into `minibatches` (one optimizer step each),
and each minibatch into `micro_batches` whose gradients are accumulated (a `lax.scan`:
one micro-batch's activations live at a time). Micro-batches are strided row chunks
(`rlx.train.microbatch`): of whole groups for group losses, of any rows for token-level
losses (those with an aggregation denominator), so a micro-batch may be smaller than a
group. Loss per micro-batch m (logp from the trainer forward at the policy temperature T,
log softmax(logits / T) — `rl.policy_temperature`, by default the sampler's — and
everything else data; the entropy H is pi_T's too):

    policy   rlx.losses.<loss>(logp, old_logp, adv, mask, agg=..., **loss_kwargs)
    + kl_coef * aggregate(kl(logp, ref_logp, kl_kind), mask, kl_agg)   (kl_placement="loss")
    - entropy_coef * aggregate(H, mask, agg)

`kl_agg` (`rl.kl_agg`, default `rl.agg`) is the KL term's own aggregation: SPO's trainer
adds `kl_coef * (k3 * mask).sum(1).mean()` (seq-mean-token-sum: about T times a
token-mean) to a token-mean policy loss. Its seq-mean denominators count every row with
a completion token, also rows whose loss mask is empty (the official `.mean()` over the
micro-batch's rows; the policy's seq-mean counts rows with a loss token).

Advantage whitening in the update (`rl.whiten_scope`, SPO estimators): "batch" leaves
the advantages as the estimator made them (whitened over the whole batch); "minibatch"
and "micro_batch" whiten them here over the loss-mask tokens of each optimizer minibatch
or each micro-batch (all devices' rows: the sums are global), A' = (A - mean) *
rsqrt(var + 1e-8), unbiased var, 0 off the mask — SPO's trainer whitens each training
micro-step (`masked_whiten(..., distributed=True, unbiased_variance=True)`).

Exact aggregation with accumulation: the aggregation denominators depend on masks only,
so the minibatch's global denominator D = sum_m den_m is computed first and every
micro-batch divides its numerator by D (`aggregate(..., denominator=D)`); the summed
gradients then equal the full-minibatch gradient exactly. Group losses (no `agg`
denominator: DisCO, DRPO, TRPA) average over prompts, and each micro-batch holds the
same number of whole groups, so their micro-batch losses are averaged with equal
weights — also exact. Under data parallelism the sums inside `jit` are global (XLA
reduces across devices before dividing). Logged metrics are micro-batch averages,
then averages over minibatches and epochs; `grad_norm` is the accumulated gradient's
global norm before clipping. An update whose loss or gradient is not finite is skipped
(params and optimizer state unchanged; `apply_if_finite`) and counted in
`update/skipped` — the engine stops a run after `train.max_nonfinite_steps` such steps
in a row.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import optax

from rlx import losses, models, ops
from rlx.models import lora
from rlx.train.config import policy_temperature
from rlx.train.microbatch import map_rows, split_rows
from rlx.train.state import TrainState
from rlx.types import Batch

# Per-row extras a loss may ask for by parameter name, and where they come from.
_EXTRAS = ("rewards", "valid", "levels", "ref_logp")


@dataclasses.dataclass(frozen=True)
class UpdateSpec:
    """Static (hashable) description of the update; built from the config's `rl`."""
    loss: str = "ppo_clip"
    loss_kwargs: tuple[tuple[str, Any], ...] = ()
    agg: str = "token-mean"
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    kl_in_loss: bool = True
    entropy_coef: float = 0.0
    group_size: int = 1
    epochs: int = 1
    minibatches: int = 1
    micro_batches: int = 1
    vocab_chunk: int = 0          # -1: auto by vocabulary size (rlx.models.resolve_vocab_chunk)
    max_len: int | None = None
    temperature: float = 1.0      # the trained policy pi_T = softmax(logits / T) (rl.policy_temperature)
    kl_agg: str = ""              # the KL term's aggregation; "" = agg (rl.kl_agg)
    whiten_scope: str = "batch"   # batch (estimator) | minibatch | micro_batch (rl.whiten_scope)

    @property
    def kl_mode(self) -> str:
        return self.kl_agg or self.agg

    @classmethod
    def from_config(cls, c) -> UpdateSpec:
        r = c.rl
        return cls(loss=r.loss, loss_kwargs=tuple(sorted(dict(r.loss_kwargs).items())), agg=r.agg,
                   kl_coef=float(r.kl_coef), kl_kind=r.kl_kind, kl_in_loss=r.kl_placement == "loss",
                   entropy_coef=float(r.entropy_coef), group_size=int(r.group_size),
                   epochs=int(r.epochs), minibatches=int(r.minibatches),
                   micro_batches=int(r.micro_batches), vocab_chunk=int(c.model.vocab_chunk),
                   max_len=int(c.sampler.max_new_tokens), temperature=policy_temperature(c),
                   kl_agg=str(r.get("kl_agg", "")), whiten_scope=str(r.get("whiten_scope", "batch")))


def _loss_inputs(spec: UpdateSpec):
    fn = losses.get(spec.loss)
    params = inspect.signature(fn).parameters
    return fn, params, "agg_denominator" in params


def micro_loss(params, model_cfg, spec: UpdateSpec, mb: Batch, den_total, weight, kl_den_total=None):
    """Loss of one micro-batch, already scaled for accumulation; (loss, metrics).
    `den_total` / `kl_den_total`: the minibatch's global denominators of `agg` and of
    the KL's aggregation (`kl_denominator`; None = this micro-batch's own)."""
    fn, sig, agg_based = _loss_inputs(spec)
    want_entropy = spec.entropy_coef != 0.0
    logp, entropy = models.completion_logprobs(
        params, model_cfg, mb.prompt_tokens, mb.prompt_mask, mb.completion_tokens, mb.completion_mask,
        temperature=spec.temperature, vocab_chunk=spec.vocab_chunk or None, with_entropy=True)
    mask = loss_mask_of(mb)
    kw = dict(spec.loss_kwargs)
    if "agg" in sig:
        kw["agg"] = spec.agg
    if "group_size" in sig:
        kw["group_size"] = spec.group_size
    if "max_len" in sig and spec.agg == "seq-mean-token-sum-norm":
        kw.setdefault("max_len", spec.max_len)
    for name in _EXTRAS:
        if name in sig:
            value = mb.ref_logprobs if name == "ref_logp" else getattr(mb, name)
            if value is None:
                raise ValueError(f"loss {spec.loss!r} needs {name!r}, which the batch does not carry")
            kw[name] = value
    if agg_based:
        kw["agg_denominator"] = den_total
    loss, metrics = fn(logp, mb.old_logprobs, mb.advantages, mask, **kw)
    if not agg_based:
        loss = loss * weight
    metrics = dict(metrics)
    metrics["policy_loss"] = loss

    def agg(x):
        return losses.aggregate(x, mask, spec.agg, max_len=spec.max_len, denominator=den_total)

    if spec.kl_coef and spec.kl_in_loss:
        if mb.ref_logprobs is None:
            raise ValueError("rl.kl_coef > 0 with kl_placement='loss' needs ref_logprobs in the batch")
        kl_den = kl_denominator(mb, spec) if kl_den_total is None else kl_den_total
        kl_term = losses.aggregate(losses.kl(logp, mb.ref_logprobs, spec.kl_kind), mask, spec.kl_mode,
                                   max_len=spec.max_len, denominator=kl_den)
        loss = loss + spec.kl_coef * kl_term
        metrics["kl"] = kl_term
    ent_term = agg(jax.lax.stop_gradient(entropy) if not want_entropy else entropy)
    if want_entropy:
        loss = loss - spec.entropy_coef * ent_term
    metrics["entropy"] = ent_term
    metrics["loss"] = loss
    # Metrics of agg-based pieces are already fractions of the global total; the
    # others are per-micro-batch means, averaged with equal weights.
    scaled = {k: (v if k in ("loss", "policy_loss", "kl", "entropy") else v * weight)
              for k, v in metrics.items()}
    return loss, jax.tree.map(jax.lax.stop_gradient, scaled)


def loss_mask_of(b: Batch):
    """The tokens the loss counts: `loss_mask` when given (a subset), else the completion."""
    return b.completion_mask if b.loss_mask is None else b.loss_mask & b.completion_mask


def _denominator(mask_BT, spec: UpdateSpec, mode: str | None = None):
    return losses.aggregate_parts(jnp.zeros(mask_BT.shape, jnp.float32), mask_BT, mode or spec.agg,
                                  spec.max_len)[1]


def kl_denominator(b: Batch, spec: UpdateSpec):
    """Denominator of the KL term over the rows of `b`: of `spec.kl_mode` over the loss
    mask, except that the seq-mean modes count every row with a completion token."""
    mode = spec.kl_mode
    if mode in ("seq-mean-token-sum", "seq-mean-token-mean"):
        return _denominator(b.completion_mask, spec, mode)
    return _denominator(loss_mask_of(b), spec, mode)


def whiten_advantages(mb: Batch, scope: str) -> Batch:
    """`mb` (leaves [M, rows, ...]) with its advantages whitened over the loss-mask
    tokens of the whole minibatch ("minibatch") or of each micro-batch ("micro_batch");
    unchanged for "batch" (see the module docstring)."""
    if scope == "batch":
        return mb
    if scope not in ("minibatch", "micro_batch"):
        raise ValueError(f"rl.whiten_scope must be batch, minibatch or micro_batch, got {scope!r}")
    axis = None if scope == "minibatch" else tuple(range(1, mb.advantages.ndim))
    adv = ops.masked_whiten(mb.advantages, loss_mask_of(mb), ddof=1, eps=1e-8, axis=axis)
    return mb.replace(advantages=adv.astype(mb.advantages.dtype))


def micro_batch_unit(spec: UpdateSpec) -> int:
    """Rows a micro-batch keeps together: 1 for token-level losses (exact with any split),
    the group for group losses."""
    return 1 if _loss_inputs(spec)[2] else spec.group_size


def make_update(model_cfg, spec: UpdateSpec, optimizer: optax.GradientTransformation):
    """Returns the un-jitted `update(state, batch) -> (state, metrics)`; the caller
    jits it with shardings and donation (see `rlx.train.engine`)."""
    G, E, K, M = spec.group_size, spec.epochs, spec.minibatches, spec.micro_batches

    def one_minibatch(state: TrainState, mb: Batch):
        # mb leaves are [M, rows, ...]
        mb = whiten_advantages(mb, spec.whiten_scope)
        dens = jax.vmap(lambda m: _denominator(loss_mask_of(m), spec))(mb)
        den_total = jnp.sum(dens)
        kl_den_total = jnp.sum(jax.vmap(lambda m: kl_denominator(m, spec))(mb))

        # Gradients w.r.t. the trainable params only (a LoRA policy's adapters): the
        # frozen base is a constant of the loss, so no gradient of it is ever computed.
        trainable = lora.trainable(state.params)

        def loss_of(tr, x, den, w):
            return micro_loss(lora.combine(state.params, tr), model_cfg, spec, x, den, w, kl_den_total)

        def micro(carry, x):
            g_acc, m_acc = carry
            (_, met), g = jax.value_and_grad(loss_of, has_aux=True)(trainable, x, den_total, 1.0 / M)
            return (jax.tree.map(jnp.add, g_acc, g), jax.tree.map(jnp.add, m_acc, met)), None

        first = jax.tree.map(lambda a: a[0], mb)
        met_shape = jax.eval_shape(lambda p: micro_loss(p, model_cfg, spec, first, den_total, 1.0, kl_den_total)[1],
                                   state.params)
        zeros_m = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), met_shape)
        zeros_g = jax.tree.map(jnp.zeros_like, trainable)
        (grads, mets), _ = jax.lax.scan(micro, (zeros_g, zeros_m), mb)
        mets = dict(mets)
        mets["grad_norm"] = optax.global_norm(grads)
        return apply_if_finite(state, grads, optimizer, jnp.isfinite(mets["loss"]) & jnp.isfinite(mets["grad_norm"]),
                               mets)

    def update(state: TrainState, batch: Batch):
        B = batch.completion_tokens.shape[0]
        unit = micro_batch_unit(spec)
        if B % (G * K) or (B // K) % (M * unit):
            what = "rows" if unit == 1 else f"whole groups of {G}"
            raise ValueError(f"batch of {B} rows cannot be split into {K} minibatches of whole groups of {G} "
                             f"x {M} micro-batches of {what}")
        P = B // G

        def epoch(state, _):
            b = batch
            if K > 1 or E > 1:
                state, (key,) = state.split_rng(1)
                gperm = jax.random.permutation(key, P)
                rows = (gperm[:, None] * G + jnp.arange(G)[None, :]).reshape(B)
                b = jax.tree.map(lambda x: jnp.take(x, rows, axis=0), batch)
            split = jax.tree.map(lambda x: jax.vmap(lambda y: split_rows(y, M, unit))(
                x.reshape((K, B // K) + x.shape[1:])), b)
            return jax.lax.scan(one_minibatch, state, split)

        state, mets = jax.lax.scan(epoch, state, None, length=E)
        return state, reduce_metrics(mets)

    return update


def apply_if_finite(state: TrainState, grads, optimizer, ok, mets: dict):
    """One optimizer step if `ok` (loss and gradients finite), else the state unchanged
    (params, optimizer state and step counter) — a non-finite batch never reaches the
    weights. `grads` are of the trainable params (`rlx.models.lora.trainable`). Adds
    `update/skipped` (1.0 when skipped) to `mets`."""
    trainable = lora.trainable(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, trainable)
    new = optax.apply_updates(trainable, updates)

    def keep(new, old):
        return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)

    mets = dict(mets, **{"update/skipped": (~ok).astype(jnp.float32)})
    return state.replace(step=state.step + ok.astype(state.step.dtype),
                         params=lora.combine(state.params, keep(new, trainable)),
                         opt_state=keep(opt_state, state.opt_state)), mets


def reduce_metrics(mets: dict) -> dict:
    """Means over the updates of a step, except `update/skipped`: their number."""
    out = jax.tree.map(jnp.mean, mets)
    if "update/skipped" in mets:
        out["update/skipped"] = jnp.sum(mets["update/skipped"])
    return out


def make_logprobs_fn(model_cfg, vocab_chunk: int = 0, micro_batch: int = 0, *, temperature: float = 1.0):
    """`logprobs(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask) -> logp_BT`
    (reference / recomputed old log-probs), in chunks of `micro_batch` rows inside one
    program (`lax.map`; 0 = the whole batch at once — what the memory of a large batch
    cannot afford). Equal to the whole-batch forward: each row's log-probs depend on
    that row only. `vocab_chunk`: 0 = full logits, -1 = auto by vocabulary size."""
    def one(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
        return models.completion_logprobs(params, model_cfg, prompt_tokens, prompt_mask,
                                          completion_tokens, completion_mask, temperature=temperature,
                                          vocab_chunk=vocab_chunk or None)

    def fn(params, prompt_tokens, prompt_mask, completion_tokens, completion_mask):
        return map_rows(lambda *a: one(params, *a), micro_batch, prompt_tokens, prompt_mask,
                        completion_tokens, completion_mask)
    return fn
