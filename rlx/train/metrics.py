"""Metric sinks: JSONL (always machine-readable), TensorBoard, and a tqdm progress bar.

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
                 resume_step: int | None = None):
        """`resume_step`: continuing a run restored at that step — records logged after
        it (by the interrupted run, past its last checkpoint) are dropped, so the file
        reads as one uninterrupted run. The file is rewritten through a temporary file
        and a rename: a crash mid-rewrite leaves the old file whole."""
        self.enabled = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
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
        return m

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


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
