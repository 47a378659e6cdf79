"""Workload B: GRPO on Qwen2.5-1.5B, 64 prompts x 16 samples, prompt 512, completion 2048,
on a TPU v4-8 (4 chips, 32 GiB HBM each), FSDP over the 4 chips."""

from configs.scale import on_hardware


def get_config():
    return on_hardware("qwen15b_v4_8", "1.5b", "v4-8", mesh=(1, 4, 1), prompts=64, group=16, prompt_len=512,
                       completion_len=2048, minibatches=4, micro_batches=64, forward_rows=16, rows_per_call=256)
