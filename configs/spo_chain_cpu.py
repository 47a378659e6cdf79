"""SPO-chain at CPU scale: the quickstart model and task, K = 4 continuations, a few minutes."""

from configs import quickstart, spo_chain


def get_config():
    c = quickstart.get_config()
    paper = spo_chain.get_config()
    c.name, c.rl.algorithm, c.rl.estimator, c.rl.estimator_kwargs = "spo_chain_cpu", "spo_chain", "spo_chain", {}
    c.rl.loss_kwargs = dict(paper.rl.loss_kwargs)
    c.rl.kl_coef, c.rl.kl_kind = paper.rl.kl_coef, paper.rl.kl_kind
    c.spo = paper.spo
    c.spo.mc_samples = 4
    c.spo.cutpoint_interval = 1          # answers are 2-3 tokens: every low-probability token is a cut
    c.spo.num_cuts = 4
    c.rl.prompts_per_step = 8
    c.train.steps = 60
    c.train.eval_every = 20
    return c
