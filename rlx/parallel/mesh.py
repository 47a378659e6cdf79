"""Device meshes from config: axes (`data`, `fsdp`, `tensor`).

rlx uses `jax.sharding.Mesh` with Auto axis types (the classic `jit` + `NamedSharding`
programming model): shardings are annotated at jit boundaries and on activations via
logical-axis rules (`rlx.parallel.rules`), and XLA's SPMD partitioner inserts the
collectives. The same code runs on 1 device, 8 virtual CPU devices, a GPU host or a
multi-host TPU slice (after `rlx.parallel.initialize_distributed`).

Axis meaning:
  data    pure data parallelism (params replicated across it)
  fsdp    data parallelism with params/optimizer state sharded across it (ZeRO-3)
  tensor  tensor (model) parallelism: heads / MLP / vocabulary sharded across it
The batch dimension is sharded over ("data", "fsdp").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
    """Replaces a single -1 in `shape` by what makes the product `num_devices`."""
    shape = [int(s) for s in shape]
    if len(shape) != len(AXES):
        raise ValueError(f"mesh.shape must have {len(AXES)} entries {AXES}, got {shape}")
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"mesh.shape: positive sizes and at most one -1 expected, got {shape}")
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if num_devices % rest:
            raise ValueError(f"mesh.shape {shape}: {num_devices} devices are not divisible by {rest}")
        shape[shape.index(-1)] = num_devices // rest
    if math.prod(shape) != num_devices:
        raise ValueError(f"mesh.shape {tuple(shape)} needs {math.prod(shape)} devices, "
                         f"but {num_devices} are available")
    return tuple(shape)


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes).

    A shape without -1 whose size is smaller than the number of devices uses the first
    devices only (e.g. (1, 1, 1): a one-device run on a multi-device host).

    On TPU/GPU the device order comes from `mesh_utils.create_device_mesh`, which puts
    the innermost axis (tensor) on the fastest interconnect; on CPU it is the plain order.
    """
    devices = list(jax.devices() if devices is None else devices)
    if -1 not in shape and 0 < math.prod(shape) < len(devices):
        devices = devices[:math.prod(shape)]
    shape = resolve_shape(shape, len(devices))
    arr = None
    if devices[0].platform != "cpu":
        try:
            from jax.experimental import mesh_utils
            arr = mesh_utils.create_device_mesh(shape, devices=devices)
        except Exception:  # noqa: BLE001 - unusual topologies fall back to plain order
            arr = None
    if arr is None:
        arr = np.asarray(devices, dtype=object).reshape(shape)
    return Mesh(arr, AXES)
