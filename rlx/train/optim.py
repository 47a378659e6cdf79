"""Optax optimizer from config: (clip by global norm) -> adamw/adam/sgd with a schedule."""

from __future__ import annotations

import optax


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
    """Linear warmup to `lr`, then constant or cosine decay to `end_lr_ratio * lr`."""
    lr, warm = float(cfg.lr), int(cfg.warmup_steps)
    if cfg.schedule == "constant":
        if warm == 0:
            return optax.constant_schedule(lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warm), optax.constant_schedule(lr)], [warm])
    decay = max(int(total_steps), warm + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warm else lr, peak_value=lr, warmup_steps=warm, decay_steps=decay,
        end_value=lr * float(cfg.end_lr_ratio))


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
    """`cfg` is the `optimizer` section of the config; `total_steps` counts optimizer
    updates over the run (RL steps x epochs x minibatches)."""
    sched = make_schedule(cfg, total_steps)
    if cfg.name == "adamw":
        opt = optax.adamw(sched, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.name == "adam":
        opt = optax.adam(sched, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "sgd":
        opt = optax.sgd(sched)
    else:
        raise ValueError(f"config.optimizer.name: unknown optimizer {cfg.name!r}")
    if cfg.max_grad_norm > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), opt)
    return opt
