"""Metric sinks: JSONL (always machine-readable), TensorBoard, Weights & Biases, and a
tqdm progress bar.

Weights & Biases (`log.wandb=True`; `pip install wandb`, not a dependency of rlx):
`wandb.init(project=log.wandb_project, name=<run name>, dir=<run dir>, mode=log.wandb_mode,
config=<the run's config>, id=<the run's own id>, resume="allow")` — mode "offline" by
default (no network: `wandb sync <run dir>/wandb/offline-run-*` uploads later), "online"
to stream. The id is kept in `<run dir>/wandb_id`, so `--resume` continues the same W&B run.

One `MetricWriter` per run; `write(step, metrics)` takes a flat dict of Python or
numpy scalars. Only process 0 writes files in a multi-process run.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

log = logging.getLogger(__name__)


def to_python(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Host scalars: jax/numpy 0-d arrays -> float (ints stay ints)."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(jax.device_get(v))
        if v.size != 1:
            raise ValueError(f"metric {k!r} is not a scalar (shape {v.shape})")
        v = v.reshape(()).item()
        out[k] = v if isinstance(v, (int, bool)) else float(v)
    return out


class MetricWriter:
    def __init__(self, run_dir: str, *, jsonl: bool = True, tensorboard: bool = False,
                 resume_step: int | None = None, wandb: Mapping[str, Any] | None = None):
        """`resume_step`: continuing a run restored at that step — records logged after
        it (by the interrupted run, past its last checkpoint) are dropped, so the file
        reads as one uninterrupted run. The file is rewritten through a temporary file
        and a rename: a crash mid-rewrite leaves the old file whole. `wandb`: keyword
        settings of the W&B run (project, name, mode, config), None = off."""
        self.enabled = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if not self.enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        if jsonl:
            self.path = os.path.join(run_dir, "metrics.jsonl")
            kept = []
            if resume_step is not None and os.path.exists(self.path):
                kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                for r in kept:
                    f.write(json.dumps(r, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self._jsonl = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(run_dir, "tb"))
        if wandb is not None:
            self._wandb = _wandb_run(run_dir, dict(wandb))

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        m = to_python(metrics)
        if not self.enabled:
            return m
        if self._jsonl is not None:
            rec = {"step": int(step)}
            rec.update({k: (v if math.isfinite(v) else None) if isinstance(v, float) else v
                        for k, v in m.items()})
            self._jsonl.write(json.dumps(rec, sort_keys=True) + "\n")
            self._jsonl.flush()
        if self._tb is not None:
            for k, v in m.items():
                self._tb.add_scalar(k, v, int(step))
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in m.items() if not (isinstance(v, float) and not math.isfinite(v))},
                            step=int(step))
        return m

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def _wandb_run(run_dir: str, settings: dict):
    """The W&B run of `run_dir` (see the module docstring)."""
    try:
        import wandb
    except ImportError:
        raise ImportError("config.log.wandb=True needs the wandb package: pip install wandb") from None
    id_path = os.path.join(run_dir, "wandb_id")
    if os.path.exists(id_path):
        with open(id_path, encoding="utf-8") as f:
            run_id = f.read().strip()
    else:
        run_id = wandb.util.generate_id()
        with open(id_path, "w", encoding="utf-8") as f:
            f.write(run_id)
    return wandb.init(dir=run_dir, id=run_id, resume="allow", **settings)


def read_jsonl(path: str) -> list[dict]:
    """The records of a metrics file. A last line cut off mid-write (a crash) is skipped
    with a warning; a damaged line elsewhere raises, naming the file and line."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == last:
                log.warning("%s:%d: skipping a partial last record (%s)", path, i + 1, e)
                continue
            raise ValueError(f"{path}:{i + 1}: not a JSON record ({e})") from None
    return out
