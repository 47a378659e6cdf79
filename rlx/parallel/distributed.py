"""Multi-process start-up: JAX's own SPMD runtime (`jax.distributed`), nothing home-made.

On a TPU pod slice every worker runs the same command and `jax.distributed.initialize()`
discovers the cluster by itself. On GPU hosts (or for the CPU multi-process test) pass
the coordinator explicitly, either as arguments or through the environment variables
RLX_COORDINATOR (host:port), RLX_NUM_PROCESSES, RLX_PROCESS_ID.
"""

from __future__ import annotations

import os

import jax

_initialized = False


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, auto: bool = False) -> bool:
    """Calls `jax.distributed.initialize` when this is a multi-process run.

    Returns True if the runtime was initialized (now or earlier). With nothing given
    and `auto=False` it does nothing (single process). `auto=True` lets JAX detect a
    TPU pod / SLURM / Open MPI cluster.
    """
    global _initialized
    if _initialized:
        return True
    coordinator = coordinator or os.environ.get("RLX_COORDINATOR")
    if num_processes is None and "RLX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["RLX_NUM_PROCESSES"])
    if process_id is None and "RLX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["RLX_PROCESS_ID"])
    if coordinator is None and not auto:
        return False
    if coordinator is not None and (num_processes is None or process_id is None):
        raise ValueError("a coordinator address needs num_processes and process_id "
                         "(or RLX_NUM_PROCESSES and RLX_PROCESS_ID)")
    # CPU hosts need a collectives backend for cross-process reductions (TPU/GPU have
    # their own); the setting only affects the CPU client.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    _initialized = True
    return True
