"""One process of the 2-process x 4-device run of tests/test_multiprocess.py.

    python multiprocess_worker.py PROCESS_ID PORT RUN_DIR

Runs the small GRPO config on the 8-device global mesh: 2 steps, interruption,
checkpoint at step 2 (Orbax, both processes), resume from it, 2 more steps. Process 0
writes the final params to RUN_DIR/params.npz.
"""

import os
import sys

MP_OVERRIDES = ("train.steps=4", "checkpoint.interval=2", "mesh.shape=(2, 4, 1)", "data.eval_prompts=0",
                "sft.steps=20")


def main(pid: int, port: str, run_dir: str) -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 --xla_llvm_disable_expensive_passes=true"
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["RLX_COORDINATOR"] = f"127.0.0.1:{port}"
    os.environ["RLX_NUM_PROCESSES"] = "2"
    os.environ["RLX_PROCESS_ID"] = str(pid)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import numpy as np

    cache = os.environ.get("RLX_TEST_COMPILE_CACHE")
    if cache:  # share the test session's persistent compilation cache
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

    from rlx import parallel
    parallel.initialize_distributed()
    assert jax.process_count() == 2 and jax.device_count() == 8, (jax.process_count(), jax.device_count())

    from test_engine import small_config

    from rlx.train.engine import Engine
    from rlx.train.rollout import to_host

    def run(resume, stop_after=None):
        e = Engine(small_config(run_dir, *MP_OVERRIDES), resume=resume)
        try:
            e.run(stop_after=stop_after)
        finally:
            e.close()
        return e

    run(False, stop_after=2)
    e = run(True)
    params = jax.tree.map(to_host, e.state.params)
    if pid == 0:
        flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
        np.savez(os.path.join(run_dir, "params.npz"), **flat)
    print(f"process {pid} done at step {e.step}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
