"""DAPO: clip-higher (0.2 / 0.28), dynamic sampling (drop zero-variance groups and
oversample), token-mean aggregation, overlong reward shaping in tokens, no KL."""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "dapo"
    c.rl.loss_kwargs = {"eps_low": 0.2, "eps_high": 0.28}
    c.rl.agg = "token-mean"
    c.rl.dynamic_sampling = True
    c.rl.max_sampling_rounds = 3
    c.rl.overlong_cache = max(1, c.sampler.max_new_tokens // 4)   # DAPO: 4096 of 20480
    c.rl.kl_coef = 0.0
    return c
