"""SPO wired as its official trainer (AIFrameResearch/SPO) wires it — issue 19 items 2-3.

Engine-level: a real `Engine` on `configs/spo_chain_cpu.py` (untrained quickstart model),
with the task reward replaced by a constant so that the expected values follow by hand.
"""


import jax
import numpy as np
import pytest
from helpers.engine_configs import one_step_config, sgd_update

from rlx.rewards.checkers import RewardStats
from rlx.train import rollout
from rlx.train.config import apply_overrides, validate
from rlx.train.engine import Engine
from rlx.train.kinds import spo_chain
from rlx.train.kinds.base import StepInputs
from rlx.types import FinishReason


def spo_config(run_dir, *overrides):
    return one_step_config("spo_chain_cpu", run_dir, "rl.prompts_per_step=4", "spo.mc_samples=2", *overrides)


def _every_completion_scores(value):
    def score(task, texts, examples, **kw):
        return np.full(len(texts), value, np.float32), None, RewardStats(n=len(texts))
    return score


def _collect(e, key=3):
    with e.sharding():
        return e.kind.collect(StepInputs(params=e.state.params, reference=e.reference(), critic=None,
                                         key=jax.random.key(key), step=0, curriculum=None))


@pytest.mark.parametrize("mode", ["zero", "task"])
def test_truncated_response_scores_zero_before_segment_advantages(tmp_path, monkeypatch, mode):
    # Every completion's task reward is 1. The untrained model with a budget of 5 tokens
    # leaves some responses cut by the budget and ends others with a stop token. Official
    # episode generator: a response whose finish reason is "length" gets the unfinished
    # penalty 0 as its reward before the chain advantages; "task" keeps the raw 1.
    monkeypatch.setattr(rollout.rw, "score", _every_completion_scores(1.0))
    seen = {}
    real = spo_chain.chain_advantages

    def spy(ctx, params, flat, examples_B, rewards_B, dev, old_T):
        seen["finish"], seen["rewards"] = flat["finish_reason"].copy(), np.asarray(rewards_B).copy()
        return real(ctx, params, flat, examples_B, rewards_B, dev, old_T)

    monkeypatch.setattr(spo_chain, "chain_advantages", spy)
    e = Engine(spo_config(tmp_path / mode, "sampler.max_new_tokens=5", f"spo.truncated_reward={mode}"))
    try:
        r = _collect(e)
    finally:
        e.close()
    cut = seen["finish"] == FinishReason.LENGTH
    assert 0 < cut.sum() < cut.size, "the check needs both truncated and finished responses"
    want = np.where(cut, 0.0, 1.0) if mode == "zero" else np.ones(cut.size)
    np.testing.assert_array_equal(seen["rewards"], want)
    assert r.metrics["spo/truncated"] == pytest.approx(cut.mean())
    np.testing.assert_array_equal(np.asarray(r.batch.rewards), 1.0)      # the logged task reward is unchanged


# --------------------------------------------------------------------------- the update
# SPO's trainer (ppo_trainer.py): each training micro-step whitens the advantages over
# `mask & exp(old_logp) < 0.9` (`masked_whiten(..., distributed=True, unbiased_variance=
# True)`: (A - mean) * rsqrt(var + 1e-8)) and adds `kl_coef * (k3 * mask).sum(1).mean()`.
# The references below are numpy, written from those lines.

def _np_whiten(a, m):
    mean = a[m].mean()
    var = ((a[m] - mean) ** 2).sum() / (m.sum() - 1)
    return np.where(m, (a - mean) / np.sqrt(var + 1e-8), 0.0).astype(np.float32)


def _np_k3(logp, ref):
    d = logp - ref                                   # e^{-d} + d - 1 (Schulman's k3)
    return np.exp(-d) + d - 1


@pytest.fixture(scope="module")
def tiny():
    from rlx import models
    cfg = models.tiny(40, hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64)
    return cfg, models.init_params(cfg, jax.random.key(0))


def _rows(B=8, Lp=4, T=6, seed=0):
    rng = np.random.default_rng(seed)
    cm = np.arange(T)[None, :] < rng.integers(2, T + 1, size=(B, 1))
    lm = cm & (rng.random((B, T)) < 0.6)
    lm[:, 0] |= cm[:, 0]
    lm[5] = False                                   # a row with no loss token (all p >= 0.9)
    return dict(prompt_tokens=rng.integers(3, 40, (B, Lp)).astype(np.int32), prompt_mask=np.ones((B, Lp), bool),
                completion_tokens=rng.integers(3, 40, (B, T)).astype(np.int32), completion_mask=cm,
                loss_mask=lm, advantages=(rng.normal(size=(B, T)) * 2 + 1).astype(np.float32),
                old_logprobs=(-rng.random((B, T)) - 2.0).astype(np.float32),
                ref_logprobs=(-rng.random((B, T)) - 2.0).astype(np.float32),
                rewards=rng.random(B).astype(np.float32), valid=np.ones(B, bool))


