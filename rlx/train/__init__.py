"""The RL engine: configs, train state, the jitted update, the loop, checkpoints, metrics.

    python -m rlx.train --config=configs/grpo.py [--config.<key>=<value> ...] [--resume]

Modules: config (files, overrides, validation), state (TrainState), optim (optax),
update (epochs x minibatches x micro-batches under one jit), estimate (feeding the
advantage estimators), rollout (generation + rewards), data (sources, prompts),
sft (warm start), engine (the loop), checkpoint (Orbax), metrics (JSONL/TensorBoard).
Submodules import jax-heavy pieces; import them explicitly (`from rlx.train.engine
import Engine`).
"""
