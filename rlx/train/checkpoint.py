"""Orbax checkpoints: async, atomic, keep-K, verified on restore, damaged steps set aside.

A checkpoint has two named items (named from the first save on: Orbax's Composite
args work only in a manager that never saved a single unnamed item):
  state  every array of the run — params, optimizer state, step, RNG, reference params,
         curriculum / tracker state — saved with `StandardSave` (shardings restored
         from the abstract tree given at restore time)
  meta   JSON — data-iterator position, the config, the state's fingerprint, anything
         host-side
Saves are atomic (Orbax writes to a temporary directory and renames it when complete),
so an interrupted save is never listed.

Damage that Orbax does not see: Orbax stores no checksums (its metadata holds shapes and
dtypes only), so a byte flipped inside an array file restores without error. rlx stores
a fingerprint of the state in `meta` — per array, the wrapping uint32 sum of its raw
bits (`fingerprint`, computed on the devices, a few bytes to the host): any single
flipped bit changes it — and `restore_latest` checks it, and the caller's own check
(finite params), after every restore. A step that fails to restore or fails a check is
damaged: `restore_latest` tries the previous one and reports every failure;
`set_aside(step)` renames a damaged step to `<step>.corrupt-<time>` so that a run that
reaches that step again can save it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class CheckpointDamaged(Exception):
    """A restored step failed a check (fingerprint, finite params)."""


class RestoreError(RuntimeError):
    """No checkpoint could be restored; the message names every step tried and why."""


def _words(x):
    """A leaf's raw bits as uint32 words (narrower types zero-extended)."""
    x = jnp.asarray(x)
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype in (jnp.uint4, jnp.int4):       # 4-bit storage (a QLoRA base): the value is the bits
        return x.astype(jnp.uint4).astype(jnp.uint32) if x.dtype == jnp.int4 else x.astype(jnp.uint32)
    size = jnp.dtype(x.dtype).itemsize
    if size == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if size == 2:
        return jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    if size == 1:
        return jax.lax.bitcast_convert_type(x, jnp.uint8).astype(jnp.uint32)
    if size == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)   # [..., 2]
    raise TypeError(f"fingerprint: unsupported dtype {x.dtype}")


@jax.jit
def _fingerprint(tree):
    return [jnp.sum(_words(x), dtype=jnp.uint32) for x in jax.tree.leaves(tree)]


def fingerprint(tree) -> list[int]:
    """Per array of `tree`, the uint32 sum (mod 2^32) of its raw bits, in leaf order."""
    from rlx.train.rollout import to_host
    return [int(to_host(v)) for v in _fingerprint(tree)]


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` with rlx's two items."""

    def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self._keep, self._async = keep, async_save
        self._mgr = self._manager()

    def _manager(self):
        opts = ocp.CheckpointManagerOptions(max_to_keep=self._keep, enable_async_checkpointing=self._async,
                                            create=True)
        return ocp.CheckpointManager(self.directory, options=opts, item_names=("state", "meta"))

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts saving (asynchronously if configured); returns at once. The state's
        fingerprint is added to `meta`."""
        meta = dict(meta, fingerprint=fingerprint(state))
        self._mgr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def read_meta(self, step: int) -> dict:
        return self._mgr.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        out = self._mgr.restore(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def restore_latest(self, abstract_state: Any, check: Callable[[Any], None] | None = None,
                       ) -> tuple[int, Any, dict, list[tuple[int, str]]] | None:
        """Restores the newest step that restores cleanly and passes the checks.

        `abstract_state` is a pytree of `jax.ShapeDtypeStruct` (with `.sharding`) or of
        arrays, giving the structure, dtypes and target shardings; `check(state)` may
        raise `CheckpointDamaged`. Returns (step, state, meta, [(newer damaged step,
        reason), ...]); None when there is no step at all; raises RestoreError naming
        every step and its failure when steps exist but none restores.
        """
        self.wait()
        failures: list[tuple[int, str]] = []
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, abstract_state)
                want = meta.get("fingerprint")
                if want is not None and fingerprint(state) != [int(v) for v in want]:
                    raise CheckpointDamaged("array contents differ from their fingerprint at save time")
                if check is not None:
                    check(state)
                for s, why in failures:
                    log.warning("checkpoint step %d in %s is damaged (%s); restored step %d instead",
                                s, self.directory, why, step)
                return step, state, meta, failures
            except Exception as e:  # noqa: BLE001 - any failure means "try the previous one"
                failures.append((step, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"))
        if failures:
            raise RestoreError(f"no checkpoint in {self.directory} could be restored: "
                               + "; ".join(f"step {s} ({why})" for s, why in failures))
        return None

    def set_aside(self, step: int) -> str:
        """Renames a damaged step's directory to `<step>.corrupt-<time>` (kept for
        inspection, no longer a step); returns the new path."""
        self.wait()
        src = os.path.join(self.directory, str(int(step)))
        dst = f"{src}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0 and os.path.exists(src):
            os.rename(src, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"rlx_set_aside_{step}")
        self._mgr.close()
        self._mgr = self._manager()
        return dst

    def wait(self) -> None:
        self._mgr.wait_until_finished()

    def close(self) -> None:
        self._mgr.wait_until_finished()
        self._mgr.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays: a restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def all_finite(tree) -> bool:
    """True if every floating-point array of `tree` is finite (computed on the devices)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    if not leaves:
        return True
    return bool(np.asarray(jax.device_get(_finite(leaves))))


@jax.jit
def _finite(leaves):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))
