"""The plain-Python data path: random-access sources and checkpointable batch iterators.

Sources (random access: `len(src)` where finite, `src[i]` -> example dict):
  * `GeneratedSource(task, level, seed, size=None)`: example i = the task generator's
    example (seed, level, i). Infinite when size is None.
  * `ListSource(examples)`: loaded data (K&K JSONL, GSM8K JSONL).
  * a TFDS data source wrapped by `rlx.data.tfds_builders.TfdsSource`.
  * `MultiSource(sources)`: several sources side by side (one per data distribution,
    the DUMP setup); `sizes` feeds `rlx.curriculum.dump.sample`, and
    `lookup(source_ids, example_ids)` turns its draws into examples.

Iterators yield lists of examples and expose `state() -> dict[str, int]` and
`restore(state)`. Every batch is a pure function of (seed, state) — the permutation of
epoch e is drawn from `np.random.default_rng([seed, e])`, a mixture draw at step s from
`default_rng([seed, s])` — so saving the few integers of `state()` (with the Orbax
checkpoint, e.g. as int64 arrays) and restoring them resumes at exactly the same batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rlx.data import arithmetic, countdown, knights_knaves

GENERATORS: dict[str, Callable[..., dict]] = {
    "arithmetic": arithmetic.generate_example,
    "countdown": countdown.generate_example,
    "knights_knaves": knights_knaves.generate_example,
}


class GeneratedSource:
    """Example i is `GENERATORS[task](seed, level, offset + i)`; `size=None` is infinite."""

    def __init__(self, task: str, level: int, seed: int, size: int | None = None, *,
                 template: str | None = None, offset: int = 0):
        if task not in GENERATORS:
            raise ValueError(f"task: unknown generated task {task!r}; known: {', '.join(sorted(GENERATORS))}")
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0 or None, got {size}")
        self.task, self.level, self.seed, self.size, self.offset = task, level, seed, size, offset
        self._kw = {} if template is None else {"template": template}
        GENERATORS[task](seed, level, offset, **self._kw)   # validates level / template now

    def __len__(self) -> int:
        if self.size is None:
            raise TypeError(f"GeneratedSource({self.task}, level={self.level}) is infinite")
        return self.size

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if i < 0 or (self.size is not None and i >= self.size):
            raise IndexError(f"index {i} out of range for a source of size {self.size}")
        return GENERATORS[self.task](self.seed, self.level, self.offset + i, **self._kw)


class ListSource:
    """A list of examples as a source."""

    def __init__(self, examples: Sequence[dict]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[int(i)]


class MultiSource:
    """Several finite sources, indexed (source_id, example_id)."""

    def __init__(self, sources: Sequence, names: Sequence[str] | None = None):
        if not sources:
            raise ValueError("sources: need at least one source")
        self.sources = list(sources)
        self.sizes = np.array([len(s) for s in self.sources], np.int32)
        if np.any(self.sizes == 0):
            raise ValueError(f"sources: every source needs at least one example, sizes {self.sizes.tolist()}")
        self.names = list(names) if names is not None else [str(j) for j in range(len(self.sources))]
        if len(self.names) != len(self.sources):
            raise ValueError(f"names: {len(self.names)} names for {len(self.sources)} sources")

    def __len__(self) -> int:
        return len(self.sources)

    def lookup(self, source_ids, example_ids) -> list[dict]:
        """Examples for parallel arrays of source ids and example ids; adds `source_id`."""
        src, idx = np.asarray(source_ids).reshape(-1), np.asarray(example_ids).reshape(-1)
        if src.shape != idx.shape:
            raise ValueError(f"source_ids {src.shape} and example_ids {idx.shape} differ in shape")
        out = []
        for j, i in zip(src.tolist(), idx.tolist()):
            if not 0 <= j < len(self.sources) or not 0 <= i < self.sizes[j]:
                raise IndexError(f"(source {j}, example {i}) out of range; sizes {self.sizes.tolist()}")
            out.append({**self.sources[j][i], "source_id": j})
        return out


class EpochIterator:
    """Batches from a finite source, reshuffled every epoch; batches run across epoch ends.

    The stream is the concatenation of per-epoch permutations (identity if not shuffle).
    `num_epochs=None` is infinite; otherwise iteration stops after that many epochs (the
    last short batch is dropped if `drop_remainder`). State: {"epoch", "position"}.
    """

    def __init__(self, source, batch_size: int, *, seed: int, shuffle: bool = True,
                 num_epochs: int | None = None, drop_remainder: bool = False):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.shuffle, self.num_epochs, self.drop_remainder = shuffle, num_epochs, drop_remainder
        self.n = len(source)
        if self.n == 0:
            raise ValueError("source is empty")
        self.epoch, self.position = 0, 0
        self._perm_epoch, self._perm = -1, None

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle
                          else np.arange(self.n))
            self._perm_epoch = epoch
        return self._perm

    def state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "position": int(self.position)}

    def restore(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < self.n:
            raise ValueError(f"state: invalid iterator position {state!r} for a source of size {self.n}")
        self.epoch, self.position = epoch, position

    def __iter__(self):
        return self

    def __next__(self) -> list[dict]:
        ids = []
        while len(ids) < self.batch_size:
            if self.num_epochs is not None and self.epoch >= self.num_epochs:
                break
            take = min(self.batch_size - len(ids), self.n - self.position)
            ids.extend(self._order(self.epoch)[self.position:self.position + take].tolist())
            self.position += take
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
        if not ids or (self.drop_remainder and len(ids) < self.batch_size):
            raise StopIteration
        return [self.source[i] for i in ids]


class StreamIterator:
    """Batches of consecutive examples i, i+1, ... of a (possibly infinite) source. State: {"index"}."""

    def __init__(self, source, batch_size: int, *, start: int = 0):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.source, self.batch_size, self.index = source, batch_size, start

    def state(self) -> dict[str, int]:
        return {"index": int(self.index)}

    def restore(self, state: dict) -> None:
        if int(state["index"]) < 0:
            raise ValueError(f"state: invalid index {state!r}")
        self.index = int(state["index"])

    def __iter__(self):
        return self

    def __next__(self) -> list[dict]:
        try:
            size = len(self.source)
        except TypeError:
            size = None
        stop = self.index + self.batch_size if size is None else min(self.index + self.batch_size, size)
        if stop <= self.index:
            raise StopIteration
        batch = [self.source[i] for i in range(self.index, stop)]
        self.index = stop
        return batch


class MixtureIterator:
    """Batches drawn from a MultiSource with fixed source weights (uniform by default).

    Each example: a source j ~ weights, then an example uniformly within it — the
    non-adaptive baseline of DUMP's schedule (the adaptive one is
    `rlx.curriculum.dump.sample`). Batch s depends only on (seed, s). State: {"step"}.
    """

    def __init__(self, multi: MultiSource, batch_size: int, *, seed: int, weights=None):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        w = np.ones(len(multi)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(multi),) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError(f"weights: need {len(multi)} non-negative finite weights with a positive sum")
        self.multi, self.batch_size, self.seed, self.p = multi, batch_size, seed, w / w.sum()
        self.step = 0

    def state(self) -> dict[str, int]:
        return {"step": int(self.step)}

    def restore(self, state: dict) -> None:
        self.step = int(state["step"])

    def __iter__(self):
        return self

    def __next__(self) -> list[dict]:
        rng = np.random.default_rng([self.seed, self.step])
        src = rng.choice(len(self.multi), size=self.batch_size, p=self.p)
        idx = np.floor(rng.random(self.batch_size) * self.multi.sizes[src]).astype(np.int64)
        self.step += 1
        return self.multi.lookup(src, idx)
