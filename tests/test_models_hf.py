"""rlx.models against `transformers` (the independent reference): logits of random tiny
Qwen2, Qwen3 and Llama (llama3 rope scaling) models built locally, HF -> rlx -> HF."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")  # pinned in the `test` extra; always installed in CI
transformers = pytest.importorskip("transformers")

from rlx import models  # noqa: E402

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128)


def _hf_model(kind):
    torch.manual_seed(0)
    if kind == "qwen2":
        cfg = transformers.Qwen2Config(**COMMON, tie_word_embeddings=False)
        m = transformers.Qwen2ForCausalLM(cfg)
    elif kind == "qwen3":
        cfg = transformers.Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=True)
        m = transformers.Qwen3ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(**COMMON, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}, rope_theta=500000.0)
        m = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # random biases / norms so that every parameter matters
        for name, p in m.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m.eval().float()


def _hf_logits(m, tokens, mask=None):
    with torch.no_grad():
        kw = {} if mask is None else {"attention_mask": torch.tensor(mask.astype(np.int64))}
        return m(torch.tensor(tokens, dtype=torch.long), **kw).logits.numpy()


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama"])
def test_from_hf_forward_matches_transformers(tmp_path, kind):
    m = _hf_model(kind)
    shard = "2KB" if kind == "qwen2" else "10GB"   # qwen2: a sharded checkpoint with an index
    m.save_pretrained(tmp_path, safe_serialization=True, max_shard_size=shard)
    if kind == "qwen2":
        assert (tmp_path / "model.safetensors.index.json").exists()
    params, cfg = models.from_hf(str(tmp_path))
    assert cfg.family == kind and cfg.qk_norm == (kind == "qwen3") and cfg.qkv_bias == (kind == "qwen2")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 97, size=(2, 24))          # 24 > original context 16: llama3 scaling matters
    ours = np.asarray(models.forward(params, cfg, jnp.asarray(tokens)))
    np.testing.assert_allclose(ours, _hf_logits(m, tokens), atol=1e-4, rtol=0)
    # Left padding: real tokens flush right; HF derives positions from the mask the same way.
    mask = np.ones((2, 24), bool)
    mask[0, :5] = False
    ours = np.asarray(models.forward(params, cfg, jnp.asarray(tokens), attention_mask_BL=jnp.asarray(mask)))
    theirs = _hf_logits(m, tokens, mask)
    np.testing.assert_allclose(ours[mask], theirs[mask], atol=1e-4, rtol=0)

    # rlx -> HF: transformers loads what to_hf writes and computes the same logits.
    out = tmp_path / "export"
    models.to_hf(params, cfg, str(out))
    with open(out / "config.json") as f:
        assert json.load(f)["architectures"][0].lower().startswith(kind)
    m2 = transformers.AutoModelForCausalLM.from_pretrained(out).eval().float()
    np.testing.assert_allclose(_hf_logits(m2, tokens), _hf_logits(m, tokens), atol=1e-5, rtol=0)


def test_to_hf_then_from_hf_roundtrip_and_sharding(tmp_path):
    cfg = models.tiny(50, hidden_size=32, num_layers=2, family="llama", tie_embeddings=False)
    params = models.init_params(cfg, jax.random.key(0))
    models.to_hf(params, cfg, str(tmp_path), max_shard_bytes=20_000)
    assert (tmp_path / "model.safetensors.index.json").exists()
    back, cfg2 = models.from_hf(str(tmp_path))
    assert cfg2.replace(param_dtype=cfg.param_dtype, dtype=cfg.dtype, max_position_embeddings=cfg.max_position_embeddings) == cfg
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_from_hf_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        models.from_hf(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type 'gpt2' is not supported"):
        models.from_hf(str(tmp_path))


def test_greedy_sampling_matches_hf_generate(tmp_path):
    """rlx's KV-cache sampler and HF `generate` (its own cache) agree token for token on
    greedy decoding of left-padded prompts (weights with a larger init so that greedy
    choices are not near-ties)."""
    from rlx import sampling
    torch.manual_seed(1)
    cfg = transformers.Qwen3Config(**COMMON, head_dim=16, tie_word_embeddings=False, initializer_range=0.3)
    m = transformers.Qwen3ForCausalLM(cfg).eval().float()
    m.save_pretrained(tmp_path, safe_serialization=True)
    params, rcfg = models.from_hf(str(tmp_path))
    rng = np.random.default_rng(3)
    tokens = rng.integers(3, 97, size=(3, 7))
    mask = np.ones((3, 7), bool)
    mask[1, :2] = mask[2, :4] = False
    tokens[~mask] = 0
    with torch.no_grad():
        hf = m.generate(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)),
                        do_sample=False, max_new_tokens=8, min_new_tokens=8, eos_token_id=None, pad_token_id=0)
    scfg = sampling.SamplerConfig(max_prompt_len=7, max_new_tokens=8, temperature=0.0)
    out, _ = sampling.generate(params, rcfg, scfg, sampling.init_state(jax.random.key(0)), jnp.asarray(tokens),
                               jnp.asarray(mask), 1)
    np.testing.assert_array_equal(np.asarray(out.completion_tokens), hf[:, 7:].numpy())


@pytest.mark.parametrize("kind", ["qwen2", "qwen3"])
def test_gradients_match_torch_autograd(tmp_path, kind):
    # The backward pass (rlx.models.matmul's explicit-contraction VJP on CPU, the scanned
    # layers) against torch autograd on the same HF model: gradients of the masked mean
    # next-token log-likelihood with a left-padded row. Torch's gradients are written as an
    # HF checkpoint (same names and shapes as the weights) and read back with `from_hf`, so
    # the weight-layout mapping is the one already tested on the forward.
    m = _hf_model(kind)
    m.save_pretrained(tmp_path / "w", safe_serialization=True)
    params, cfg = models.from_hf(str(tmp_path / "w"))
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 97, size=(3, 20))
    mask = np.ones((3, 20), bool)
    mask[0, :6] = False
    valid = mask[:, :-1] & mask[:, 1:]           # predicting a real token from a real token

    logits = m(torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64))).logits
    logp = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, torch.tensor(tokens[:, 1:, None]))[..., 0]
    (-(logp * torch.tensor(valid)).sum() / valid.sum()).backward()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.grad)
    m.save_pretrained(tmp_path / "g", safe_serialization=True)
    want, _ = models.from_hf(str(tmp_path / "g"))

    def loss(p, c):
        lg = models.forward(p, c, jnp.asarray(tokens), attention_mask_BL=jnp.asarray(mask))
        lp = jnp.take_along_axis(jax.nn.log_softmax(lg[:, :-1]), jnp.asarray(tokens[:, 1:, None]), -1)[..., 0]
        return -jnp.sum(jnp.where(valid, lp, 0.0)) / valid.sum()

    for c in (cfg, cfg.replace(unroll_layers=True)):
        got = jax.jit(jax.grad(loss), static_argnums=1)(params, c)
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
            scale = float(np.abs(b).max())
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=2e-5 * scale + 1e-7,
                                       err_msg=jax.tree_util.keystr(path))
