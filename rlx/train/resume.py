"""Run directories: what a fresh run, `--resume` and `--overwrite` may do with one.

Rules (nothing in a run directory is overwritten or deleted unless they allow it):
  * fresh run (no flag) into a directory that holds a run (checkpoint steps, a
    metrics.jsonl, or a completed-run marker): refused with one line naming what is there;
  * `--overwrite`: the old run's checkpoints, metrics, TensorBoard events, HF export and
    marker are deleted first (the SFT warm-start cache and the tokenizer are kept: they
    are keyed by their settings);
  * `--resume` with checkpoints: the config of the newest readable checkpoint must equal
    the current one in every key that changes shapes or semantics (`FREE_KEYS` may
    differ: placement, logging, checkpointing, speed-only settings); others need
    `--allow-change=key,...`. Checked before anything is restored or written;
  * `--resume` without checkpoints: a fresh run (the warm start runs), with a warning.
A finished run leaves `complete.json` (step, accuracy before / after); resuming it is a
no-op that says so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

import jax

from rlx.train.config import ConfigError

# Keys (or key prefixes ending in ".") that may differ between a checkpoint's config and
# the resumed run's: where and how it runs, not what it computes.
FREE_KEYS = ("run_dir", "name", "plan_topology", "log.", "checkpoint.", "mesh.", "train.compile_cache",
             "train.forward_rows", "train.eval_every", "train.max_nonfinite_steps", "sampler.rows_per_call",
             "sampler.decode_sharding",
             "model.remat", "model.unroll_layers", "model.vocab_chunk", "model.hf_path", "model.tokenizer_path",
             "model.init_from", "data.eval_prompts", "data.eval_seed", "env.workers", "env.step_timeout_s",
             "env.kv_carry", "env.prefill_chunk", "env.eval_tasks")
MARKER = "complete.json"
log = logging.getLogger(__name__)


class RunDirError(RuntimeError):
    """The run directory's contents and the requested mode disagree (one-line message)."""


def checkpoint_steps(run_dir: str) -> list[int]:
    """Step directories under run_dir/checkpoints (read from the file system only)."""
    d = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit() and os.path.isdir(os.path.join(d, n)))


def existing_run(run_dir: str) -> list[str]:
    """What of a previous run the directory holds (empty: nothing)."""
    found = []
    steps = checkpoint_steps(run_dir)
    if steps:
        found.append(f"checkpoints at steps {', '.join(map(str, steps))}")
    for name in ("metrics.jsonl", MARKER):
        if os.path.exists(os.path.join(run_dir, name)):
            found.append(name)
    return found


def prepare_fresh(run_dir: str, overwrite: bool) -> None:
    """Refuses a fresh run into an existing run's directory, or clears it with `overwrite`."""
    found = existing_run(run_dir)
    if not found:
        return
    if not overwrite:
        raise RunDirError(f"{run_dir} holds a run ({'; '.join(found)}): pass --resume to continue it or "
                          "--overwrite to replace it (or choose another --config.run_dir)")
    if jax.process_index() == 0:
        for name in ("checkpoints", "tb", "hf"):
            shutil.rmtree(os.path.join(run_dir, name), ignore_errors=True)
        for name in ("metrics.jsonl", MARKER, "config.json"):
            if os.path.exists(os.path.join(run_dir, name)):
                os.remove(os.path.join(run_dir, name))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not k.endswith("_kwargs"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _free(key: str, allow) -> bool:
    return any(key == f or (f.endswith(".") and key.startswith(f)) for f in tuple(FREE_KEYS) + tuple(allow))


def config_changes(stored: dict, current: dict, allow=(), defaults: dict | None = None) -> list[str]:
    """Keys whose value differs between a checkpoint's config and the current one, other
    than `FREE_KEYS` and `allow`, as "key: old -> new" lines. A key the checkpoint's
    config lacks (written before rlx had it) counts as its `defaults` value (the base
    config's): that run behaved as the default does."""
    a, b = _flat(stored), _flat(current)
    d = _flat(defaults or {})
    out = []
    for k in sorted(set(a) | set(b)):
        if _free(k, allow):
            continue
        va, vb = a.get(k, d.get(k, "<absent>")), b.get(k, "<absent>")
        if json.dumps(va, sort_keys=True) != json.dumps(vb, sort_keys=True):
            out.append(f"config.{k}: {va!r} -> {vb!r}")
    return out


def check_resume_config(stored: dict, current: dict, step: int, allow=()) -> None:
    from rlx.train.config import base_config
    changes = config_changes(stored, current, allow, json.loads(base_config().to_json_best_effort()))
    if changes:
        keys = ",".join(line.split(":")[0][len("config."):] for line in changes)
        raise ConfigError(f"--resume: the config differs from checkpoint step {step}'s in what changes shapes "
                          f"or semantics:\n  " + "\n  ".join(changes)
                          + f"\n(pass --allow-change={keys} if the change is intended)")


def read_marker(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, MARKER)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:       # a damaged marker: the checkpoints decide
        log.warning("%s is unreadable (%s); ignoring it", path, e)
        return None


def write_marker(run_dir: str, record: dict) -> None:
    if jax.process_index() != 0:
        return
    path = os.path.join(run_dir, MARKER)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f, sort_keys=True)
    os.replace(path + ".tmp", path)


def check_writable(directory: str) -> None:
    """Fails at start-up when checkpoints could not be written there."""
    if "://" in directory:          # gs:// and other remote paths: Orbax reports on first save
        return
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".rlx-write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunDirError(f"cannot write checkpoints to {directory}: {e.strerror or e}") from None
