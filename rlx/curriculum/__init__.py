"""Data schedules: curricula, sample filters and down-sampling.

  dump         DUMP's UCB scheduler over data sources (init / update / scores / probs / sample)
  dynamic      DAPO dynamic sampling: keep reward-varying groups, oversample to fill a batch
  recovery     recent sample recovery: a FIFO that carries the overflow into the next batch
  replay       ARPO replay of successful trajectories into all-failed groups
  prioritized  Single-stream PO prompt weights sqrt(p(1-p)) + 0.05
  filtering    drop tasks whose baseline success is 0 or 1
  edge_replay  SPO-tree edge replay buffer (edges live <= 8 iterations, <= 32 per question per draw)
  downsample   D3S sample-level (max-variance subset) and token-level (top |A|*H) down-sampling

States are flax.struct pytrees of arrays (Orbax-checkpointable); functions are pure.
"""

from rlx.curriculum import downsample, dump, dynamic, edge_replay, filtering, prioritized, recovery, replay

__all__ = ["downsample", "dump", "dynamic", "edge_replay", "filtering", "prioritized", "recovery", "replay"]
