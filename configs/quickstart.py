"""The default experiment (`make demo`): GRPO on 2-digit arithmetic with a tiny model, CPU, minutes.

A random tiny Qwen2-style model (2 layers, width 64, rlx's character tokenizer) is
warm-started by a short supervised phase on generated demonstrations ("12+7=" -> "19"),
deliberately short so that it is right only sometimes; GRPO then raises its greedy
accuracy on held-out problems. Accuracy before and after RL is printed, the learning
curves are drawn to runs/quickstart/curves.png.
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = "quickstart"
    c.data.task = "arithmetic"
    c.data.levels = (1,)
    c.data.template = "compact"
    c.data.eval_prompts = 128
    c.model.hidden_size = 64
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.num_kv_heads = 2
    c.model.intermediate_size = 128
    c.model.unroll_layers = True          # CPU: an unrolled layer loop has a faster backward
    c.rl.pad_multiple = 8                 # CPU: fine-grained trimming (compiles are cheap here)
    c.sampler.max_prompt_len = 8
    c.sampler.max_new_tokens = 4
    c.sampler.temperature = 1.0
    c.sft.steps = 60
    c.sft.batch_size = 64
    c.sft.lr = 3e-3
    c.rl.group_size = 8
    c.rl.prompts_per_step = 16
    c.rl.epochs = 2                       # 2 passes x 4 minibatches = 8 updates per batch
    c.rl.minibatches = 4
    c.optimizer.lr = 2e-4
    c.optimizer.schedule = "constant"
    c.optimizer.weight_decay = 0.0
    c.train.steps = 200
    c.train.eval_every = 25
    c.checkpoint.interval = 50
    return c
