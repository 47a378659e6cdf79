"""The engine at scale settings, on CPU: bfloat16 end to end, micro-batched forwards and
chunked rollouts inside the engine, bounded compilation (width buckets, SFT, DAPO's
dynamic sampling), accelerator defaults, the architecture check, and `rlx.plan`."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import models
from rlx.train import build
from rlx.train.config import ConfigError, load_config, validate
from rlx.train.metrics import read_jsonl
from rlx.train.rollout import bucket_width
from tests.test_engine import ROOT, _run, small_config


def _records(run_dir):
    return [r for r in read_jsonl(str(run_dir / "metrics.jsonl")) if "loss" in r]


def test_bfloat16_run_end_to_end(tmp_path):
    # bf16 compute and KV cache, float32 master weights, a KL term: the reference policy is
    # stored in bf16 (no second float32 copy) and the run trains with finite metrics.
    e, summary = _run(small_config(tmp_path / "bf16", "model.dtype=bfloat16", "rl.kl_coef=0.05", "train.steps=3",
                                   "checkpoint.interval=0"))
    assert e.model_cfg.dtype == jnp.bfloat16 and e.model_cfg.param_dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(e.ref_params)} == {jnp.dtype(jnp.bfloat16)}
    assert {x.dtype for x in jax.tree.leaves(e.state.params)} == {jnp.dtype(jnp.float32)}
    recs = _records(tmp_path / "bf16")
    assert len(recs) == 3 and all(np.isfinite(r["loss"]) and np.isfinite(r["kl"]) for r in recs)
    assert any(r["grad_norm"] > 0 for r in recs)
    assert 0.0 <= summary["accuracy_after"] <= 1.0


def test_cpu_defaults_stay_float32(tmp_path):
    c = small_config(tmp_path / "d")
    assert c.model.dtype == "auto"
    assert build.resolve_dtype("auto", "cpu") == jnp.float32
    assert build.resolve_dtype("auto", "tpu") == jnp.bfloat16 and build.resolve_dtype("auto", "gpu") == jnp.bfloat16
    assert build.resolve_dtype("float32", "tpu") == jnp.float32          # an explicit setting wins
    assert models.resolve_vocab_chunk(-1, 151936) == 8192 and models.resolve_vocab_chunk(-1, 104) == 0
    assert models.resolve_vocab_chunk(0, 151936) == 0 and models.resolve_vocab_chunk(4096, 10) == 4096


def test_chunked_forwards_and_rollouts_leave_the_run_unchanged(tmp_path):
    # train.forward_rows (reference log-probs in chunks of 4 rows), sampler.rows_per_call
    # (2 prompts x 4 samples per sampler call) and 16 update micro-batches (2 rows: half a
    # group of 4) change only the order of float sums: the samples are identical and the
    # metrics agree to rounding: 1e-4 relative (XLA:CPU blocks float32 matmuls differently
    # for different row counts; up to 2e-5 seen on the entropy). One minibatch, so that a
    # step's metrics are of the params before its update: Adam's first steps are near
    # sign(g) · lr, which turns rounding in a near-zero gradient entry into a full-size
    # step, so metrics computed after an update (the second step's) agree to 1e-3 only.
    common = ("train.steps=2", "checkpoint.interval=0", "data.eval_prompts=8", "rl.kl_coef=0.02",
              "rl.minibatches=1")
    _run(small_config(tmp_path / "a", "train.forward_rows=0", *common))
    _run(small_config(tmp_path / "b", "train.forward_rows=4", "sampler.rows_per_call=8", "rl.micro_batches=16",
                      *common))
    ra, rb = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert len(ra) == len(rb) == 2
    for i, (a, b) in enumerate(zip(ra, rb)):
        for k in ("reward/mean", "tokens/sampled", "batch/completion_columns"):
            assert a[k] == b[k], k                      # the same samples
        tol = 1e-4 if i == 0 else 1e-3
        for k in ("loss", "kl", "entropy", "grad_norm"):
            assert abs(a[k] - b[k]) <= tol * max(1.0, abs(a[k])), (i, k, a[k], b[k])


def test_width_buckets_are_geometric():
    # hand cases: buckets 4, 8, 16, 32 ... capped at the full width
    assert [bucket_width(u, 100, 4) for u in (0, 1, 4, 5, 8, 9, 17, 33, 65, 99)] == [4, 4, 4, 8, 8, 16, 32, 64,
                                                                                       100, 100]
    assert bucket_width(3, 10, 0) == 10
    # 512 / 4096 with multiple 64: 4 prompt x 7 completion buckets
    assert len({bucket_width(u, 512, 64) for u in range(513)}) == 4
    assert len({bucket_width(u, 4096, 64) for u in range(4097)}) == 7


def test_update_programs_stay_bounded_and_are_logged(tmp_path):
    # Completions of up to 16 tokens trimmed to buckets of 2, 4, 8, 16 and prompts (<= 5
    # tokens of 8) to 2, 4, 8: at most 12 update programs however long the run; the
    # logged count is the jit cache's.
    e, _ = _run(small_config(tmp_path / "w", "rl.pad_multiple=2", "sampler.max_new_tokens=16", "train.steps=5",
                             "checkpoint.interval=0", "data.eval_prompts=0"))
    recs = _records(tmp_path / "w")
    widths = {(r["batch/prompt_columns"], r["batch/completion_columns"]) for r in recs}
    assert all(p in (2, 4, 8) and t in (2, 4, 8, 16) for p, t in widths)
    assert recs[-1]["compile/update_programs"] == len(widths) == e._update._cache_size() <= 12
    assert e.programs.sft_step._cache_size() == 1                  # the SFT step compiles once


def test_dynamic_sampling_compiles_a_bounded_number_of_programs(tmp_path, caplog):
    # DAPO's dynamic sampling used to dispatch its buffer operations eagerly, compiling
    # programs for every new carry size (283 compiles in 8 steps). Now steps 4..6 (after
    # warm-up: every program and width seen) compile nothing new except update widths.
    c = small_config(tmp_path / "dapo", "rl.dynamic_sampling=True", "rl.max_sampling_rounds=3", "train.steps=3",
                     "checkpoint.interval=0", "data.eval_prompts=0", "rl.pad_multiple=0")
    from rlx.train.engine import Engine
    e = Engine(c)
    try:
        for _ in range(3):
            e.rl_step()
            e.step += 1
        jax.config.update("jax_log_compiles", True)
        with caplog.at_level(logging.WARNING, logger="jax"):
            caplog.clear()
            for _ in range(3):
                e.rl_step()
                e.step += 1
        compiles = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    finally:
        jax.config.update("jax_log_compiles", False)
        e.close()
    assert len(compiles) <= 3, compiles


def test_declared_architecture_must_match_the_hf_checkpoint(tmp_path):
    cfg = models.tiny(104, hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=64)
    models.to_hf(models.init_params(cfg, jax.random.key(0)), cfg, str(tmp_path / "hf"))
    c = load_config(os.path.join(ROOT, "configs", "quickstart.py"))
    c.model.source, c.model.hf_path = "hf", str(tmp_path / "hf")
    validate(c)
    # Fields left at configs/base.py's defaults declare nothing: config.json describes the model.
    got = build.model_config(c)
    assert (got.hidden_size, got.num_layers, got.intermediate_size) == (32, 3, 64)
    c.model.num_layers, c.model.intermediate_size = 3, 64          # declared and agreeing: fine
    build.model_config(c)
    c.model.hidden_size, c.model.num_heads = 96, 6                  # declared and disagreeing: named
    with pytest.raises(ConfigError, match=r"config\.model\.hidden_size=96 but .*config\.json has 32(.|\n)*"
                                          r"config\.model\.num_heads=6 but .*config\.json has 4"):
        build.model_config(c)
    # Planning without the directory: the declared fields describe the model.
    c2 = load_config(os.path.join(ROOT, "configs", "scale", "qwen05b_v5e8.py"))
    validate(c2, for_plan=True)
    with pytest.raises(ConfigError, match=r"config\.model\.hf_path: required to run"):
        validate(c2)
    q = build.model_config(c2, platform="tpu")
    assert (q.vocab_size, q.hidden_size, q.num_layers, q.num_heads, q.num_kv_heads, q.head_dim) == (
        151936, 896, 24, 14, 2, 64)
    assert q.qkv_bias and q.tie_embeddings and q.dtype == jnp.bfloat16 and q.remat == "full"
    assert q.num_params == 494_032_768          # Qwen2.5-0.5B's parameter count (its model card: 0.49B)


def test_plan_local_on_a_tiny_config(capsys, tmp_path):
    from rlx.plan import main
    q = os.path.join(ROOT, "configs", "quickstart.py")
    hlo = tmp_path / "hlo"
    assert main([f"--config={q}", "--topology=local", "--config.mesh.shape=(1, 1, 1)", f"--dump-hlo={hlo}"]) == 0
    out = capsys.readouterr().out
    for prog in ("sampler", "sampler_eval", "sft_step", "update"):
        assert any(line.startswith(prog + " ") for line in out.splitlines()), (prog, out)
        assert (hlo / f"{prog}.hlo.txt").read_text().startswith("HloModule "), prog     # --dump-hlo
    assert out.strip().splitlines()[-1].startswith("plan: fits (peak ")
    # the verdict: with 1 KiB per chip nothing fits, and the first program is named
    assert main([f"--config={q}", "--topology=local", "--config.mesh.shape=(1, 1, 1)", "--hbm-gib=1e-6",
                 "--only=update"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("plan: does not fit: update needs ") and last.endswith("GiB per chip")
    assert main([f"--config={q}", "--config.rl.grup_size=2"]) == 2


def test_plan_on_a_tpu_topology(capsys, monkeypatch):
    # libtpu's compiler on this CPU host (the `plan` extra, installed by the test extra):
    # a tiny GRPO config with a KL term on a v5e-8 (8 abstract chips), FSDP over them.
    monkeypatch.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from rlx.plan import main, parse_topology
    assert parse_topology("v5e-8")[:3] == ("v5e:2x4", "v5litepod-8", 15.75)
    assert parse_topology("v4-8")[:3] == ("v4:2x2x1", "v4-8", 30.75)
    assert parse_topology("v5p-16")[:3] == ("v5p:2x2x2", "v5p-16", 95.73)
    with pytest.raises(ValueError, match="unsupported size"):
        parse_topology("v5e-7")
    q = os.path.join(ROOT, "configs", "quickstart.py")
    rc = main([f"--config={q}", "--topology=v5e-8", "--config.mesh.shape=(1, 8, 1)", "--config.rl.kl_coef=0.01",
               "--config.data.eval_prompts=0", "--config.sft.steps=0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "8 x TPU v5 lite, 15.75 GiB per chip" in out and "compute bfloat16" in out
    assert [ln.split()[0] for ln in out.splitlines()[2:-1]] == ["sampler", "ref_logprobs", "update"]
    assert out.strip().splitlines()[-1].startswith("plan: fits")


def test_scale_configs_validate_for_planning():
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", "scale"))
                   if f.endswith(".py") and f != "__init__.py")
    assert names == ["qwen05b_v5e8", "qwen15b_v4_8", "qwen7b_lora_v5e8", "qwen7b_v5p16"]
    for n in names:
        c = validate(load_config(os.path.join(ROOT, "configs", "scale", f"{n}.py")), for_plan=True)
        assert c.plan_topology and c.model.source == "hf" and c.rl.estimator == "grpo" and c.rl.kl_coef > 0
        assert (c.model.lora.rank == 16) == ("lora" in n)



def test_compile_cache_setting(monkeypatch, tmp_path):
    from rlx.train.compile_cache import cache_dir, setup_compile_cache
    monkeypatch.setenv("RLX_COMPILE_CACHE", str(tmp_path / "c"))
    assert cache_dir("auto") == str(tmp_path / "c") and cache_dir("") == "" and cache_dir("/x") == "/x"
    monkeypatch.delenv("RLX_COMPILE_CACHE")
    assert cache_dir("auto") == os.path.join(os.path.expanduser("~"), ".cache", "rlx", "jax")
    current = jax.config.jax_compilation_cache_dir          # the test suite's own cache
    assert current and setup_compile_cache(str(tmp_path / "other")) == current
    assert jax.config.jax_compilation_cache_dir == current   # an existing cache is never replaced


@pytest.mark.parametrize("name,programs", [("ppo", ["critic_values", "critic_update"]),
                                           ("spo_chain_cpu", ["spo_continue", "logprobs_T"]),
                                           ("spo_tree_cpu", ["tree_sampler", "logprobs_T"]),
                                           ("dpo", ["pref_ref", "pref_update"])])
def test_plan_covers_every_engine_family(capsys, name, programs):
    # The family-specific programs of the critic, SPO-chain, SPO-tree and preference paths
    # are built and compiled (the rest are those of test_plan_local_on_a_tiny_config).
    from rlx.plan import main
    cfg = os.path.join(ROOT, "configs", f"{name}.py")
    assert main([f"--config={cfg}", "--topology=local", "--config.mesh.shape=(1, 1, 1)",
                 f"--only={','.join(programs)}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines[2:-1]] == programs and lines[-1].startswith("plan: fits")
