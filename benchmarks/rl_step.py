#!/usr/bin/env python3
"""One GRPO workload through rlx and through TRL's GRPOTrainer (the named peer), on CPU.

    make bench-deps && .venv/bin/python benchmarks/rl_step.py [--steps 6] [--prompts 8] [--group 8]

Same random tiny Qwen2 (rlx init, exported with `rlx.models.to_hf`, loaded by both), same
character tokenizer, same arithmetic prompts, same G, completion budget, sampling at
temperature 1, one optimizer step per RL step, no reference model (beta = 0), float32.
Throughput = completion tokens generated per second of a whole RL step (generation +
reward + update), the first step (compilation / warm-up) excluded. Ends with
`ratio: X` = rlx tokens/s / TRL tokens/s. A benchmark, run by hand — not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def build_model(d: str, args):
    import jax

    from rlx import models
    tok = models.build_tokenizer(os.path.join(d, "model"))
    cfg = models.tiny(len(tok), hidden_size=args.width, num_layers=args.layers, num_heads=4, num_kv_heads=2,
                      intermediate_size=4 * args.width, family="qwen2", tie_embeddings=True)
    models.to_hf(models.init_params(cfg, jax.random.key(0)), cfg, os.path.join(d, "model"))
    return os.path.join(d, "model"), cfg


def prompts(n: int):
    from rlx.data import arithmetic
    return arithmetic.generate(n, seed=0, level=2, template="compact")


def bench_rlx(path: str, args) -> float:
    from rlx.train.config import apply_overrides, load_config, validate
    from rlx.train.engine import Engine
    c = load_config(os.path.join(ROOT, "configs", "grpo.py"))
    apply_overrides(c, [
        "model.source=hf", f"model.hf_path={path}", f"model.tokenizer_path={path}", "sft.steps=0",
        f"rl.prompts_per_step={args.prompts}", f"rl.group_size={args.group}", "rl.epochs=1", "rl.minibatches=1",
        f"sampler.max_new_tokens={args.tokens}", "sampler.max_prompt_len=16", "data.task=arithmetic",
        "data.levels=(2,)", "data.eval_prompts=0", "train.eval_every=0", f"train.steps={args.steps}",
        "checkpoint.interval=0", "log.progress=False", "mesh.shape=(1, 1, 1)", "optimizer.lr=1e-6",
        "model.unroll_layers=True", "rl.pad_multiple=8",   # the CPU settings of configs/quickstart.py
        f"run_dir={tempfile.mkdtemp()}"])
    e = Engine(validate(c))
    tokens, seconds = 0.0, 0.0
    for i in range(args.steps):
        t0 = time.perf_counter()
        m = e.rl_step()
        e.step += 1
        dt = time.perf_counter() - t0
        if i > 0:
            tokens += m["tokens/sampled"]
            seconds += dt
    e.close()
    print(f"rlx: {tokens:.0f} completion tokens in {seconds:.2f} s over {args.steps - 1} steps "
          f"-> {tokens / seconds:.1f} tokens/s")
    return tokens / seconds


def bench_trl(path: str, args) -> float:
    import datasets
    import torch
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlx import rewards
    torch.set_num_threads(os.cpu_count() or 1)
    exs = prompts(args.prompts * args.steps)
    ds = datasets.Dataset.from_list([{"prompt": e["prompt"], "answer": e["answer"]} for e in exs])
    by_prompt = {e["prompt"]: e for e in exs}

    def reward_fn(prompts, completions, **kw):
        return list(rewards.score("arithmetic", completions, [by_prompt[p] for p in prompts])[0])

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    stamps, lengths = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    cfg = GRPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.prompts * args.group,
                     num_generations=args.group, max_completion_length=args.tokens, temperature=1.0,
                     learning_rate=1e-6, beta=0.0, max_steps=args.steps, logging_steps=1, report_to="none",
                     use_cpu=True, bf16=False, save_strategy="no", gradient_checkpointing=False,
                     disable_dropout=True, seed=0)
    trainer = GRPOTrainer(model=path, reward_funcs=reward_fn, args=cfg, train_dataset=ds, processing_class=tok,
                          callbacks=[Clock()])
    t_start = time.perf_counter()
    trainer.train()
    stamps.insert(0, t_start)
    seconds = stamps[-1] - stamps[1]
    n = args.prompts * args.group
    tokens = sum(lengths[1:]) * n
    print(f"TRL: {tokens:.0f} completion tokens in {seconds:.2f} s over {args.steps - 1} steps "
          f"-> {tokens / seconds:.1f} tokens/s")
    return tokens / seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args(argv)
    d = tempfile.mkdtemp()
    path, cfg = build_model(d, args)
    print(f"model: qwen2 {cfg.num_layers} layers, width {cfg.hidden_size}, vocab {cfg.vocab_size} "
          f"({cfg.num_params / 1e6:.2f}M params); P={args.prompts} G={args.group} T={args.tokens}")
    r = bench_rlx(path, args)
    t = bench_trl(path, args)
    print(f"ratio: {r / t:.2f}")


if __name__ == "__main__":
    main()
