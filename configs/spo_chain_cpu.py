"""SPO-chain at CPU scale: the quickstart model and task, K = 4 continuations, a few minutes."""

from configs import spo_chain
from configs.cpu_scale import on_quickstart


def get_config():
    c = on_quickstart(spo_chain.get_config(), "spo_chain_cpu")
    c.spo.mc_samples = 4
    c.spo.cutpoint_interval = 1          # answers are 2-3 tokens: every low-probability token is a cut
    c.spo.num_cuts = 4
    c.rl.prompts_per_step = 8
    c.train.steps = 60
    c.train.eval_every = 20
    return c
