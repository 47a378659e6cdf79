"""The engine's data side: task sources from config, prompt selection, tokenization.

Sources: one data source per difficulty level (the DUMP setup), all behind a
`rlx.data.MultiSource`:
  arithmetic / countdown / knights_knaves   generated (seeded; 100k examples per level)
  kk_files                                  the published K&K JSONL files, one per N
                                            (`data.path` = their directory)
  gsm8k                                     a local GSM8K-format JSONL (`data.path`)
  math                                      a local JSONL of problems and gold answers
                                            (`data.path`, `data.prompt_field` / `answer_field`)
  jsonl                                     the user's own JSONL files, the same fields,
                                            scored by `data.checker` (math | numeric |
                                            exact) or `reward.fn`
  (math and jsonl: `data.path` may list several files, comma-separated: one source each)
Evaluation prompts: generated tasks draw them with `data.eval_seed` (disjoint seeds,
so unseen prompts); file-backed tasks hold out the last examples of every source.

Prompt selection is a pure function of (step key, curriculum state): uniform over
sources then uniform over examples, or DUMP's UCB distribution over sources. The data
position is therefore just the step number — resume restores it exactly.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from rlx.curriculum import dump
from rlx.data import MultiSource
from rlx.data.iterators import GeneratedSource, ListSource

GENERATED_SIZE = 100_000
REWARD_TASK = {"arithmetic": "arithmetic", "countdown": "countdown", "knights_knaves": "knights_knaves",
               "kk_files": "knights_knaves", "gsm8k": "gsm8k", "math": "math"}


def data_paths(path: str) -> list[str]:
    """`data.path` as a list of files: one, or several separated by commas (one data
    source each, e.g. for DUMP's curriculum)."""
    return [os.path.expanduser(p.strip()) for p in str(path).split(",") if p.strip()]


CHECKERS = {"math": "math", "numeric": "numeric", "exact": "exact"}    # data.checker -> reward task (jsonl)


def reward_task(c) -> str:
    """The reward task of a run: the user's `reward.fn` (registered on first use,
    `rlx.rewards.user`), else the data task's checker."""
    fn = c.get("reward", {}).get("fn", "") if hasattr(c, "get") else ""
    if fn:
        from rlx.rewards import user
        return user.register(fn, tuple(c.reward.component_names), float(c.reward.success_value))
    if c.data.task == "jsonl":
        if c.data.checker not in CHECKERS:
            raise ValueError(f"config.data.checker: must be one of {sorted(CHECKERS)}, got {c.data.checker!r}")
        return CHECKERS[c.data.checker]
    return REWARD_TASK[c.data.task]


def build_sources(dc, seed: int) -> tuple[MultiSource, list[dict]]:
    """(training MultiSource, evaluation examples) for the config's `data` section."""
    levels = [int(x) for x in dc.levels]
    n_eval = int(dc.eval_prompts)
    per_level = -(-n_eval // len(levels)) if n_eval else 0
    try:
        if dc.task in ("arithmetic", "countdown", "knights_knaves"):
            train = [GeneratedSource(dc.task, lv, seed, GENERATED_SIZE, template=dc.template) for lv in levels]
            evals = [GeneratedSource(dc.task, lv, int(dc.eval_seed), per_level, template=dc.template)
                     for lv in levels]
            eval_examples = [ex for src in evals for ex in (src[i] for i in range(len(src)))]
            return MultiSource(train, [f"{dc.task}-{lv}" for lv in levels]), eval_examples[:n_eval]
        if dc.task == "kk_files":
            from rlx.data import knights_knaves
            by_n = knights_knaves.load_sources(dc.path, template=dc.template)
            missing = [lv for lv in levels if lv not in by_n]
            if missing:
                raise ValueError(f"config.data.levels: no K&K file for N={missing} in {dc.path} "
                                 f"(found N={sorted(by_n)})")
            pools = [by_n[lv] for lv in levels]
            names = [f"kk-{lv}" for lv in levels]
        elif dc.task == "gsm8k":
            from rlx.data import gsm8k
            if not os.path.exists(dc.path):
                raise FileNotFoundError(f"config.data.path: no such file {dc.path!r}")
            pools = [gsm8k.load_jsonl(dc.path, template=dc.template)]
            names = ["gsm8k"]
        elif dc.task in ("math", "jsonl"):
            from rlx.data import math_problems
            pools, names = [], []
            for path in data_paths(dc.path):
                if not os.path.exists(path):
                    raise FileNotFoundError(f"config.data.path: no such file {path!r}")
                name = os.path.splitext(os.path.basename(path))[0]
                pools.append(math_problems.load_jsonl(path, template=dc.template, prompt_field=dc.prompt_field,
                                                      answer_field=dc.answer_field, source=name, task=dc.task))
                names.append(name)
        else:
            raise ValueError(f"config.data.task: unknown task {dc.task!r}")
    except (ValueError, KeyError) as e:
        raise ValueError(f"config.data: {e}") from e
    train, eval_examples = [], []
    for pool in pools:
        k = min(per_level, len(pool) // 2)
        train.append(ListSource(pool[:len(pool) - k] if k else pool))
        eval_examples += pool[len(pool) - k:] if k else []
    return MultiSource(train, names), eval_examples[:n_eval]


def long_prompts(src: MultiSource, tokenizer, max_len: int, encode=None) -> tuple[int, int]:
    """(prompts longer than `max_len` tokens, prompts counted) over the file-backed
    sources of `src` (generated sources are sized by construction and skipped)."""
    n = total = 0
    for s in src.sources:
        if not isinstance(s, ListSource):
            continue
        for ex in s.examples:
            ids = encode(ex["prompt"]) if encode is not None else tokenizer.encode(ex["prompt"])
            n += len(ids) > max_len
            total += 1
    return n, total


def select_prompts(key: jax.Array, sizes_J: np.ndarray, num: int, curriculum: str,
                   dump_state=None, c: float = 1.0, tau: float = 0.1):
    """(source_ids [num], example_ids [num]) as numpy int arrays."""
    if curriculum == "dump":
        src, ex = dump.sample(dump_state, key, sizes_J, num, c=c, tau=tau)
    else:
        k1, k2 = jax.random.split(key)
        sizes = jnp.asarray(sizes_J, jnp.int32)
        src = jax.random.randint(k1, (num,), 0, sizes.shape[0])
        ex = jnp.floor(jax.random.uniform(k2, (num,)) * sizes[src]).astype(jnp.int32)
    return np.asarray(src), np.asarray(ex)


def prompt_encoder(tokenizer, dc):
    """text -> prompt token ids for `data.chat_template=True`: the tokenizer's chat
    template over [system (`data.system`, if any), user: text] with the generation prompt
    (`apply_chat_template`); None (plain `tokenizer.encode`) otherwise. A ValueError when
    the tokenizer has no chat template."""
    if not dc.get("chat_template", False):
        return None
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("config.data.chat_template: the tokenizer has no chat template (rlx's built-in tokenizer "
                         "has none: give an HF tokenizer, model.tokenizer_path or model.hf_path)")
    head = [{"role": "system", "content": dc.system}] if dc.get("system", "") else []

    def encode(text: str) -> list[int]:
        out = tokenizer.apply_chat_template(head + [{"role": "user", "content": text}], add_generation_prompt=True,
                                            tokenize=True)
        out = out["input_ids"] if hasattr(out, "keys") else out
        return [int(t) for t in out]
    return encode


def encode_prompts(tokenizer, texts: list[str], max_len: int, pad_id: int, encode=None):
    """Left-padded `[N, max_len]` int32 tokens and bool mask; over-long prompts keep their
    last `max_len` tokens. `encode`: text -> ids (`prompt_encoder`; default
    `tokenizer.encode`). Returns (tokens, mask, number truncated)."""
    tokens = np.full((len(texts), max_len), pad_id, np.int32)
    mask = np.zeros((len(texts), max_len), bool)
    truncated = 0
    for i, t in enumerate(texts):
        ids = encode(t) if encode is not None else tokenizer.encode(t)
        if len(ids) > max_len:
            ids, truncated = ids[-max_len:], truncated + 1
        if ids:
            tokens[i, max_len - len(ids):] = ids
            mask[i, max_len - len(ids):] = True
    return tokens, mask, truncated


def decode_completions(tokenizer, tokens_BT: np.ndarray, lengths_B: np.ndarray) -> list[str]:
    return [tokenizer.decode(row[:n].tolist(), skip_special_tokens=True)
            for row, n in zip(tokens_BT, lengths_B)]


def demonstration(example: dict) -> str:
    """The gold completion of an example in its template's format (SFT warm start).

    compact: the bare answer; answer: <answer>ANSWER</answer>; think: an empty
    <think></think> followed by the answer tags (rlx has no gold reasoning for generated
    tasks; the warm start teaches the format and the answers, RL the rest).
    """
    style, ans = example.get("template", "compact"), str(example["answer"])
    if style == "compact":
        return ans
    if style == "answer":
        return f"<answer>{ans}</answer>"
    return f"<think></think><answer>{ans}</answer>"
