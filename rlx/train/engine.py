"""The RL engine: sample -> reward -> advantage -> update -> curriculum -> log -> checkpoint.

    engine = Engine(config, resume=False)
    summary = engine.run()        # {"accuracy_before": ..., "accuracy_after": ..., ...}

The loop is the same for every rollout kind (`rlx.train.kinds`): the config's kind
turns (params, prompts, key) into a batch and its metrics (sample -> reward ->
advantage), the engine runs the kind's update program, the critic's and the
curriculum's updates, logs and checkpoints. The kind's own state between steps is in
the checkpoint through `checkpoint_tree` / `checkpoint_meta`.

One code path from one CPU device to a multi-host TPU slice: params and optimizer state
are sharded by the logical-axis rules of `config.mesh.rules` over the
(data, fsdp, tensor) mesh, batches over (data, fsdp); the update is one `jit` with
in/out shardings and state donation (compiled once: shapes are static). Host-side
work (prompt selection, tokenization, decoding, verifiable rewards) is replicated on
every process from the same seeds, so all processes agree without communication
beyond gathering the sampled tokens.

Everything that decides the future of a run is in the checkpoint — params, optimizer
state, step, RNG, sampler RNG, reference params, curriculum state, the carried
dynamic-sampling groups — and the data position is the step itself (prompt selection
is a pure function of the step's key and the curriculum state). `--resume` therefore
continues the same run exactly: metrics of a resumed run equal the uninterrupted ones.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from rlx import parallel, sampling
from rlx.curriculum import dump
from rlx.models import lora
from rlx.train import critic as tcritic
from rlx.train import data as tdata
from rlx.train import preference as tpref
from rlx.train import resume as rresume
from rlx.train import sft
from rlx.train.build import build_model, build_sampler_config, build_tokenizer
from rlx.train.build import hf_path as build_hf_path
from rlx.train.checkpoint import CheckpointDamaged, Checkpointer, RestoreError, abstract_like, all_finite
from rlx.train.compile_cache import setup_compile_cache
from rlx.train.config import init_seed
from rlx.train.export import base_is_hf_model, check_lora_base, export_policy, lora_base_meta
from rlx.train.init_from import load_params
from rlx.train.kinds import RunContext, StepInputs, make_kind
from rlx.train.metrics import MetricWriter, read_jsonl
from rlx.train.programs import Programs, critic_trunk, ref_dtype, reference_params
from rlx.train.rollout import generate_round, to_host
from rlx.train.signals import GracefulStop

log = logging.getLogger(__name__)
# Metrics that measure time vary between runs; everything else is deterministic.
TIMING_PREFIXES = ("time/", "throughput/")


class Engine:
    def __init__(self, config, *, resume: bool = False, overwrite: bool = False, allow_changes=()):
        """`resume`: continue the run in `run_dir` from its newest good checkpoint (a fresh
        run when it has none); `overwrite`: replace the run there; `allow_changes`: config
        keys that may differ from the checkpoint's (rlx.train.resume)."""
        self.config = c = config
        parallel.initialize_distributed(c.mesh.coordinator or None,
                                        c.mesh.num_processes if c.mesh.coordinator else None,
                                        c.mesh.process_id if c.mesh.coordinator else None,
                                        auto=bool(c.mesh.auto_distributed))
        self.run_dir = c.run_dir or os.path.join("runs", c.name)
        # Before anything is built or written: what the run directory allows.
        on_disk = rresume.checkpoint_steps(self.run_dir)
        if resume and not on_disk:
            log.warning("--resume: no checkpoint in %s; starting a fresh run", self.run_dir)
            rresume.prepare_fresh(self.run_dir, overwrite=True)
        elif not resume:
            rresume.prepare_fresh(self.run_dir, overwrite)
        self.resume = resume and bool(on_disk)
        rresume.check_writable(os.path.join(self.run_dir, "checkpoints"))     # creates run_dir too
        self.ckpt = Checkpointer(os.path.join(self.run_dir, "checkpoints"), keep=c.checkpoint.keep,
                                 async_save=c.checkpoint.async_save)
        try:
            self._setup(allow_changes)
        except BaseException:
            self.ckpt.close()        # no background save threads left behind a failed start
            raise

    def _setup(self, allow_changes) -> None:
        c = self.config
        self._resume_meta = self._check_resume_config(allow_changes) if self.resume else None
        self.mesh = parallel.make_mesh(c.mesh.shape)
        self.rules = parallel.get_rules(c.mesh.rules)
        _, k_state, k_sampler, self.data_key = jax.random.split(jax.random.key(c.seed), 4)
        k_init = jax.random.split(jax.random.key(init_seed(c)), 4)[0]    # the seed's first key unless init_seed is set

        if c.sampler.temperature == 0 and c.rl.group_size > 1 and not tpref.is_preference(c.rl.loss):
            log.warning("sampler.temperature=0 (greedy) with rl.group_size=%d: the samples of a group are identical, "
                        "so every group has zero reward variance and group advantages are 0", c.rl.group_size)
        setup_compile_cache(c.train.compile_cache)
        self.tokenizer = build_tokenizer(c, self.run_dir)
        self.model_cfg, params = build_model(c, self.tokenizer, k_init)
        self.train_src, self.eval_examples = tdata.build_sources(c.data, init_seed(c))
        self.reward_task = tdata.reward_task(c)
        self.sampler_cfg = build_sampler_config(c, self.tokenizer)
        self.greedy_cfg = build_sampler_config(c, self.tokenizer, greedy=True)
        encode_prompt = tdata.prompt_encoder(self.tokenizer, c.data)
        n_long, n_all = tdata.long_prompts(self.train_src, self.tokenizer, c.sampler.max_prompt_len, encode_prompt)
        if n_long:
            log.warning("sampler.max_prompt_len=%d: %d of %d training prompts (%.1f%%) are longer and will be cut "
                        "to their last %d tokens (raise sampler.max_prompt_len or filter the data; the metric "
                        "prompts/truncated counts them per step)", c.sampler.max_prompt_len, n_long, n_all,
                        100.0 * n_long / n_all, c.sampler.max_prompt_len)
        self.programs = progs = Programs.build(c, self.model_cfg, self.mesh, self.rules)
        self.param_sh = progs.param_sh
        self.ctx = RunContext(config=c, run_dir=self.run_dir, tokenizer=self.tokenizer, model_cfg=self.model_cfg,
                              sampler_cfg=self.sampler_cfg, greedy_cfg=self.greedy_cfg, programs=progs,
                              mesh=self.mesh, rules=self.rules, train_src=self.train_src,
                              reward_task=self.reward_task, sampler_state=sampling.init_state(k_sampler),
                              put=self.put, sharding=self.sharding,
                              encode_prompt=encode_prompt)

        # The base model: loaded, warm-started (init_from, SFT). A LoRA run rebuilds it on
        # resume too (its checkpoints hold the adapters only), so the base is made whenever
        # the checkpoint will not replace it.
        self.kind = make_kind(c, self.ctx)       # rlx.train.kinds: what one step trains on
        self.lora = lora.enabled(self.model_cfg)
        make_base = self.lora or not self.resume
        if c.model.init_from and make_base:
            params = load_params(c.model.init_from, params)
        with self.sharding():
            params = jax.device_put(params, progs.base_param_sh)
            if c.sft.steps and make_base:
                params = sft.warm_start(self.ctx, params, cached_only=self.lora and self.resume,
                                        demos=self.kind.demonstrations)
            if self.lora:
                params = progs.attach(params, jax.random.fold_in(k_init, 1))
        self.base_meta = None
        if self.lora:                  # which frozen base the adapters are trained on
            self.base_meta = lora_base_meta(params, self.model_cfg)
            if self.resume:
                check_lora_base(self._resume_meta, self.base_meta, "--resume")
        self.spec = progs.spec
        self.optimizer = progs.optimizer
        with self.sharding():
            self.state = progs.init_state(params, k_state)
        self.state_sh = progs.state_sh
        self.preference = tpref.is_preference(c.rl.loss)
        self.uses_ref = c.rl.kl_coef > 0 or self.preference
        self.ref_params = None          # a LoRA policy's reference is its base (`reference()`), no copy
        if self.uses_ref and not self.lora:      # stored in the compute dtype (programs.ref_dtype)
            dt = ref_dtype(self.model_cfg)
            self.ref_params = params if all(x.dtype == dt for x in jax.tree.leaves(params)) else jax.jit(
                lambda p: reference_params(p, self.model_cfg), out_shardings=self.param_sh)(params)
        self.critic = None
        if progs.values is not None:
            with self.sharding():
                self.critic = jax.jit(lambda p: tcritic.init_critic(critic_trunk(p, self.model_cfg), progs.base_cfg,
                                                                    progs.critic_optimizer),
                                      out_shardings=progs.critic_sh)(params)
            self._critic_update = progs.critic_update
        self.dump_state = (dump.init(len(self.train_src.sizes), c.data.dump_window)
                           if c.data.curriculum == "dump" else None)
        # Small state lives replicated on the mesh (so checkpoints restore it there).
        rep = parallel.replicated(self.mesh)
        self.sampler_state = jax.device_put(self.sampler_state, rep)
        self.dump_state = None if self.dump_state is None else jax.device_put(self.dump_state, rep)
        self.step = 0

        self._update = progs.update
        self._updates = {"policy": progs.update, "preference": progs.pref_update}
        self.accuracy_before = None
        self.nonfinite_steps = 0               # consecutive steps with a skipped (non-finite) update
        restored = self._restore() if self.resume else None
        wb = None
        if c.log.wandb:
            wb = {"project": c.log.wandb_project, "name": c.name, "mode": c.log.wandb_mode,
                  "config": json.loads(c.to_json_best_effort())}
        self.writer = MetricWriter(self.run_dir, jsonl=c.log.jsonl, tensorboard=c.log.tensorboard,
                                   resume_step=restored, wandb=wb)
        if jax.process_index() == 0:
            with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                f.write(c.to_json_best_effort(indent=2))

    @property
    def sampler_state(self):
        """The sampler's RNG state (held by the run context; every sampling advances it)."""
        return self.ctx.sampler_state

    @sampler_state.setter
    def sampler_state(self, value):
        self.ctx.sampler_state = value

    @property
    def edge_buffer(self):
        """SPO-tree's edge replay buffer (None for other rollout kinds)."""
        return getattr(self.kind, "edge_buffer", None)

    # ------------------------------------------------------------------ placement
    def sharding(self):
        """Context for tracing model code: activations / KV cache constrained by the rules."""
        return parallel.use_rules(self.mesh, self.rules)

    def put(self, x: np.ndarray) -> jax.Array:
        """Host array (identical on every process) -> global array, dim 0 over (data, fsdp)."""
        sh = parallel.batch_sharding(self.mesh, x.ndim, x.shape[0])
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    # ------------------------------------------------------------------ checkpoints
    def reference(self):
        """The reference policy's params (KL, preference losses): a LoRA policy's base
        (the current state's own arrays, adapters off), else the stored copy."""
        return lora.base_of(self.state.params) if self.lora else self.ref_params

    def _ckpt_tree(self):
        """What a checkpoint holds. A LoRA run's train state holds its adapters only (the
        base is rebuilt from the config: model source, init_from, the cached SFT)."""
        state = self.state.replace(params=lora.trainable(self.state.params)) if self.lora else self.state
        tree = {"train": state, "sampler": self.sampler_state}
        if self.ref_params is not None:
            tree["ref_params"] = self.ref_params
        if self.dump_state is not None:
            tree["dump"] = self.dump_state
        if self.critic is not None:
            tree["critic"] = self.critic
        tree.update(self.kind.checkpoint_tree())
        return tree

    def save(self) -> None:
        """Checkpoints the run at this step (never a non-finite policy)."""
        if not all_finite(lora.trainable(self.state.params)):      # a frozen base cannot change
            raise FloatingPointError(f"step {self.step}: the policy parameters are not finite; refusing to save "
                                     f"them over the good checkpoints in {self.ckpt.directory}")
        meta = {"step": self.step, "config": json.loads(self.config.to_json_best_effort()),
                "accuracy_before": self.accuracy_before, "lora_base": self.base_meta, "carry": None,
                **self.kind.checkpoint_meta()}
        self.ckpt.save(self.step, self._ckpt_tree(), meta)
        self._saved_step = self.step

    def _check_resume_config(self, allow) -> dict:
        """The newest readable checkpoint's meta, after checking its config against this
        run's (nothing restored or written yet)."""
        reasons = []
        for step in reversed(self.ckpt.steps()):
            try:
                meta = self.ckpt.read_meta(step)
            except Exception as e:  # noqa: BLE001 - damaged meta: the previous step may do
                reasons.append(f"step {step} ({type(e).__name__}: {' '.join(str(e).split())[:160]})")
                continue
            rresume.check_resume_config(meta.get("config", {}), json.loads(self.config.to_json_best_effort()),
                                        step, allow)
            return meta
        raise RestoreError(f"no checkpoint in {self.ckpt.directory} could be read: " + "; ".join(reasons))

    def _restore(self) -> int:
        def check(tree):
            if not all_finite(tree["train"].params):
                raise CheckpointDamaged("the policy parameters are not finite")

        base_params = self.state.params
        step, tree, meta, damaged = self.ckpt.restore_latest(abstract_like(self._ckpt_tree()), check)
        for s, why in damaged:
            dst = self.ckpt.set_aside(s)
            log.warning("--resume: checkpoint step %d was damaged (%s); moved aside to %s", s, why, dst)
        self.accuracy_before = meta.get("accuracy_before")
        if self.accuracy_before is None:         # checkpoints of older rlx: the logged step-0 eval
            path = os.path.join(self.run_dir, "metrics.jsonl")
            first = [r for r in read_jsonl(path) if r.get("step") == 0] if os.path.exists(path) else []
            self.accuracy_before = first[0].get("eval/accuracy") if first else None
        self.state, self.sampler_state = tree["train"], tree["sampler"]
        if self.lora:                 # the restored adapters on the rebuilt base
            self.state = self.state.replace(params=lora.combine(base_params, self.state.params))
        self.ref_params = tree.get("ref_params", self.ref_params)
        self.dump_state = tree.get("dump", self.dump_state)
        self.critic = tree.get("critic", self.critic)
        self.kind.restore_tree(tree)
        self.kind.restore_meta(meta)
        self.step = int(meta["step"])
        return self.step

    # ------------------------------------------------------------------ one RL step
    def rl_step(self) -> dict:
        """One step: the rollout kind's batch (sample -> reward -> advantage), the update,
        the critic's update, the curriculum's; returns the step's metrics."""
        c = self.config
        t0 = time.perf_counter()
        key = jax.random.fold_in(self.data_key, self.step)
        r = self.kind.collect(StepInputs(params=self.state.params,
                                         reference=self.reference() if self.uses_ref else None,
                                         critic=self.critic, key=key, step=self.step, curriculum=self.dump_state))
        if r.skipped:
            log.warning("step %d: %s; its update is skipped", self.step + 1, r.skipped)
            return {**r.metrics, "time/step": time.perf_counter() - t0}
        with self.sharding():
            t1 = time.perf_counter()
            self.state, upd = self._updates[self.kind.update](self.state, r.batch, *r.update_args)
            if r.critic is not None:
                ckey = jax.random.fold_in(jax.random.fold_in(self.data_key, self.step), 1 << 20)
                self.critic, cmet = self._critic_update(self.critic, ckey, r.batch, *r.critic)
                upd.update(cmet)
            upd = {k: to_host(v) for k, v in upd.items()}
        t_train = time.perf_counter() - t1
        curriculum = self.dump_state is not None and r.curriculum is not None
        if curriculum:
            self.dump_state = dump.update(self.dump_state, *r.curriculum)
        m = dict(r.metrics)
        m.update({k: float(v) for k, v in upd.items()})
        m["time/train"] = t_train
        m["time/step"] = time.perf_counter() - t0
        if r.train_tokens:
            m["throughput/train_tokens_per_s"] = r.train_tokens / max(t_train, 1e-9)
        if curriculum:
            for k, v in dump.metrics(self.dump_state, c.data.dump_c, c.data.dump_tau).items():
                for j, x in enumerate(to_host(v)):
                    m[f"{k}/{j}"] = float(x)
        return m

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, params=None) -> float:
        """Greedy accuracy on the held-out prompts (0 if there are none); the rollout kind's
        own evaluation where it has one (environments: the greedy success rate)."""
        params = self.state.params if params is None else params
        saved = self.sampler_state
        own = self.kind.evaluate(params)
        if own is not None:
            self.sampler_state = saved      # evaluation never advances the training RNG
            return own
        if not self.eval_examples:
            return 0.0
        ids = np.arange(len(self.eval_examples))
        with self.sharding():
            g, _ = generate_round(self.ctx, params, self.eval_examples, ids * 0, ids, 1, self.greedy_cfg, self.put)
        self.sampler_state = saved      # evaluation never advances the training RNG
        return float(g["success"].mean())

    # ------------------------------------------------------------------ the loop
    def run(self, *, stop_after: int | None = None) -> dict:
        """Runs to `train.steps`. `stop_after=n` stops after n steps of this call without
        a final save or evaluation — an interruption, as a crash would (for tests).
        SIGTERM / SIGINT stop it after the current step with a checkpoint (summary
        `stopped`: the signal's name). A resumed run that had finished does nothing."""
        c = self.config
        start = self.step
        done = rresume.read_marker(self.run_dir) if self.resume else None
        if done is not None and done.get("step") == self.step:
            return {"accuracy_before": done.get("accuracy_before"), "accuracy_after": done.get("accuracy_after"),
                    "history": [], "run_dir": self.run_dir, "complete": True}
        if self.accuracy_before is None:
            self.accuracy_before = self.evaluate()
            if start == 0:
                self.writer.write(0, {"eval/accuracy": self.accuracy_before})
        acc0 = self.accuracy_before
        history = []
        self._saved_step = self.step if self.resume else None
        bar = tqdm(total=c.train.steps, initial=start, desc=f"{c.name} ({c.rl.algorithm})",
                   disable=not c.log.progress or jax.process_index() != 0)
        with GracefulStop() as stop:
            while self.step < c.train.steps:
                self._one_step(bar, history)
                if stop.requested():
                    bar.close()
                    if self._saved_step != self.step:
                        self.save()
                    self.ckpt.wait()
                    return {"accuracy_before": acc0, "accuracy_after": None, "history": history,
                            "run_dir": self.run_dir, "stopped": stop.name, "step": self.step}
                if stop_after is not None and self.step - start >= stop_after:
                    bar.close()
                    self.ckpt.wait()
                    return {"accuracy_before": acc0, "accuracy_after": None, "history": history,
                            "run_dir": self.run_dir}
        bar.close()
        acc1 = self.evaluate()
        if self._saved_step != self.step:
            self.save()
        self.ckpt.wait()
        self.writer.write(self.step, {"eval/accuracy_final": acc1})
        if c.checkpoint.export_hf:
            params = jax.tree.map(to_host, self.state.params)
            if jax.process_index() == 0:
                fmt = c.checkpoint.export_format          # run_dir/hf (merged) or run_dir/peft
                export_policy(params, self.model_cfg, self.tokenizer, dict(c.sampler),
                              os.path.join(self.run_dir, "hf" if fmt == "merged" else "peft"), fmt,
                              base_hf_path=build_hf_path(c) if base_is_hf_model(c) else None)
        rresume.write_marker(self.run_dir, {"step": self.step, "accuracy_before": acc0, "accuracy_after": acc1})
        return {"accuracy_before": acc0, "accuracy_after": acc1, "history": history, "run_dir": self.run_dir}

    def _one_step(self, bar, history) -> dict:
        c = self.config
        m = self.rl_step()
        self.step += 1
        if c.train.eval_every and self.step % c.train.eval_every == 0:
            m["eval/accuracy"] = self.evaluate()
        if self.step % c.log.every == 0:
            history.append(self.writer.write(self.step, m))
        self._check_finite(m)
        bar.update(1)
        bar.set_postfix({k: f"{m[k]:.3f}" for k in ("reward/mean", "accuracy", "loss") if k in m},
                        refresh=False)
        if c.checkpoint.interval and self.step % c.checkpoint.interval == 0:
            self.save()
        return m

    def _check_finite(self, m: dict) -> None:
        """Counts steps whose updates were skipped as non-finite; too many in a row stop the run."""
        skipped = m.get("update/skipped", 0.0)
        self.nonfinite_steps = self.nonfinite_steps + 1 if skipped else 0
        limit = self.config.train.max_nonfinite_steps
        if limit and self.nonfinite_steps >= limit:
            raise FloatingPointError(
                f"step {self.step}: {self.nonfinite_steps} consecutive steps with non-finite loss or gradients "
                f"(updates skipped; train.max_nonfinite_steps={limit}); the last good checkpoint is kept in "
                f"{self.ckpt.directory}")

    def close(self) -> None:
        self.ckpt.close()
        self.writer.close()


__all__ = ["Engine", "TIMING_PREFIXES"]
