"""The trained policy is the sampler's tempered distribution pi_T = softmax(logits / T)
(issue 19, item 1; verl's `compute_log_prob` and TRL divide the logits by the sampling
temperature before the log-softmax, and so does SPO's trainer). Expected values come
from a numpy log-softmax of the model's plain logits, written here."""

import jax
import numpy as np
import pytest

from rlx import models, sampling
from rlx.train.build import sampler_config
from rlx.train.config import apply_overrides, base_config, policy_temperature, validate
from rlx.train.kinds.base import StepInputs
from rlx.train.update import UpdateSpec


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _tempered_logp_and_entropy(params, cfg, b, T):
    """numpy log softmax(logits / T) of each completion token and the entropy of each
    predicted distribution, from the model's plain forward over prompt + completion."""
    pt, pm = np.asarray(b.prompt_tokens), np.asarray(b.prompt_mask)
    ct, cm = np.asarray(b.completion_tokens), np.asarray(b.completion_mask)
    Lp, Tc = pt.shape[1], ct.shape[1]
    mask = np.concatenate([pm, cm], 1)
    logits = np.asarray(models.forward(params, cfg, np.concatenate([pt, ct], 1), attention_mask_BL=mask),
                        np.float64)[:, Lp - 1:Lp - 1 + Tc]
    lsm = _np_log_softmax(logits / T)
    logp = np.take_along_axis(lsm, ct[..., None], -1)[..., 0]
    ent = -(np.exp(lsm) * lsm).sum(-1)
    return np.where(cm, logp, 0.0), np.where(cm, ent, 0.0), cm


@pytest.mark.parametrize("setting,want", [(0.0, 0.6), (1.0, 1.0), (0.8, 0.8)])
def test_config_states_the_trained_temperature(setting, want):
    c = base_config()
    apply_overrides(c, ["sampler.temperature=0.6", f"rl.policy_temperature={setting}"])
    assert policy_temperature(c) == want
    assert sampler_config(c).logprob_temperature == want       # the sampler's log-probs are pi_old's
    assert UpdateSpec.from_config(c).temperature == want       # the update's new log-probs
    assert sampler_config(c, greedy=True).temperature == 0.0   # greedy evaluation unaffected
    apply_overrides(c, ["sampler.temperature=0.0", "rl.policy_temperature=0.0"])
    assert policy_temperature(c) == 1.0                        # a greedy sampler: the plain model


def test_negative_policy_temperature_is_refused():
    c = base_config()
    apply_overrides(c, ["rl.policy_temperature=-0.5"])
    with pytest.raises(Exception, match="rl.policy_temperature"):
        validate(c)


def test_sampler_log_probs_at_the_policy_temperature():
    # pick(): the policy log-prob is the full distribution's at logprob_temperature, the
    # sampling log-prob the filtered one's (top-p 0.9 at temperature 0.6) — derived here.
    logits = jax.random.normal(jax.random.key(0), (4, 11)) * 3
    scfg = sampling.SamplerConfig(max_prompt_len=1, max_new_tokens=1, temperature=0.6, top_p=0.9,
                                  logprob_temperature=0.6)
    from rlx.sampling.sampler import pick
    tok, lp, slp = (np.asarray(x) for x in pick(scfg, logits, jax.random.key(1)))
    z = np.asarray(logits, np.float64) / 0.6
    full = _np_log_softmax(z)
    np.testing.assert_allclose(lp, full[np.arange(4), tok], atol=1e-5)
    keep = np.zeros_like(z, bool)                    # nucleus: smallest top set with mass >= 0.9
    for r in range(4):
        order = np.argsort(-z[r])
        cum = np.cumsum(np.exp(full[r, order]))
        keep[r, order[:np.searchsorted(cum, 0.9) + 1]] = True
    trunc = _np_log_softmax(np.where(keep, z, -np.inf))
    np.testing.assert_allclose(slp, trunc[np.arange(4), tok], atol=1e-5)
    assert keep[np.arange(4), tok].all()
    with pytest.raises(ValueError, match="logprob_temperature"):
        sampling.SamplerConfig(max_prompt_len=1, max_new_tokens=1, logprob_temperature=0.0)


def test_engine_trains_the_tempered_policy(tmp_path):
    # A run sampling at T = 0.6: the batch's old log-probs (the sampler's) and reference
    # log-probs (the trainer's forward of the initial policy) are log softmax(logits/0.6)
    # of the sampled tokens, and the update's entropy is pi_0.6's. On rlx before issue 19
    # both were at T = 1 (log softmax(logits)).
    from test_engine import small_config

    from rlx.train.engine import Engine
    c = small_config(tmp_path / "run", "sampler.temperature=0.6", "sft.steps=0", "rl.kl_coef=0.05",
                     "rl.minibatches=1", "rl.prompts_per_step=4", "data.eval_prompts=0", "train.steps=1")
    e = Engine(c)
    try:
        with e.sharding():
            r = e.kind.collect(StepInputs(params=e.state.params, reference=e.reference(), critic=None,
                                          key=jax.random.key(5), step=0, curriculum=None))
        b = r.batch
        logp, ent, cm = _tempered_logp_and_entropy(jax.device_get(e.state.params), e.model_cfg, b, 0.6)
        assert cm.sum() > 20
        np.testing.assert_allclose(np.asarray(b.old_logprobs), logp, atol=2e-4)
        np.testing.assert_allclose(np.asarray(b.ref_logprobs), logp, atol=2e-4)
        untempered, _, _ = _tempered_logp_and_entropy(jax.device_get(e.state.params), e.model_cfg, b, 1.0)
        assert np.abs(untempered - logp)[cm].max() > 0.05      # the check can tell the two apart
        with e.sharding():
            _, met = e.programs.update(e.state, b)
        # token-mean entropy over the loss tokens (quickstart: rl.agg = token-mean)
        np.testing.assert_allclose(float(met["entropy"]), ent[cm].mean(), rtol=2e-4)
        assert abs(float(met["kl_k1"])) < 1e-4                 # the first update is on-policy
    finally:
        e.close()
