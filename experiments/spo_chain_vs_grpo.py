#!/usr/bin/env python3
"""SPO-chain vs GRPO on multi-digit arithmetic: accuracy per RL step and per sampled token.

Paper ("Segment Policy Optimization", Guo et al. 2025): SPO-chain's segment advantages from
Monte-Carlo continuations at low-probability cutpoints improve accuracy over GRPO by 6-12
points on GSM8K (short chains of thought), at the price of K extra continuations per cut.

Arms, on the quickstart task (1-digit operands, answers of 1-2 digits + EOS, the demo's
warm start: right about half the time), 80 RL steps of 8 prompts x 8 samples each:
`grpo` (configs/quickstart.py) and `spo_chain` (configs/spo_chain_cpu.py: K = 4, every
low-probability token a cut). (2-digit sums and differences, `data.levels=(2,)`, were tried
first: the tiny model's warm start solves none of them and neither arm got a reward signal
in 60 steps — accuracy 0.00-0.02 throughout — so they measure nothing.)
Measures: final greedy accuracy at equal steps, and at equal sampled tokens (the accuracy
curves against cumulative sampled tokens, continuations included, read at the largest
budget every run reached). Verdict: SPO-chain minus GRPO at equal steps, paired by seed
(> 0: the paper's claim); the per-token comparison is reported beside it.

    python experiments/spo_chain_vs_grpo.py [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import os

import numpy as np
import study

NAME = "spo_chain_vs_grpo"
CLAIM = ("SPO-chain's segment-level Monte-Carlo advantages beat GRPO's trajectory-level advantage: "
         "+6 to +12 accuracy points on GSM8K (Guo et al. 2025, Table 1)")
TASK = ("train.steps=80", "train.eval_every=20", "rl.prompts_per_step=8")
ARMS = [study.Arm("grpo", "quickstart", TASK), study.Arm("spo_chain", "spo_chain_cpu", TASK)]
RUNS = os.path.join(study.ROOT, "runs", "studies", "spo")       # shared with spo_tree_vs_chain.py


def equal_token_accuracy(s: study.Study, arms) -> tuple[dict, float]:
    """{arm: accuracy per seed at the common token budget}, the budget."""
    curves = {a: {sd: study.accuracy_vs_tokens(d) for sd, d in s.runs[a].items()} for a in arms}
    budget = min(x[-1] for per in curves.values() for x, _ in per.values())
    return {a: np.array([float(study.on_grid(x, y, [budget])[0]) for _, (x, y) in sorted(per.items())])
            for a, per in curves.items()}, float(budget)


def main(argv=None) -> dict:
    a = study.parse_args(NAME, __doc__, argv)
    if not a.quick and a.runs.endswith(os.path.join("studies", NAME)):
        a.runs = RUNS
    s = study.Study(NAME, CLAIM, ARMS, keys=("spo/mc_tokens", "spo/unique_states"), args=a)
    s.run_all()
    names = [x.name for x in ARMS]
    acc = {n: s.final(n) for n in names}
    tok_acc, budget = equal_token_accuracy(s, names)
    verdict = study.verdict(acc["spo_chain"] - acc["grpo"], "final accuracy at equal steps, SPO-chain - GRPO")
    ci = {n: study.interval(acc[n]) for n in names}
    ti = {n: study.interval(tok_acc[n]) for n in names}
    summary = (f"At the end of training, greedy accuracy on 1-digit sums: GRPO {study.fmt(ci['grpo'])}, "
               f"SPO-chain {study.fmt(ci['spo_chain'])}. At an equal budget of {budget:.0f} sampled tokens "
               f"(SPO-chain's continuations counted): GRPO {study.fmt(ti['grpo'])}, SPO-chain "
               f"{study.fmt(ti['spo_chain'])}. Verdict (equal steps): {verdict}.")
    panels = [("greedy accuracy vs RL step", {n: s.series(n, "eval/accuracy") for n in names}),
              ("greedy accuracy vs sampled tokens",
               {n: study.regrid({sd: study.accuracy_vs_tokens(d) for sd, d in s.runs[n].items()}) for n in names},
               "sampled tokens"),
              ("reward/mean (training samples)", {n: s.series(n, "reward/mean") for n in names})]
    return s.save({"final_accuracy": acc, "accuracy_at_equal_tokens": tok_acc}, verdict, summary, panels)


if __name__ == "__main__":
    main()
