"""RL metrics computed on the host from a rollout: rewards, accuracy, pass@k, lengths."""

from __future__ import annotations

from math import comb

import numpy as np


def pass_at_k(success_PG: np.ndarray, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on
    Code"): mean over prompts of 1 − C(n − c, k) / C(n, k), n = G samples, c correct."""
    P, n = success_PG.shape
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= G={n}, got k={k}")
    c = success_PG.sum(axis=1)
    vals = [1.0 - (comb(n - int(ci), k) / comb(n, k)) for ci in c]
    return float(np.mean(vals)) if P else 0.0


def rollout_metrics(rewards_PG: np.ndarray, success_PG: np.ndarray, lengths_B: np.ndarray,
                    finish_B: np.ndarray, valid_PG: np.ndarray, pass_k=(1,)) -> dict[str, float]:
    v = valid_PG.astype(bool)
    r = rewards_PG[v]
    out = {
        "reward/mean": float(r.mean()) if r.size else 0.0,
        "reward/std": float(r.std()) if r.size else 0.0,
        "accuracy": float(success_PG[v].mean()) if r.size else 0.0,
        "response/length_mean": float(lengths_B.mean()),
        "response/length_max": float(lengths_B.max()),
        "response/truncated_frac": float((finish_B == 1).mean()),
    }
    # Lengths of the valid rows by outcome (Dr. GRPO's length bias shows on the wrong ones);
    # a split with no rows is left out of the step's metrics.
    ok = success_PG.astype(bool).reshape(-1)
    keep = v.reshape(-1)
    lengths = np.asarray(lengths_B).reshape(-1)
    for name, rows in (("correct", keep & ok), ("incorrect", keep & ~ok)):
        if rows.any():
            out[f"response/length_{name}"] = float(lengths[rows].mean())
    same = np.ptp(np.where(v, rewards_PG, rewards_PG[:, :1]), axis=1) == 0
    out["groups/zero_variance_frac"] = float(same.mean())
    for k in pass_k:
        if k <= success_PG.shape[1]:
            out[f"pass@{k}"] = pass_at_k(success_PG & v, k)
    return out
