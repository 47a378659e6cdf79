"""SPO-tree at CPU scale: the quickstart model and task, 3-3 trees of 1-token segments."""

from configs import quickstart, spo_tree


def get_config():
    c = quickstart.get_config()
    paper = spo_tree.get_config()
    c.name, c.rl.algorithm, c.rl.estimator, c.rl.estimator_kwargs = "spo_tree_cpu", "spo_tree", "spo_tree", {}
    c.rl.loss_kwargs = dict(paper.rl.loss_kwargs)
    c.rl.kl_coef, c.rl.kl_kind = paper.rl.kl_coef, paper.rl.kl_kind
    c.spo = paper.spo
    c.spo.branching = (3, 3)
    c.spo.segment_len = 1                # answers are 2-3 tokens: one digit per level
    c.spo.train_edges = 64
    c.spo.replay_capacity = 1024
    c.rl.prompts_per_step = 8
    c.rl.minibatches = 2
    c.rl.epochs = 2
    c.train.steps = 60
    c.train.eval_every = 20
    return c