@pytest.mark.parametrize("scope", ["micro_batch", "minibatch"])
def test_update_whitens_each_micro_batch_or_minibatch(tiny, scope):
    # One minibatch of 8 rows, 2 micro-batches (strided: rows 0,2,4,6 and 1,3,5,7).
    # Whitening in the update == the same update fed advantages whitened beforehand in
    # numpy over the same rows; and differs from whitening over the other scope.
    from rlx.train.update import UpdateSpec
    cfg, params = tiny
    b = _rows()
    lm, a = b["loss_mask"], b["advantages"]
    per_micro = np.zeros_like(a)
    for j in range(2):
        per_micro[j::2] = _np_whiten(a[j::2], lm[j::2])
    whole = _np_whiten(a, lm)
    want, other = (per_micro, whole) if scope == "micro_batch" else (whole, per_micro)
    kw = dict(loss="ppo_clip", loss_kwargs=(("eps_high", 0.2), ("eps_low", 0.2)), agg="token-mean", micro_batches=2)
    got, m_got = sgd_update(cfg, params, UpdateSpec(whiten_scope=scope, **kw), b)
    ref, m_ref = sgd_update(cfg, params, UpdateSpec(**kw), dict(b, advantages=want))
    alt, _ = sgd_update(cfg, params, UpdateSpec(**kw), dict(b, advantages=other))
    for x, y in zip(jax.tree.leaves(got.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    assert max(float(np.abs(np.asarray(x) - np.asarray(z)).max())
               for x, z in zip(jax.tree.leaves(got.params), jax.tree.leaves(alt.params))) > 1e-4
    np.testing.assert_allclose(float(m_got["loss"]), float(m_ref["loss"]), atol=1e-6)


def test_kl_sum_over_tokens_mean_over_sequences(tiny):
    # kl_agg = seq-mean-token-sum beside a token-mean policy loss: the KL metric is
    # sum_t k3 * mask / B over all B rows with a completion, also the row whose loss mask
    # is empty (official `.sum(1).mean()`); micro-batching keeps it exact.
    from rlx import models
    from rlx.train.update import UpdateSpec
    cfg, params = tiny
    b = _rows()
    logp = np.asarray(models.completion_logprobs(params, cfg, b["prompt_tokens"], b["prompt_mask"],
                                                 b["completion_tokens"], b["completion_mask"]), np.float64)
    k3 = np.where(b["loss_mask"], _np_k3(logp, b["ref_logprobs"]), 0.0)
    want = k3.sum(1).mean()                          # all 8 rows: row 5 adds 0 and counts
    assert b["completion_mask"].any(1).all()
    kw = dict(loss="ppo_clip", loss_kwargs=(("eps_high", 0.2), ("eps_low", 0.2)), agg="token-mean", kl_coef=0.1)
    for micro in (1, 2, 4):
        _, met = sgd_update(cfg, params, UpdateSpec(kl_agg="seq-mean-token-sum", micro_batches=micro, **kw), b)
        np.testing.assert_allclose(float(met["kl"]), want, rtol=1e-5)
    _, met = sgd_update(cfg, params, UpdateSpec(**kw), b)                     # kl_agg "" = agg: token-mean
    np.testing.assert_allclose(float(met["kl"]), k3.sum() / b["loss_mask"].sum(), rtol=1e-5)


def test_spo_config_hands_raw_advantages_to_the_update_and_sums_the_kl(tmp_path, monkeypatch):
    # configs/spo_chain(_cpu).py: whitening in the update (micro_batch), so the rollout's
    # advantages are spo_chain's un-whitened ones; the update's KL is the hand-computed
    # sum over loss tokens, mean over rows of k3 (policy != reference: the reference
    # log-probs are shifted by a known amount before the update).
    from rlx import advantages
    c = spo_config(tmp_path / "run", "rl.epochs=1", "rl.minibatches=1", "rl.micro_batches=2")
    assert (c.rl.whiten_scope, c.rl.kl_agg, c.rl.kl_kind, c.rl.agg) == (
        "micro_batch", "seq-mean-token-sum", "k3", "token-mean")
    calls = []
    real = advantages.spo_chain

    def spy(*a, **kw):
        calls.append(kw.get("whiten"))
        out = real(*a, **kw)
        calls.append(np.asarray(real(*a, **dict(kw, whiten=False))[0]))
        return out

    monkeypatch.setattr(spo_chain.advantages, "spo_chain", spy)
    e = Engine(c)
    try:
        r = _collect(e)
        b = r.batch
        assert calls[0] is False
        np.testing.assert_array_equal(np.asarray(b.advantages), calls[1])
        lm = np.asarray(b.loss_mask) & np.asarray(b.completion_mask)
        assert lm.sum() > 10
        old = np.asarray(b.old_logprobs, np.float64)
        shift = np.random.default_rng(0).uniform(-0.5, 0.5, old.shape)
        b = b.replace(ref_logprobs=b.old_logprobs + shift.astype(np.float32))
        # before any step the trainer's log-probs are the old ones (pi_T of the same
        # params; the temperature test bounds their difference by 2e-4).
        k3 = np.where(lm, _np_k3(old, old + shift), 0.0)
        rows = np.asarray(b.completion_mask).any(1).sum()
        with e.sharding():
            _, met = e.programs.update(e.state, b)
        np.testing.assert_allclose(float(met["kl"]), k3.sum() / rows, rtol=2e-3)
        assert float(met["kl"]) > 3 * k3.sum() / lm.sum()        # far from the token-mean
    finally:
        e.close()


def test_whitening_outside_the_estimator_is_refused_for_other_estimators():
    from rlx.train.config import base_config
    c = base_config()
    apply_overrides(c, ["rl.whiten_scope=micro_batch"])        # estimator grpo
    with pytest.raises(Exception, match="rl.whiten_scope"):
        validate(c)
    apply_overrides(c, ["rl.whiten_scope=batch", "rl.kl_agg=seq-mean"])
    with pytest.raises(Exception, match="rl.kl_agg"):
        validate(c)
