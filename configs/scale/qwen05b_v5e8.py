"""Workload A: GRPO on Qwen2.5-0.5B, 64 prompts x 16 samples, prompt 512, completion 1024,
on a TPU v5e-8 (8 chips, 16 GiB HBM each), FSDP over the 8 chips."""

from configs.scale import on_hardware


def get_config():
    return on_hardware("qwen05b_v5e8", "0.5b", "v5e-8", mesh=(1, 8, 1), prompts=64, group=16, prompt_len=512,
                       completion_len=1024, minibatches=4, micro_batches=4, forward_rows=128, rows_per_call=512)
