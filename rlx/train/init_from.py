"""`model.init_from`: start a run's policy from an rlx checkpoint or an HF model directory.

Accepted paths (local; `~` expanded):
  * an HF directory (config.json + *.safetensors, e.g. a run's `hf/` export);
  * an rlx run directory (its newest checkpoint), its `checkpoints/` directory, or one
    step directory `checkpoints/<step>` — the policy params of that step (`train.params`);
The loaded params must have the run's architecture (every array's shape is checked,
errors name the array); they are cast to `model.param_dtype`. The reference policy (KL,
preference losses) is the loaded policy, as for any warm start; the optimizer starts
fresh. With `sft.steps > 0` the SFT warm start runs on top of the loaded params.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from rlx import models


def _step_dir(path: str) -> str | None:
    """The newest checkpoint step directory under `path`, or `path` itself if it is one."""
    if os.path.isdir(os.path.join(path, "state")):
        return path
    for d in (os.path.join(path, "checkpoints"), path):
        if os.path.isdir(d):
            steps = sorted(int(n) for n in os.listdir(d) if n.isdigit() and os.path.isdir(os.path.join(d, n, "state")))
            if steps:
                return os.path.join(d, str(steps[-1]))
    return None


def load_params(path: str, template: dict) -> dict:
    """Host params for `model.init_from` shaped and typed like `template` (the run's own
    freshly initialized params)."""
    path = os.path.abspath(os.path.expanduser(path))
    is_hf = os.path.exists(os.path.join(path, "config.json")) and any(
        n.endswith(".safetensors") for n in os.listdir(path))        # a run dir has a config.json too
    if is_hf:
        loaded, _ = models.from_hf(path)
        where = f"{path} (HF)"
    else:
        step = _step_dir(path)
        if step is None:
            raise FileNotFoundError(f"config.model.init_from: {path!r} is neither an HF model directory "
                                    "(config.json) nor an rlx run / checkpoint directory")
        import orbax.checkpoint as ocp
        tree = ocp.StandardCheckpointer().restore(os.path.join(step, "state"))
        try:
            loaded = tree["train"]["params"]
        except (KeyError, TypeError):
            raise ValueError(f"config.model.init_from: {step} holds no policy params (train.params)") from None
        from rlx.models import lora
        if isinstance(loaded, dict) and loaded and set(loaded) <= set(lora.TARGETS):
            run = os.path.dirname(os.path.dirname(step))
            raise ValueError(f"config.model.init_from: {step} is a LoRA run's checkpoint (adapters only, no base); "
                             f"export it first (python -m rlx.export --run-dir={run}) and point init_from at "
                             "the exported HF directory")
        where = step
    flat_t = dict(jax.tree_util.tree_flatten_with_path(template)[0])
    flat_l = dict(jax.tree_util.tree_flatten_with_path(loaded)[0])
    name = jax.tree_util.keystr
    missing = [name(k) for k in flat_t if k not in flat_l]
    extra = [name(k) for k in flat_l if k not in flat_t]
    if missing or extra:
        raise ValueError(f"config.model.init_from: {where} has other params than this model "
                         f"(missing {missing[:4]}, unexpected {extra[:4]})")
    bad = [f"{name(k)} {tuple(np.shape(flat_l[k]))} != {tuple(v.shape)}" for k, v in flat_t.items()
           if tuple(np.shape(flat_l[k])) != tuple(v.shape)]
    if bad:
        raise ValueError(f"config.model.init_from: {where} does not fit this model's architecture: "
                         + "; ".join(bad[:4]))
    return jax.tree.map(lambda t, x: np.asarray(x).astype(t.dtype), template,
                        jax.tree.unflatten(jax.tree.structure(template), [flat_l[k] for k in flat_t]))
