"""Logical-axis rules: how named array dimensions map onto the mesh.

Params, activations and the KV cache carry logical axis names (see `rlx.models`):
  params       "vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm", "layers"
  activations  "batch", "length", "act_embed", "act_heads", "act_kv_heads", "act_mlp",
               "act_vocab"
  KV cache     "cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim"
A rules table maps each name to a mesh axis, a tuple of mesh axes, or None (replicated).
Presets (`RULES[name]`):
  "fsdp"     pure FSDP (default): every weight matrix sharded along its `embed`
             dimension over `fsdp`; batch over (data, fsdp); nothing over `tensor`.
  "fsdp_tp"  FSDP x tensor parallelism (Megatron-style): additionally heads, MLP and
             vocabulary over `tensor`.
A dimension that a mesh axis does not divide stays replicated on that axis (e.g. 2 KV
heads on tensor=4): `logical_to_spec` drops the axis rather than fail — sharding
never changes results, only placement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

_BATCH = ("data", "fsdp")

_FSDP = (
    ("batch", _BATCH), ("cache_batch", _BATCH),
    ("embed", "fsdp"),
    ("vocab", None), ("q_heads", None), ("kv_heads", None), ("head_dim", None),
    ("mlp", None), ("norm", None), ("layers", None),
    ("length", None), ("act_embed", None), ("act_heads", None), ("act_kv_heads", None),
    ("act_mlp", None), ("act_vocab", None),
    ("cache_length", None), ("cache_kv_heads", None), ("cache_head_dim", None),
)

_FSDP_TP = (
    ("batch", _BATCH), ("cache_batch", _BATCH),
    ("embed", "fsdp"),
    ("vocab", "tensor"), ("q_heads", "tensor"), ("kv_heads", "tensor"), ("head_dim", None),
    ("mlp", "tensor"), ("norm", None), ("layers", None),
    ("length", None), ("act_embed", None), ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"), ("act_mlp", "tensor"), ("act_vocab", "tensor"),
    ("cache_length", None), ("cache_kv_heads", "tensor"), ("cache_head_dim", None),
)

RULES: dict[str, tuple[tuple[str, Any], ...]] = {"fsdp": _FSDP, "fsdp_tp": _FSDP_TP}


# How the sampler's decode step places the weights (`SamplerConfig.decode_sharding`).
DECODE_SHARDINGS = ("params", "replicated", "tensor")
_WEIGHTS = ("vocab", "embed", "q_heads", "kv_heads", "head_dim", "mlp", "norm", "layers")
_ALL_AXES = ("data", "fsdp", "tensor")


def decode_rules(rules, mode: str) -> tuple[tuple[str, Any], ...]:
    """The rules a decode step runs under, from the training `rules`:

      "params"      the training rules: the weights stay as trained (under FSDP every
                    decode step all-gathers every weight: each chip reads the whole
                    model per token step, and the gathered copy is written and read).
      "replicated"  every weight replicated (gathered once per sampling call), rows
                    sharded as in training: each chip reads the whole model per step.
      "tensor"      Megatron-style tensor parallelism over every mesh axis: the MLP and
                    the vocabulary (embedding, LM head) sharded over all chips, the
                    attention projections and norms replicated; the dense activations
                    ([rows, D] per layer) replicated over the chips — gathered after
                    attention, summed after the MLP — while attention itself runs per
                    shard of rows on that shard's KV pages. Each chip reads 1/chips of the
                    MLP and vocabulary and all of the (small) attention weights per step.
    The KV cache's names ("cache_*") keep the training rules' placement in every mode."""
    if mode not in DECODE_SHARDINGS:
        raise ValueError(f"unknown decode sharding {mode!r}; known: {DECODE_SHARDINGS}")
    table = dict(rules)
    if mode == "params":
        return tuple(table.items())
    table.update({n: None for n in _WEIGHTS})
    if mode == "tensor":
        table.update({"mlp": _ALL_AXES, "vocab": _ALL_AXES, "act_mlp": _ALL_AXES, "act_vocab": _ALL_AXES,
                      "batch": None, "length": None, "act_embed": None, "act_heads": None, "act_kv_heads": None})
    return tuple(table.items())


def get_rules(name: str) -> tuple[tuple[str, Any], ...]:
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown sharding rules preset {name!r}; known: {sorted(RULES)}") from None


def _axes(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int] | None, mesh: Mesh,
                    rules) -> P:
    """PartitionSpec for an array whose dimensions carry logical `names`.

    Unknown names raise (a typo would silently replicate a weight). With `shape`
    given, mesh axes that do not divide a dimension are dropped for that dimension; a
    mesh axis is used at most once per array (first dimension wins).
    """
    table = dict(rules)
    used: set[str] = set()
    out = []
    for i, name in enumerate(names):
        if name is None:
            out.append(None)
            continue
        if name not in table:
            raise KeyError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
        kept = []
        size = 1
        for ax in _axes(table[name]):
            if ax in used or ax not in mesh.shape:
                continue
            n = mesh.shape[ax]
            if shape is not None and shape[i] % (size * n):
                continue
            kept.append(ax)
            size *= n
        used.update(kept)
        out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return P(*out)


def tree_shardings(tree, axes_tree, mesh: Mesh, rules):
    """NamedShardings for every leaf of `tree`, from a matching tree of logical names. A
    names tuple may stand for a subtree of arrays of the same rank (a quantized weight:
    its values and its scales); each takes the names, with any mesh axis that does not
    divide its own shape dropped."""
    def one(names, x):
        return jax.tree.map(lambda a: NamedSharding(mesh, logical_to_spec(names, a.shape, mesh, rules)), x)
    return jax.tree.map(one, axes_tree, tree, is_leaf=lambda n: isinstance(n, tuple))


def batch_sharding(mesh: Mesh, ndim: int, batch_size: int | None = None) -> NamedSharding:
    """Shards dim 0 over (data, fsdp) — the layout of every `[B, ...]` batch array."""
    spec = logical_to_spec(("batch",) + (None,) * (ndim - 1),
                           None if batch_size is None else (batch_size,) + (1,) * (ndim - 1),
                           mesh, _FSDP)
    return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


# ---------------------------------------------------------------- activation constraints
# The model annotates activations and the KV cache with logical names through
# `constrain(x, names)`. Inside `use_rules(mesh, rules)` that becomes a sharding
# constraint; outside, it is a no-op — so the model runs unchanged on one device.
_ACTIVE: list[tuple[Mesh, tuple]] = []


class use_rules:
    """Context manager: activate a mesh + rules table for `constrain` while tracing.

    The constraints are `NamedSharding`s that carry their mesh, so no global mesh
    context is entered. Jitted functions are traced (and their constraints fixed) on
    their first call: call them inside the context the first time.
    """

    def __init__(self, mesh: Mesh, rules):
        self.mesh, self.rules = mesh, tuple(rules)

    def __enter__(self):
        _ACTIVE.append((self.mesh, self.rules))
        return self

    def __exit__(self, *exc):
        _ACTIVE.pop()
        return False


def active():
    """The (mesh, rules) of the innermost `use_rules`, or None (kernels that need a
    `shard_map` read it)."""
    return _ACTIVE[-1] if _ACTIVE else None


def axis_devices(name: str, size: int) -> int:
    """How many devices the active rules split a logical axis `name` of length `size`
    over (the product of its mesh axes; 1 without `use_rules` or when unsplit)."""
    if not _ACTIVE:
        return 1
    mesh, table = _ACTIVE[-1]
    lead = logical_to_spec((name,), (size,), mesh, table)
    axes = () if not len(lead) or lead[0] is None else (lead[0],) if isinstance(lead[0], str) else lead[0]
    out = 1
    for a in axes:
        out *= mesh.shape[a]
    return out


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """`with_sharding_constraint` by logical names under `use_rules`; identity otherwise."""
    if not _ACTIVE:
        return x
    mesh, rules = _ACTIVE[-1]
    if len(names) != x.ndim:
        raise ValueError(f"constrain: {len(names)} names {tuple(names)} for an array of rank {x.ndim}")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, x.shape, mesh, rules)))
