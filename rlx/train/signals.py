"""Graceful stop on SIGTERM / SIGINT: finish the step, save a checkpoint, exit cleanly.

Spot and preemptible TPU VMs get SIGTERM shortly before they go away; Ctrl-C sends
SIGINT. Inside `GracefulStop`, the first such signal only sets a flag; the engine checks
it after every step (agreed across processes: any process's signal stops all of them
at the same step), saves, and returns. A second SIGINT interrupts at once (the default
KeyboardInterrupt), for a run stuck in a step.
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np


class GracefulStop:
    def __init__(self):
        self.signum: int | None = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()
        return False

    def requested(self) -> bool:
        """Whether any process got a stop signal (a collective in multi-process runs)."""
        local = self.signum is not None
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils
        flags = multihost_utils.process_allgather(np.int32(self.signum or 0))
        if not local and np.any(flags):
            self.signum = int(np.max(flags))
        return bool(np.any(flags))

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
