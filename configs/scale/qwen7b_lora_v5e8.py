"""Workload C with LoRA: GRPO on Qwen2.5-7B, 32 prompts x 16 samples, prompt 1024,
completion 4096 — on a TPU v5e-8 (8 chips, 16 GiB HBM each) instead of C's v5p-16.

LoRA rank 16 on every linear layer (TRL's "LoRA without regret" recipe: all of
q,k,v,o,gate,up,down; lr 2e-5, in its 1e-5 ... 5e-5 range for GRPO), alpha 32. The base is
frozen in bfloat16 (no float32 master copy, no Adam moments, no separate reference copy:
the reference is the base with the adapters off), so what the 95 GiB chips of C held for
the full fine-tune's optimizer no longer exists. Weights at run time from
--config.model.hf_path (a local Qwen2.5-7B directory).
"""

from configs.scale import on_hardware


def get_config():
    c = on_hardware("qwen7b_lora_v5e8", "7b", "v5e-8", mesh=(1, 8, 1), prompts=32, group=16, prompt_len=1024,
                    completion_len=4096, minibatches=4, micro_batches=16, forward_rows=8, rows_per_call=64)
    c.model.lora.rank = 16
    c.model.lora.alpha = 32.0
    c.model.lora.targets = "q,k,v,o,gate,up,down"
    c.optimizer.lr = 2e-5
    return c
