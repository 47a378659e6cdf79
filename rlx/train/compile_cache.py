"""The persistent XLA compilation cache of a run (`train.compile_cache`).

A 0.5B-shape update step takes minutes to compile; with the cache on, a restarted or
resumed run (and every later run of the same shapes) loads its programs from disk.
`"auto"` uses `$RLX_COMPILE_CACHE`, else `~/.cache/rlx/jax` (per user, shared by runs:
programs are keyed by their HLO, compiler version and flags, so sharing is safe); a path
uses that directory; `""` leaves JAX's setting alone. A cache directory JAX already has
(set by `JAX_COMPILATION_CACHE_DIR`, `jax.config`, or the test suite) is never replaced.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)
# Programs that compile faster than this are not worth a disk round trip.
MIN_COMPILE_SECS = 1.0


def cache_dir(setting: str) -> str:
    """The directory for a `train.compile_cache` setting ("" = none)."""
    if setting == "auto":
        return os.environ.get("RLX_COMPILE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rlx", "jax")
    return setting


def setup_compile_cache(setting: str) -> str | None:
    """Turns the persistent cache on; returns the directory in use (None = off)."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = cache_dir(setting)
    if not path:
        return None
    try:
        if "://" not in path:                   # gs:// and other remote caches exist already
            os.makedirs(path, exist_ok=True)
    except OSError as e:          # e.g. a read-only home: run without the cache
        log.warning("train.compile_cache: cannot create %s (%s); compiling without a persistent cache", path, e)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    return path
