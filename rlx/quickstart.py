"""`make demo`: the default experiment.

Until the RL engine lands (issues [7/9], [8/9]) this is the most complete end-to-end
loop rlx has: a tabular softmax policy over a tiny vocabulary answers "which token is
the answer to prompt p?", G samples per prompt are drawn, rewarded (1 if right),
turned into group-normalized advantages with `rlx.ops.group_stats`, and the policy is
updated by the policy gradient of the float32 log-probs from `rlx.ops`. Accuracy is
printed before and after.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from tqdm import trange

from rlx import ops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    P, G, V = args.prompts, args.group_size, args.vocab
    answers = jnp.arange(P) % V

    def accuracy(logits):
        return float(jnp.mean(jnp.argmax(logits, -1) == answers))

    @jax.jit
    def step(logits, key):
        tokens = jax.random.categorical(key, logits[:, None, :], shape=(P, G))      # [P, G]
        rewards = (tokens == answers[:, None]).astype(jnp.float32)
        stats = ops.group_stats(rewards, ddof=1)
        adv = (rewards - stats.mean[:, None]) / (stats.std[:, None] + 1e-6)

        def loss(lg):
            lp = ops.logprobs_from_logits(jnp.broadcast_to(lg[:, None, :], (P, G, V)), tokens)
            return -jnp.mean(lp * adv)

        return logits - args.lr * jax.grad(loss)(logits), jnp.mean(rewards)

    logits = jnp.zeros((P, V))
    key = jax.random.key(args.seed)
    before = accuracy(logits + jax.random.normal(jax.random.key(args.seed + 1), logits.shape) * 1e-3)
    bar = trange(args.steps, desc="group-normalized policy gradient")
    for _ in bar:
        key, sub = jax.random.split(key)
        logits, reward = step(logits, sub)
        bar.set_postfix(reward=f"{float(reward):.3f}", refresh=False)
    after = accuracy(logits)
    print(f"accuracy before: {before:.3f}  after: {after:.3f}")
    return before, after


if __name__ == "__main__":
    main()
