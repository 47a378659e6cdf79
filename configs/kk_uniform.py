"""GRPO on the published Knights & Knaves puzzles (DUMP's data: one source per N = 3..7),
prompts drawn uniformly over the sources — the baseline of DUMP's curriculum comparison.

Reward: the Logic-RL / DUMP rule (format +-1; answer +2 / -1.5 / -2). Needs a real
model (`--config.model.source=hf --config.model.hf_path=/path/to/Qwen2.5-...`) to learn
anything; the tiny default only exercises the pipeline. Data path:
`--config.data.path=../shared/data/knights_knaves` (default below, relative to the repo).
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = "kk_uniform"
    c.data.task = "kk_files"
    c.data.path = "../shared/data/knights_knaves"
    c.data.levels = (3, 4, 5, 6, 7)
    c.data.template = "think"
    c.data.curriculum = "uniform"
    c.data.eval_prompts = 100
    c.sampler.max_prompt_len = 512
    c.sampler.max_new_tokens = 512
    c.rl.estimator_kwargs = {}
    c.rl.group_size = 8
    c.rl.prompts_per_step = 16
    c.optimizer.lr = 1e-6
    c.rl.kl_coef = 0.001
    c.train.steps = 500
    c.train.eval_every = 50
    return c
