#!/usr/bin/env python3
"""Prefix Grouper: identical gradients, and step time against G and the FLOPs bound.

Paper ("Prefix Grouper: Efficient GRPO Training through Shared-Prefix Forward", Liu et al.
2025): encoding the shared prompt once per group (instead of once per sample) gives
identical forward outputs and gradients, and cuts the training cost, the more so the
longer the prompt and the larger the group.

No RL runs: per seed (random params and data of that seed), per prompt:completion ratio
(prompt 64 : completion 64, 256 : 64, 512 : 32) and per G in {1, 2, 4, 8, 16}, one
forward + backward of a token-weighted log-prob loss two ways on the same params and data
— repeated (`rlx.models.completion_logprobs` on P*G rows of prompt + completion) and
shared (`rlx.models.shared_prefix_logprobs`, one packed row per prompt) — on a Qwen2-layout
2 layers, width 128, 4x32 heads (2 KV), float32 model, P = 2 prompts. Measures: the largest
relative gradient difference; the speed-up (median repeated / shared step time of 3); XLA's
FLOP ratio; the token bound (Lp + T) G / (Lp + G T) (the linear layers' FLOPs ratio).
Verdict: speed-up - 1 at G = 16, prompt 256 : 64, over seeds (> 0: faster), given that the
gradients agree to 1e-4.

    python experiments/prefix_grouper.py [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import time

import numpy as np
import study

NAME = "prefix_grouper"
CLAIM = ("The shared-prefix forward gives identical gradients to the repeated one and a lower training cost, "
         "growing with the prompt length and G (Liu et al. 2025, Fig. 3-4)")
RATIOS = ((64, 64), (256, 64), (512, 32))
GROUPS = (1, 2, 4, 8, 16)


def measure(seed: int, Lp: int, T: int, G: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from rlx import models
    cfg = models.tiny(512, hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=384,
                      family="qwen2", tie_embeddings=False)
    params = models.init_params(cfg, jax.random.key(seed))
    P = 2
    rng = np.random.default_rng(seed)
    prompt = jnp.asarray(rng.integers(3, 512, size=(P, Lp)), jnp.int32)
    pmask = jnp.asarray(np.arange(Lp)[None] >= rng.integers(0, Lp // 4, size=(P, 1)))
    comp = jnp.asarray(rng.integers(3, 512, size=(P * G, T)), jnp.int32)
    cmask = jnp.asarray(np.arange(T)[None] < rng.integers(T // 2, T + 1, size=(P * G, 1)))
    w = jnp.asarray(rng.normal(size=(P * G, T)), jnp.float32)

    def repeated(p):
        lp = models.completion_logprobs(p, cfg, jnp.repeat(prompt, G, 0), jnp.repeat(pmask, G, 0), comp, cmask)
        return jnp.sum(lp * w)

    def shared(p):
        return jnp.sum(models.shared_prefix_logprobs(p, cfg, prompt, pmask, comp, cmask) * w)

    out, grads = {}, {}
    for name, f in (("repeated", repeated), ("shared", shared)):
        step = jax.jit(jax.value_and_grad(f)).lower(params).compile()
        cost = step.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out[f"flops_{name}"] = float(cost.get("flops", np.nan))
        grads[name] = jax.block_until_ready(step(params))[1]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(step(params))
            times.append(time.perf_counter() - t0)
        out[f"time_{name}"] = float(np.median(times))
    out["grad_rel_diff"] = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30))
                               for a, b in zip(jax.tree.leaves(grads["shared"]), jax.tree.leaves(grads["repeated"])))
    out["speedup"] = out["time_repeated"] / out["time_shared"]
    out["flops_ratio"] = out["flops_repeated"] / out["flops_shared"]
    out["token_bound"] = (Lp + T) * G / (Lp + G * T)
    return out


def main(argv=None) -> dict:
    a = study.parse_args(NAME, __doc__, argv)
    ratios, groups, repeats = ((RATIOS[1],), (1, 4), 1) if a.quick else (RATIOS, GROUPS, 3)
    s = study.Study(NAME, CLAIM, [], args=a)
    res = {sd: {(lp, t, g): measure(sd, lp, t, g, repeats) for lp, t in ratios for g in groups} for sd in a.seeds}
    for sd, per in res.items():
        for (lp, t, g), m in per.items():
            print(f"[{NAME}] seed {sd} prompt {lp} : completion {t}, G={g}: speed-up {m['speedup']:.2f}, "
                  f"FLOPs ratio {m['flops_ratio']:.2f}, token bound {m['token_bound']:.2f}, "
                  f"gradient difference {m['grad_rel_diff']:.1e}", flush=True)
    label = {(lp, t): f"{lp}:{t}" for lp, t in ratios}
    measures = {}
    for key in ("speedup", "flops_ratio", "token_bound", "grad_rel_diff"):
        for lp, t in ratios:
            for g in groups:
                measures.setdefault(f"{key} G={g}", {})[label[lp, t]] = np.array(
                    [res[sd][lp, t, g][key] for sd in a.seeds])
    worst = max(m["grad_rel_diff"] for per in res.values() for m in per.values())
    lp, t = ratios[min(1, len(ratios) - 1)] if not a.quick else ratios[0]
    g = groups[-1]
    sp = np.array([res[sd][lp, t, g]["speedup"] for sd in a.seeds])
    verdict = study.verdict(sp - 1, f"speed-up - 1 at G={g}, prompt {lp}:{t}")
    if worst > 1e-4:
        verdict = f"not reproduced: gradients differ by up to {worst:.1e} (relative); " + verdict
    f = study.fmt
    first = res[a.seeds[0]]
    summary = (f"Largest relative gradient difference, shared vs repeated, over every case and seed: {worst:.1e}. "
               + "Speed-up at G=" + str(g) + ": " + ", ".join(
                   f"{label[r]} {f(study.interval([res[sd][(*r, g)]['speedup'] for sd in a.seeds]))} (FLOPs "
                   f"{first[(*r, g)]['flops_ratio']:.2f}x, token bound {first[(*r, g)]['token_bound']:.2f}x)"
                   for r in ratios) + f". Verdict: {verdict}.")
    def curve(key):
        return {label[r]: {sd: (list(groups), [res[sd][(*r, gg)][key] for gg in groups]) for sd in a.seeds}
                for r in ratios}
    panels = [("speed-up (repeated / shared step time)", curve("speedup"), "G"),
              ("XLA FLOPs ratio (repeated / shared)", curve("flops_ratio"), "G"),
              ("token bound (Lp + T) G / (Lp + G T)", curve("token_bound"), "G")]
    return s.save(measures, verdict, summary, panels, xlabel="G")


if __name__ == "__main__":
    main()
