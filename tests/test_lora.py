"""LoRA / QLoRA policies: the adapted model, its gradients, sampling, the engine with every
rollout kind, exact resume, and exports that transformers + peft load.

Independent references: the merged weight W + (alpha/r)·A·B is computed here with numpy
from the raw arrays; quantized bases are compared with qwix's own dequantization; exports
are checked against `transformers` / `peft` running the exported files in torch.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.golden import check_golden

from rlx import models, sampling
from rlx.models import lora
from rlx.train.config import ConfigError, apply_overrides, load_config, validate
from rlx.train.engine import Engine
from rlx.train.metrics import read_jsonl
from rlx.train.optim import make_optimizer
from rlx.train.state import TrainState
from rlx.train.update import UpdateSpec, make_update
from rlx.types import Batch
from tests.test_engine import QUICKSTART, ROOT, _deterministic, _run

V = 50


def tiny(**lora_kw):
    """(base cfg, base params, LoRA cfg: rank 4, alpha 8, all targets, + lora_kw)."""
    # F = 96 != D = 64, so a weight gradient's shape ([64, 96] / [96, 64]) is unique in a jaxpr.
    cfg = models.tiny(V, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_kv_heads=2)
    base = models.init_params(cfg, jax.random.key(0))
    base = jax.tree.map(lambda x: x * 5 if x.ndim >= 2 else x, base)        # sharper than the 0.02 init
    kw = dict(lora_rank=4, lora_alpha=8.0, lora_targets=lora.TARGETS)
    kw.update(lora_kw)
    return cfg, base, cfg.replace(**kw)


def randomize_b(params, seed=1, scale=0.5):
    """Adapters with non-zero B (as after some training)."""
    tr = lora.trainable(params)
    keys = iter(jax.random.split(jax.random.key(seed), 2 * len(tr)))
    new = {t: {"a": ad["a"], "b": scale * jax.random.normal(next(keys), ad["b"].shape)} for t, ad in tr.items()}
    return lora.combine(params, new)


TOKENS = jax.random.randint(jax.random.key(5), (3, 9), 0, V)


def test_zero_b_is_the_base_and_the_delta_is_w_plus_s_a_b():
    cfg, base, lcfg = tiny()
    p = lora.attach(base, lcfg, jax.random.key(1))
    assert set(lora.trainable(p)) == set(lora.TARGETS)
    np.testing.assert_array_equal(models.forward(p, lcfg, TOKENS), models.forward(base, cfg, TOKENS))
    # Non-zero adapters: equal to the base model with numpy-merged weights W + (8/4)·A·B.
    p = randomize_b(p)
    want = {k: np.asarray(v) for k, v in base["layers"].items()}
    for t, ad in lora.trainable(p).items():
        a, b = np.asarray(ad["a"]), np.asarray(ad["b"])
        for i in range(cfg.num_layers):
            w = want[t][i]
            delta = a[i].reshape(-1, 4) @ b[i].reshape(4, -1)
            want[t] = want[t].copy()
            want[t][i] = w + 2.0 * delta.reshape(w.shape)
    merged_np = {**base, "layers": {k: jnp.asarray(v) for k, v in want.items()}}
    got = models.forward(p, lcfg, TOKENS)
    np.testing.assert_allclose(got, models.forward(merged_np, cfg, TOKENS), atol=2e-4, rtol=2e-4)
    assert float(jnp.abs(got - models.forward(base, cfg, TOKENS)).max()) > 0.1      # the adapters matter
    # lora.merged (what "merge" sampling and merged exports use) is the same model
    np.testing.assert_allclose(models.forward(lora.merged(p, lcfg), cfg, TOKENS), got, atol=2e-4, rtol=2e-4)
    # Only the named targets are adapted.
    _, _, qcfg = tiny(lora_targets=("q", "down"))
    pq = lora.attach(base, qcfg, jax.random.key(1))
    assert set(lora.trainable(pq)) == {"q", "down"}
    assert lora.trainable(pq)["q"]["a"].shape == (2, 64, 4) and lora.trainable(pq)["q"]["b"].shape == (2, 4, 4, 16)
    assert lora.trainable(pq)["down"]["a"].shape == (2, 96, 4) and lora.trainable(pq)["down"]["b"].shape == (2, 4, 64)


@pytest.mark.parametrize("quant", ["int8", "nf4"])
def test_quantized_base_is_qwix_dequantized(quant):
    import qwix
    cfg, base, lcfg = tiny(lora_base_quant=quant)
    p = lora.attach(base, lcfg, jax.random.key(1))
    for t in lora.TARGETS:
        assert isinstance(p["layers"][t], qwix.QArray)
    want_dtype = jnp.uint4 if quant == "nf4" else jnp.int8
    assert p["layers"]["gate"].qvalue.dtype == want_dtype
    # B = 0: the model with every matrix replaced by qwix.dequantize of its QArray
    deq = {**base, "layers": {k: (qwix.dequantize(v) if isinstance(v, qwix.QArray) else v)
                              for k, v in p["layers"].items() if k != "lora"}}
    got = models.forward(p, lcfg, TOKENS)
    np.testing.assert_allclose(got, models.forward(deq, cfg, TOKENS), atol=1e-5, rtol=1e-5)
    # and close to the full-precision base: per-matrix relative error of the storage
    w, q = np.asarray(base["layers"]["gate"]), np.asarray(qwix.dequantize(p["layers"]["gate"]))
    rel = np.abs(q - w).max() / np.abs(w).max()
    assert rel < (0.01 if quant == "int8" else 0.2), rel      # int8: <= 1/254 per channel; nf4: 16 levels


def test_gradients_reach_only_the_adapters():
    cfg, base, lcfg = tiny()
    spec = UpdateSpec(loss="ppo_clip", agg="token-mean", group_size=2, max_len=4)
    opt = make_optimizer(load_config(QUICKSTART).optimizer, 10)
    B, Lp, T = 4, 3, 4
    batch = Batch.create(prompt_tokens=TOKENS[:1].repeat(B, 0)[:, :Lp], prompt_mask=jnp.ones((B, Lp), bool),
                         completion_tokens=TOKENS[1:2].repeat(B, 0)[:, :T], completion_mask=jnp.ones((B, T), bool),
                         advantages=jnp.array([[1.0], [-1.0], [0.5], [-0.5]]).repeat(T, 1),
                         old_logprobs=jnp.full((B, T), -3.0), rewards=jnp.zeros(B), valid=jnp.ones(B, bool))

    def weight_grad_shapes(model_cfg, params):
        # The optimized program's dot products (after XLA's dead-code elimination: the CPU
        # einsum's custom VJP traces both cotangents, XLA drops the unused one).
        state = TrainState.create(params, opt, jax.random.key(0))
        hlo = jax.jit(make_update(model_cfg, spec, opt)).lower(state, batch).compile().as_text()
        dots = [ln for ln in hlo.splitlines() if " dot(" in ln]
        return state, {s for s in ("[64,96]", "[96,64]", "[2,64,96]", "[2,96,64]")
                       if any(f"f32{s}" in ln.split("=")[1].split("dot(")[0] for ln in dots if "=" in ln)}

    full_state, full = weight_grad_shapes(cfg, base)
    assert full            # full fine-tuning computes the gate/up/down weight gradients (the check can fail)
    lp = lora.attach(base, lcfg, jax.random.key(1))
    state, found = weight_grad_shapes(lcfg, lp)
    assert not found       # LoRA: no base weight gradient is ever computed
    adapter_shapes = sorted(tuple(x.shape) for x in jax.tree.leaves(lora.trainable(lp)))
    moments = [tuple(x.shape) for x in jax.tree.leaves(state.opt_state) if x.ndim > 0]
    assert moments and set(moments) <= set(adapter_shapes)
    assert sum(x.size for x in jax.tree.leaves(state.opt_state)) < 0.3 * sum(
        x.size for x in jax.tree.leaves(full_state.opt_state))
    # One update changes the adapters only: the frozen base is bit-identical afterwards.
    new, _ = jax.jit(make_update(lcfg, spec, opt))(state, batch)
    for a, b in zip(jax.tree.leaves(lora.base_of(lp)), jax.tree.leaves(lora.base_of(new.params))):
        np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(new.params["layers"]["lora"]["q"]["b"]).max()) > 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_nf4_dequantize_is_qwix_bit_for_bit_and_keeps_sharding(dtype):
    # rlx's shard-preserving NF4 decode against qwix.dequantize itself (the reference), on
    # an [Ly, F, D] matrix (down: blocks along F) sharded on its last axis as FSDP does.
    import qwix
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P
    w = jax.random.normal(jax.random.key(0), (2, 128, 64))
    q = lora.quantize(w, 1, "nf4", dtype)
    np.testing.assert_array_equal(np.asarray(lora.dequantize(q)), np.asarray(qwix.dequantize(q)))
    assert lora.dequantize(q).dtype == dtype
    mesh = Mesh(np.array(jax.devices()[:8]), ("fsdp",))
    sh = NamedSharding(mesh, P(None, None, "fsdp"))
    qs = jax.tree.map(lambda x: jax.device_put(x, sh), q)
    hlo = jax.jit(lora.dequantize).lower(qs).compile().as_text()
    assert "all-gather" not in hlo and "all-to-all" not in hlo
    assert "all-gather" in jax.jit(qwix.dequantize).lower(qs).compile().as_text()  # why rlx has its own


@pytest.mark.parametrize("quant,mode", [("none", "merge"), ("none", "adapters"), ("nf4", "merge"),
                                        ("int8", "adapters")])
def test_sampler_and_trainer_logprobs_agree(quant, mode):
    cfg, base, lcfg = tiny(lora_base_quant=quant, lora_sampler=mode)
    p = randomize_b(lora.attach(base, lcfg, jax.random.key(1)))
    scfg = sampling.SamplerConfig(max_prompt_len=5, max_new_tokens=6, temperature=1.0, pad_id=0)
    toks, mask = TOKENS[:, :5], jnp.ones((3, 5), bool).at[1, :2].set(False)
    out, _ = sampling.generate(p, lcfg, scfg, sampling.init_state(jax.random.key(3)), toks, mask, 2)
    trainer = models.completion_logprobs(p, lcfg, out.prompt_tokens, out.prompt_mask, out.completion_tokens,
                                         out.completion_mask)
    np.testing.assert_allclose(out.logprobs, trainer, atol=2e-5, rtol=2e-5)


def test_bf16_merge_rounds_small_deltas_away_which_is_why_adapters_is_the_default():
    # Weights ~ 0.1, a delta ~ 1e-4 (adapters early in training): bfloat16's spacing near
    # 0.1 is 2^-4 * 2^-7 ~ 4.9e-4 (hand value), so W + delta rounds back to W for most
    # entries; the "adapters" decode keeps the delta in its own matmul.
    cfg, base, lcfg = tiny(dtype=jnp.bfloat16)
    p = randomize_b(lora.attach(base, lcfg, jax.random.key(1)), scale=2e-4)
    w32 = np.asarray(lora.merged(p, lcfg, jnp.float32)["layers"]["up"])
    wb = np.asarray(lora.merged(p, lcfg, jnp.bfloat16)["layers"]["up"], np.float32)
    base_b = np.asarray(base["layers"]["up"].astype(jnp.bfloat16), np.float32)
    moved32 = np.abs(w32 - np.asarray(base_b)) > 0
    assert moved32.mean() > 0.99 and (wb == base_b).mean() > 0.5
    assert lcfg.lora_sampler == "adapters"        # ModelConfig's default, as configs/base.py's


def test_lora_config_errors_name_the_key():
    def check(overrides, key):
        c = load_config(QUICKSTART)
        apply_overrides(c, overrides)
        with pytest.raises(ConfigError, match=key):
            validate(c)
    check(["model.lora.rank=8", "model.lora.targets=q,kk"], "model.lora.targets")
    check(["model.lora.base_quant=nf4"], "model.lora.base_quant")
    check(["model.lora.rank=8", "model.lora.base_quant=int4"], "model.lora.base_quant")
    check(["checkpoint.export_format=peft"], "checkpoint.export_format")
    check(["model.lora.rank=8", "model.lora.alpha=0"], "model.lora.alpha")
    c = load_config(QUICKSTART)
    apply_overrides(c, ["model.lora.rank=8", "model.lora.targets=q,kk"])
    with pytest.raises(ConfigError, match="unknown: \\['kk'\\]"):
        validate(c)
    apply_overrides(c, ["model.lora.rank=0", "model.lora.targets="])
    validate(c)                                  # targets are not read without adapters
    with pytest.raises(ValueError, match="lora_base_quant"):
        models.tiny(V, lora_base_quant="nf4")    # the ModelConfig itself refuses it too


# ------------------------------------------------------------------------------ engine

def lora_config(d, *extra, name=QUICKSTART):
    c = load_config(name)
    apply_overrides(c, [f"run_dir={d}", "log.progress=False", "data.eval_prompts=16", "sft.steps=30",
                        "sft.batch_size=32", "rl.prompts_per_step=4", "rl.group_size=4", "rl.epochs=1",
                        "rl.minibatches=1", "train.steps=4", "train.eval_every=0", "checkpoint.interval=2",
                        "checkpoint.async_save=False", "mesh.shape=(1, 1, 1)", "model.lora.rank=4",
                        "model.lora.alpha=8", "optimizer.lr=2e-3", *extra])
    return validate(c)


def test_lora_grpo_learns_the_quickstart_task(tmp_path):
    # The quickstart recipe (SFT warm start of the base, then GRPO on rank-8 adapters of
    # every linear layer): greedy accuracy on 128 held-out problems must rise. README:
    # 3 seeds, 40 steps.
    c = lora_config(tmp_path / "run", "train.steps=40", "rl.prompts_per_step=16", "rl.group_size=8",
                    "rl.epochs=2", "rl.minibatches=4", "sft.steps=60", "sft.batch_size=64", "data.eval_prompts=128",
                    "checkpoint.interval=0", "model.lora.rank=8", "model.lora.alpha=16")
    e, summary = _run(c)
    assert summary["accuracy_after"] > summary["accuracy_before"] + 0.05, summary
    n_adapter = sum(x.size for x in jax.tree.leaves(lora.trainable(e.state.params)))
    # layers x rank x (in + out) summed over q, o (64 | 64), k, v (64 | 32), gate, up, down (64 | 128)
    assert n_adapter == 2 * 8 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128)), n_adapter


def test_lora_resume_is_exact_and_checkpoints_hold_adapters(tmp_path):
    # KL to the reference (= the base with adapters off) and an nf4 base: 4 steps equal 2
    # steps + --resume + 2 steps; the checkpoints hold the adapters and their optimizer
    # state only, the base is rebuilt (cached SFT + deterministic quantization).
    extra = ("rl.kl_coef=0.05", "model.lora.base_quant=nf4")
    full, _ = _run(lora_config(tmp_path / "a", *extra))
    _run(lora_config(tmp_path / "b", *extra), stop_after=2)
    resumed, _ = _run(lora_config(tmp_path / "b", *extra), engine_kw={"resume": True})
    ra = _deterministic(read_jsonl(str(tmp_path / "a" / "metrics.jsonl")))
    rb = _deterministic(read_jsonl(str(tmp_path / "b" / "metrics.jsonl")))
    assert ra == rb and any(r.get("kl", 0) > 0 for r in ra)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    import orbax.checkpoint as ocp
    tree = ocp.StandardCheckpointer().restore(str(tmp_path / "b" / "checkpoints" / "4" / "state"))
    assert set(tree["train"]["params"]) == set(lora.TARGETS) and "ref_params" not in tree
    saved = sorted(tuple(np.shape(x)) for x in jax.tree.leaves(tree["train"]["params"]))
    assert saved == sorted(tuple(x.shape) for x in jax.tree.leaves(lora.trainable(full.state.params)))


def test_lora_resume_refuses_another_base_and_changes_nothing(tmp_path):
    # A LoRA checkpoint holds adapters only, so resuming (or exporting) on a base other than
    # the one they were trained on must fail: here the cached SFT warm start is removed
    # (the run would retrain it), then altered (same settings, other weights: caught by the
    # base fingerprint recorded in the checkpoint). Nothing in the run directory changes.
    from safetensors.numpy import load_file, save_file

    from rlx.export import main as export_main
    from rlx.train.checkpoint import RestoreError
    d = tmp_path / "run"
    c = lora_config(d, "train.steps=2", "checkpoint.interval=1", "data.eval_prompts=0")
    _run(c, stop_after=1)

    def snapshot():
        return sorted((str(p.relative_to(d)), p.stat().st_mtime_ns) for p in d.rglob("*") if p.is_file()
                      and "sft" not in p.parts)
    before = snapshot()
    os.rename(d / "sft", tmp_path / "sft")
    with pytest.raises(RestoreError, match="SFT warm start"):
        Engine(lora_config(d, "train.steps=2", "checkpoint.interval=1", "data.eval_prompts=0"), resume=True)
    assert not (d / "sft").exists() and snapshot() == before
    os.rename(tmp_path / "sft", d / "sft")
    w = load_file(str(d / "sft" / "model.safetensors"))
    name = sorted(k for k in w if "up_proj" in k)[0]
    w[name] = w[name] * np.float32(1.01)
    save_file(w, str(d / "sft" / "model.safetensors"))
    with pytest.raises(RestoreError, match="frozen base rebuilt .* differs"):
        Engine(lora_config(d, "train.steps=2", "checkpoint.interval=1", "data.eval_prompts=0"), resume=True)
    assert snapshot() == before
    with pytest.raises(SystemExit):
        export_main([f"--run-dir={d}", "--step=1", f"--out={tmp_path / 'x'}"])
    with pytest.raises(ValueError, match="a LoRA run's checkpoint .* export it first"):
        Engine(lora_config(tmp_path / "new", f"model.init_from={d}", "model.lora.rank=0"))


@pytest.mark.parametrize("kind", ["ppo", "spo_chain_cpu", "spo_tree_cpu", "dpo"])
def test_lora_trains_with_every_rollout_kind(tmp_path, kind):
    # PPO and online DPO get a longer warm start, so that some rewards are non-zero: with
    # all-zero rewards (and the critic's zero-initialised head) every PPO advantage is 0, and
    # online DPO finds no (chosen, rejected) pair.
    warm = ("sft.steps=60", "sft.batch_size=64")
    extra = {"ppo": ("rl.estimator=gae", "rl.estimator_kwargs.lam=0.95", *warm),
             "dpo": ("rl.loss=dpo", "pref.source=online", "data.eval_prompts=0", *warm,
                     "checkpoint.export_hf=True", "checkpoint.export_format=peft"),
             "spo_chain_cpu": ("data.eval_prompts=0",), "spo_tree_cpu": ("data.eval_prompts=0",)}[kind]
    name = QUICKSTART if kind in ("ppo", "dpo") else os.path.join(ROOT, "configs", f"{kind}.py")
    c = lora_config(tmp_path / kind, "train.steps=2", "checkpoint.interval=0", *extra, name=name)
    e = Engine(c)
    base0 = jax.tree.map(np.asarray, lora.base_of(e.state.params))
    ad0 = jax.tree.map(np.asarray, lora.trainable(e.state.params))
    e.run()
    e.close()
    recs = [r for r in read_jsonl(str(tmp_path / kind / "metrics.jsonl")) if r["step"] > 0 and "loss" in r]
    assert len(recs) == 2 and all(np.isfinite(r["loss"]) for r in recs)
    check_golden(f"lora_{kind}", tmp_path / kind)
    for a, b in zip(jax.tree.leaves(base0), jax.tree.leaves(lora.base_of(e.state.params))):
        np.testing.assert_array_equal(a, np.asarray(b))                   # the base is frozen
    moved = [float(np.abs(np.asarray(b) - a).max()) for a, b in
             zip(jax.tree.leaves(ad0), jax.tree.leaves(lora.trainable(e.state.params)))]
    assert max(moved) > 0                                                 # the adapters trained
    if kind == "ppo":
        assert "lora" not in e.critic.params["trunk"]["layers"]           # the critic is a full model
    if kind == "dpo":
        assert e.ref_params is None                                       # the reference is the base, no copy
        for f in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "base/model.safetensors"):
            assert (tmp_path / kind / "peft" / f).exists(), f                 # the end-of-run PEFT export


# ------------------------------------------------------------------------------ exports

def _greedy_rlx(params, cfg, ids, n):
    scfg = sampling.SamplerConfig(max_prompt_len=ids.shape[1], max_new_tokens=n, temperature=0.0, pad_id=0)
    out, _ = sampling.generate(params, cfg, scfg, sampling.init_state(jax.random.key(0)), jnp.asarray(ids),
                               jnp.ones(ids.shape, bool), 1)
    return np.asarray(out.completion_tokens)[0]


def test_exports_load_in_transformers_and_peft(tmp_path):
    torch = pytest.importorskip("torch")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlx.export import main as export_main
    from rlx.train.export import load_run_policy
    d = tmp_path / "run"
    _run(lora_config(d, "train.steps=2", "checkpoint.export_hf=True"))
    c, cfg, tok, params, step = load_run_policy(str(d), 2)
    assert step == 2 and lora.has_adapters(params)
    merged, peft_dir = str(tmp_path / "merged"), str(tmp_path / "peft")
    assert export_main([f"--run-dir={d}", "--step=2", f"--out={merged}"]) == merged
    export_main([f"--run-dir={d}", "--format=peft", f"--out={peft_dir}"])
    ids = np.asarray([tok("12+7=")["input_ids"]], np.int32)
    ours = np.asarray(models.forward(params, cfg, jnp.asarray(ids)))
    for where in (merged, str(d / "hf")):                       # CLI export and the end-of-run export
        t = AutoTokenizer.from_pretrained(where)
        assert t("12+7=")["input_ids"] == ids[0].tolist() and t.eos_token_id == tok.eos_token_id
        m = AutoModelForCausalLM.from_pretrained(where)
        assert m.generation_config.eos_token_id == tok.eos_token_id and m.config.pad_token_id == tok.pad_token_id
        with torch.no_grad():
            np.testing.assert_allclose(m(torch.tensor(ids)).logits.numpy(), ours, atol=1e-4, rtol=1e-4)
            gen = m.generate(torch.tensor(ids), max_new_tokens=4, do_sample=False, eos_token_id=None)
        np.testing.assert_array_equal(gen[0, ids.shape[1]:].numpy(), _greedy_rlx(params, cfg, ids, 4))
        assert oct(os.stat(os.path.join(where, "model.safetensors")).st_mode & 0o777) == "0o644"
    cfg_json = json.load(open(os.path.join(peft_dir, "adapter_config.json")))
    assert cfg_json["r"] == 4 and cfg_json["lora_alpha"] == 8.0 and len(cfg_json["target_modules"]) == 7
    base = AutoModelForCausalLM.from_pretrained(cfg_json["base_model_name_or_path"])
    pm = PeftModel.from_pretrained(base, peft_dir)
    with torch.no_grad():
        np.testing.assert_allclose(pm(torch.tensor(ids)).logits.numpy(), ours, atol=1e-4, rtol=1e-4)


def test_full_finetune_export_keeps_its_dtype_and_any_step(tmp_path):
    # A full fine-tune with bf16 master weights: exported bf16 (unless --dtype), any saved step.
    from safetensors import safe_open

    from rlx.export import main as export_main
    d = tmp_path / "run"
    c = load_config(QUICKSTART)
    apply_overrides(c, [f"run_dir={d}", "log.progress=False", "data.eval_prompts=0", "sft.steps=0",
                        "rl.prompts_per_step=4", "rl.group_size=4", "rl.epochs=1", "rl.minibatches=1",
                        "train.steps=2", "train.eval_every=0", "checkpoint.interval=1", "checkpoint.async_save=False",
                        "model.param_dtype=bfloat16"])
    _run(validate(c))
    out = export_main([f"--run-dir={d}", "--step=1"])
    assert out == str(d / "hf" / "1")
    with safe_open(os.path.join(out, "model.safetensors"), "np") as f:
        assert f.get_slice("model.embed_tokens.weight").get_dtype() == "BF16"
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "config.json"):
        assert os.path.exists(os.path.join(out, name)), name
    assert json.load(open(os.path.join(out, "config.json")))["torch_dtype"] == "bfloat16"
    f32 = export_main([f"--run-dir={d}", "--step=2", "--dtype=float32", f"--out={tmp_path / 'f32'}"])
    assert json.load(open(os.path.join(f32, "config.json")))["torch_dtype"] == "float32"
    with pytest.raises(SystemExit):
        export_main([f"--run-dir={d}", "--step=7"])
    with pytest.raises(SystemExit):
        export_main([f"--run-dir={d}", "--format=peft"])
