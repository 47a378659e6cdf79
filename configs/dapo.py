"""DAPO: clip-higher (0.2 / 0.28, dual-clip c = 10), dynamic sampling (drop zero-variance groups and
oversample), token-mean aggregation, overlong reward shaping in tokens, no KL.

As the official recipe (verl `recipe/dapo`, `test_dapo_7b_math.sh`): each generation
round samples 3 x prompts_per_step prompts (`gen_prompt_bsz = train_prompt_bsz * 3`), at
most 10 rounds (`max_num_gen_batches`), keeps the groups whose accuracy varies
(`filter_groups.metric=acc`: the task reward before the overlong penalty) and discards
the kept groups beyond the batch. When the rounds run out the official trainer stops
with an error; rlx skips that step's update with a warning and the metric
`dynamic/skipped` (`rl.allow_partial_batch=True` trains on the partial batch instead;
`rl.dynamic_overflow=recover` carries the overflow into the next batch, Confucius3-Math's
recent sample recovery). Overlong window L_cache = L_max / 5 (4096 of 20480), penalty
factor 1. Sampling temperature 1, top-p 1 (the grpo defaults).
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = c.rl.algorithm = "dapo"
    c.rl.loss_kwargs = {"eps_low": 0.2, "eps_high": 0.28, "dual_clip": 10.0}
    c.rl.agg = "token-mean"
    c.rl.dynamic_sampling = True
    c.rl.gen_batch_multiple = 3
    c.rl.max_sampling_rounds = 10
    c.rl.dynamic_overflow = "discard"
    c.rl.allow_partial_batch = False
    c.rl.overlong_cache = max(1, c.sampler.max_new_tokens // 5)   # DAPO: 4096 of 20480
    c.rl.kl_coef = 0.0
    return c
