"""Workload A: GRPO on Qwen2.5-0.5B, 64 prompts x 16 samples, prompt 512, completion 1024,
on a TPU v5e-8 (8 chips, 16 GiB HBM each), FSDP over the 8 chips."""

from configs.scale import on_hardware


def get_config():
    c = on_hardware("qwen05b_v5e8", "0.5b", "v5e-8", mesh=(1, 8, 1), prompts=64, group=16, prompt_len=512,
                   completion_len=1024, minibatches=4, micro_batches=4, forward_rows=128, rows_per_call=512)
    # Decode with the MLP and vocabulary sharded over the 8 chips (rlx.sampling.decode_sharding):
    # rlx.plan sampler call 20.8 -> 18.7 GB accessed and peak 2.34 -> 1.72 GiB per chip vs the
    # training (FSDP) layout; paged decode step 5.1 -> 1.5 GB.
    c.sampler.decode_sharding = "tensor"
    return c
