"""Reward checkers in worker processes with a hard deadline, in parallel.

Why processes: a checker runs on untrusted model text. In the calling process a time
budget can only be a `SIGALRM` exception — it works in the main thread only, a checker
that catches exceptions swallows it, and a single long C call (one regex match) is never
interrupted. A worker process that overruns its deadline is killed (SIGKILL) and
replaced, whatever it was doing; its completion is a timeout. Several workers score
completions in parallel, so hung completions cost one deadline per worker round, not
one each. The deadline runs from the moment a worker has the chunk in hand: a worker
acknowledges each chunk once it has unpickled it, so process start-up and importing the
checker's module (seconds on a loaded machine) never count against a completion; a
worker that does not acknowledge within `STARTUP_S` is killed like a hung one.

Workers come from a `forkserver` (a clean, single-threaded process that has imported
`rlx.rewards`; the engine's own process has XLA threads, which `fork` must not copy).
A task's `TaskSpec` (its checker function) is pickled by reference, so checkers must be
importable module-level functions; a task whose spec cannot be pickled (a lambda, a
local function) is scored in the calling process (`CheckerPool.can_run`). Workers ignore
SIGINT / SIGTERM (the engine handles those), and any BaseException inside a checker
(SystemExit included) is a failure of that completion, not of the run.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import pickle
import signal
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import wait

_CTX = None
STARTUP_S = 60.0      # a worker must start and unpickle its chunk within this (or the deadline, if longer)


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["rlx.rewards", "math_verify"])   # (a missing module is skipped)
    return _CTX


def _worker(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        ids, spec, texts, examples = msg
        if spec.warmup is not None:                             # before the deadlines: heavy imports
            try:
                spec.warmup()
            except BaseException:  # noqa: BLE001, S110 - the checker then fails on its own, counted
                pass
        conn.send((None, "start", None))                        # the completions' deadlines start now
        for i, text, example in zip(ids, texts, examples):     # one reply per completion, as it is scored
            try:
                reply = (i, "ok", [float(v) for v in spec.checker(text, example)])
            except BaseException as e:  # noqa: BLE001 - SystemExit / KeyboardInterrupt from a checker included
                reply = (i, "error", f"{type(e).__name__}: {e}"[:500])
            conn.send(reply)


class _Proc:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.task: list[int] = []
        self.started = 0.0
        self.acked = False      # the worker has unpickled its chunk (its deadlines run from then)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(1.0)
        self.conn.close()


class CheckerPool:
    """`workers` processes scoring (completion, example) pairs with a hard deadline each."""

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError(f"CheckerPool: workers must be >= 1, got {workers}")
        self.workers = workers
        self._procs: list[_Proc] = []
        atexit.register(self.close)

    @staticmethod
    def can_run(spec) -> bool:
        try:
            pickle.dumps(spec)
            return True
        except Exception:  # noqa: BLE001 - lambdas, local functions
            return False

    def _ensure(self) -> None:
        ctx = _context()
        self._procs = [p for p in self._procs if p.proc.is_alive()]
        while len(self._procs) < self.workers:
            self._procs.append(_Proc(ctx))

    def run(self, spec, texts: Sequence[str], examples: Sequence[Mapping], time_limit_s: float | None,
            ) -> list[tuple[str, object]]:
        """Per completion ("ok", values) | ("error", message) | ("timeout", message).

        Completions go to the workers in chunks (one message per chunk); a worker replies
        per completion as it finishes it, and each completion has `time_limit_s` from the
        previous reply (the first from the worker's acknowledgement of the chunk, so start-up
        is not charged to a completion). A worker past that deadline is killed and replaced: the completion
        it was on is a timeout, the rest of its chunk goes back in the queue."""
        self._ensure()
        N = len(texts)
        out: list = [None] * N
        size = max(1, N // (4 * self.workers))
        todo = [list(range(a, min(N, a + size))) for a in range(0, N, size)][::-1]
        busy: list[_Proc] = []
        idle = list(self._procs)
        limit = time_limit_s if time_limit_s and time_limit_s > 0 else None
        while todo or busy:
            while todo and idle:
                p = idle.pop()
                ids = todo.pop()
                try:
                    p.conn.send((ids, spec, [texts[i] for i in ids], [examples[i] for i in ids]))
                except (BrokenPipeError, OSError):           # a dead worker: replace it, retry the chunk
                    todo.append(ids)
                    idle.append(self._replace(p))
                    continue
                p.task, p.started, p.acked = list(ids), time.perf_counter(), False
                busy.append(p)
            timeout = None
            if limit is not None:
                timeout = max(0.0, min(p.started + self._budget(p, limit) for p in busy) - time.perf_counter())
            ready = wait([p.conn for p in busy], timeout)
            for p in list(busy):
                now = time.perf_counter()
                if p.conn in ready:
                    try:
                        i, status, value = p.conn.recv()
                    except (EOFError, OSError):              # the checker killed its process
                        out[p.task[0]] = ("error", "checker process died")
                        self._requeue(p, busy, idle, todo)
                        continue
                    if status == "start":
                        p.started, p.acked = now, True
                        continue
                    late = limit is not None and now - p.started > limit
                    out[i] = ("timeout", f"checker exceeded {limit:g} s") if late else (status, value)
                    p.task.remove(i)
                    p.started = now
                    if not p.task:
                        busy.remove(p)
                        idle.append(p)
                elif limit is not None and now - p.started >= self._budget(p, limit):
                    out[p.task[0]] = (("timeout", f"checker exceeded {limit:g} s (worker killed)") if p.acked else
                                      ("timeout", f"checker worker did not start within {self._budget(p, limit):g} s "
                                                  "(worker killed)"))
                    self._requeue(p, busy, idle, todo)
        return out

    @staticmethod
    def _budget(p: _Proc, limit: float) -> float:
        return limit if p.acked else max(limit, STARTUP_S)

    def _requeue(self, p: _Proc, busy, idle, todo) -> None:
        """Replaces a worker that hung or died on the first completion of its chunk; the
        chunk's other completions go back in the queue."""
        rest = p.task[1:]
        busy.remove(p)
        idle.append(self._replace(p))
        if rest:
            todo.append(rest)

    def _replace(self, p: _Proc) -> _Proc:
        p.kill()
        self._procs.remove(p)
        q = _Proc(_context())
        self._procs.append(q)
        return q

    def close(self) -> None:
        for p in self._procs:
            try:
                p.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            p.proc.join(0.5)
            if p.proc.is_alive():
                p.proc.kill()
        self._procs = []


_POOLS: dict[int, CheckerPool] = {}


def shared_pool(workers: int) -> CheckerPool:
    """One pool per size per process, reused by every scoring call."""
    if workers not in _POOLS:
        _POOLS[workers] = CheckerPool(workers)
    return _POOLS[workers]
