"""Orbax checkpoints: async, atomic, keep-K, with fallback past a damaged latest step.

A checkpoint has two named items (named from the first save on: Orbax's Composite
args work only in a manager that never saved a single unnamed item):
  state  every array of the run — params, optimizer state, step, RNG, reference params,
         curriculum / tracker state — saved with `StandardSave` (shardings restored
         from the abstract tree given at restore time)
  meta   JSON — data-iterator position, the config, anything host-side
Saves are atomic (Orbax writes to a temporary directory and renames it when complete),
so an interrupted save is never listed. A step that is listed but damaged (files
truncated or deleted) fails to restore; `restore_latest` then warns and falls back to
the previous step.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` with rlx's two items."""

    def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                            create=True)
        self._mgr = ocp.CheckpointManager(self.directory, options=opts, item_names=("state", "meta"))

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts saving (asynchronously if configured); returns at once."""
        self._mgr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        out = self._mgr.restore(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """Restores the newest step that restores cleanly; None if there is none.

        `abstract_state` is a pytree of `jax.ShapeDtypeStruct` (with `.sharding`) or of
        arrays, giving the structure, dtypes and target shardings.
        """
        self.wait()
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, abstract_state)
                return step, state, meta
            except Exception as e:  # noqa: BLE001 - any damage means "try the previous one"
                log.warning("checkpoint step %d in %s could not be restored (%s: %s); "
                            "falling back to the previous step", step, self.directory,
                            type(e).__name__, str(e)[:200])
        return None

    def wait(self) -> None:
        self._mgr.wait_until_finished()

    def close(self) -> None:
        self._mgr.wait_until_finished()
        self._mgr.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays: a restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
