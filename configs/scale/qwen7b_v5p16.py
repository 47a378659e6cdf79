"""Workload C: GRPO on Qwen2.5-7B, 32 prompts x 16 samples, prompt 1024, completion 4096,
on a TPU v5p-16 (8 chips, 95 GiB HBM each), FSDP over the 8 chips."""

from configs.scale import on_hardware


def get_config():
    return on_hardware("qwen7b_v5p16", "7b", "v5p-16", mesh=(1, 8, 1), prompts=32, group=16, prompt_len=1024,
                       completion_len=4096, minibatches=4, micro_batches=16, forward_rows=16, rows_per_call=128)
