"""Real workloads: GRPO on Qwen2.5 shapes at real batch sizes, sized for a named TPU topology.

Each file forks configs/grpo.py through `on_hardware` and names its topology
(`plan_topology`), so `python -m rlx.plan --config=configs/scale/<file>.py` checks it fits
without the hardware (every config here must print `plan: fits`). The architecture is
described here (the public `config.json` numbers of each Qwen2.5 size), so planning
needs no weights; a run reads them from a local HF directory:

    python -m rlx.train --config=configs/scale/qwen05b_v5e8.py --config.model.hf_path=/path/to/Qwen2.5-0.5B

(the HF config.json must agree with the fields below: a mismatch fails at start-up,
naming the key). The task is Knights & Knaves (the DUMP paper's, N = 3..7 people,
<think>/<answer> template) with the model's own tokenizer.

Memory knobs (what `rlx.plan` measures): `rl.minibatches` x `rl.micro_batches` set the
rows per gradient micro-batch, `train.forward_rows` the rows per chunk of the reference
log-prob forward, `sampler.rows_per_call` the rows (and so the KV cache) per sampler call,
`model.remat` the activations kept for the backward pass.
"""

from configs import grpo

QWEN25 = {  # Qwen2.5 config.json values (hidden, intermediate, layers, heads, kv heads, vocab, tied)
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2,
                 vocab_size=151936, tie_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_layers=28, num_heads=12, num_kv_heads=2,
                 vocab_size=151936, tie_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_layers=28, num_heads=28, num_kv_heads=4,
               vocab_size=152064, tie_embeddings=False),
}


def on_hardware(name: str, size: str, topology: str, *, mesh, prompts: int, group: int, prompt_len: int,
                completion_len: int, minibatches: int, micro_batches: int, forward_rows: int,
                rows_per_call: int):
    c = grpo.get_config()
    c.name = name
    c.plan_topology = topology
    c.model.source = "hf"                      # weights: --config.model.hf_path at run time
    for k, v in QWEN25[size].items():
        c.model[k] = v
    c.model.family = "qwen2"
    c.model.rope_theta = 1000000.0
    c.model.rms_norm_eps = 1e-6
    c.model.dtype = "auto"                     # bfloat16 compute + KV cache on TPU/GPU
    c.model.param_dtype = "float32"            # float32 master weights and Adam moments
    c.model.remat = "full"
    c.model.vocab_chunk = -1                   # auto: 8192-column chunks for the 152k vocabulary
    c.mesh.shape = mesh
    c.mesh.rules = "fsdp"
    c.sampler.max_prompt_len = prompt_len
    c.sampler.max_new_tokens = completion_len
    c.sampler.temperature = 1.0
    c.sampler.rows_per_call = rows_per_call
    c.rl.prompts_per_step = prompts
    c.rl.group_size = group
    c.rl.kl_coef = 0.001                       # KL to the reference (stored in bfloat16), k3 in the loss
    c.rl.kl_kind = "k3"
    c.rl.epochs = 1
    c.rl.minibatches = minibatches
    c.rl.micro_batches = micro_batches
    c.train.forward_rows = forward_rows
    c.optimizer.name = "adam"
    c.optimizer.lr = 1e-6
    c.optimizer.schedule = "constant"
    c.optimizer.warmup_steps = 10
    c.data.task = "knights_knaves"
    c.data.levels = (3, 4, 5, 6, 7)
    c.data.template = "think"
    c.data.eval_prompts = 256
    c.sft.steps = 0
    c.train.steps = 200
    c.train.eval_every = 25
    c.checkpoint.interval = 25
    c.log.progress = True
    return c
