"""Scale by sharding, not rewriting: meshes, logical-axis rules, multi-host start-up."""

from rlx.parallel.distributed import initialize_distributed
from rlx.parallel.mesh import AXES, BATCH_AXES, make_mesh, resolve_shape
from rlx.parallel.rules import (
    DECODE_SHARDINGS,
    RULES,
    batch_sharding,
    constrain,
    decode_rules,
    get_rules,
    logical_to_spec,
    replicated,
    tree_shardings,
    use_rules,
)

__all__ = ["AXES", "BATCH_AXES", "DECODE_SHARDINGS", "RULES", "batch_sharding", "constrain", "decode_rules",
           "get_rules", "initialize_distributed", "logical_to_spec", "make_mesh", "replicated", "resolve_shape",
           "tree_shardings", "use_rules"]
