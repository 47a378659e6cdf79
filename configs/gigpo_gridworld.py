"""GiGPO on the text gridworld (FrozenLake-style 4x4 maps), a tiny model, CPU, minutes.

Paper: "Group-in-Group Policy Optimization for LLM Agent Training" (GiGPO; official code
verl-agent). A random tiny Qwen2-style model (rlx's character tokenizer) is warm-started
on demonstrations of a shortest-path expert (with random moves mixed in), deliberately
short (60 steps: its greedy policy walks down/right blindly and rarely arrives). Each
observation is the map and a line of the four cells next to the agent (up, down, left,
right; `#` off the map). GiGPO then trains it on 8 maps x 8 episodes per step: the
episode-level advantage (R - mean over the task's episodes, "mean_norm") plus the
step-level advantage over anchor groups (turns taken in the same cell of the same map),
gamma 0.95, omega 1, the invalid-action penalty 0.1 — verl-agent's defaults. Success
(reaching G, greedy) on 64 held-out maps is logged at step 0 (`eval/accuracy`), every
20 steps and at the end (`eval/accuracy_final`). The baseline with the same everything
but episode-level GRPO advantages is configs/grpo_gridworld.py.
"""

from configs import grpo


def get_config():
    c = grpo.get_config()
    c.name = "gigpo_gridworld"
    c.rl.algorithm = "gigpo"
    c.rl.estimator = "gigpo"
    c.rl.estimator_kwargs = {"gamma": 0.95, "step_weight": 1.0, "mode": "mean_norm"}
    c.env.name = "gridworld"
    c.env.task_kwargs = {"size": 4, "hole_prob": 0.25, "hint": False, "neighbors": True}
    c.env.train_tasks = 2000
    c.env.eval_tasks = 64
    c.env.max_turns = 8                   # shortest paths take 6 moves
    c.env.max_turn_tokens = 6             # "right" + EOS
    c.env.max_prompt_tokens = 28          # BOS + the 4x4 map and the neighbours' line (24 characters)
    c.env.max_total_tokens = 248          # 8 turns x (6 + 25)
    c.env.workers = 2
    c.model.hidden_size = 128
    c.model.num_layers = 4
    c.model.num_heads = 4
    c.model.num_kv_heads = 2
    c.model.intermediate_size = 256
    c.model.unroll_layers = True          # CPU: an unrolled layer loop has a faster backward
    c.rl.pad_multiple = 32
    c.sampler.temperature = 1.0
    c.sft.steps = 60
    c.sft.batch_size = 64
    c.sft.lr = 3e-3
    c.rl.group_size = 8
    c.rl.prompts_per_step = 8
    c.rl.epochs = 2                       # 2 passes x 4 minibatches = 8 updates per batch
    c.rl.minibatches = 4
    c.optimizer.lr = 3e-4
    c.optimizer.schedule = "constant"
    c.optimizer.weight_decay = 0.0
    c.train.steps = 40
    c.train.eval_every = 20
    c.checkpoint.interval = 20
    return c
