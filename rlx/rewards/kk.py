"""The Knights & Knaves reward of Logic-RL, as used by DUMP.

Paper: "DUMP: Automated Distribution-Level Curriculum Learning for RL-based LLM
Post-training" (Wang et al. 2025), which reuses the Logic-RL reward. Rules and scores
read from the official code (github.com/ZhentingWang/DUMP, commit 235e85d,
`verl/utils/reward_score/kk.py`, `compute_score`):

  total = format_score + answer_score
  format_score = +1 if the response passes the structure rule (each of <think>, </think>,
                 <answer>, </answer> exactly once, in that order, nothing after </answer>
                 but whitespace or <|im_end|>), else -1
  answer_score = +2    all roles correct
                 -1.5  the answer parses (below) but some role is wrong
                 -2    the format failed, or the answer section is empty or does not parse
  An answer section parses when the number of occurrences of "knight" plus "knave"
  (case-insensitive substrings) equals the number of people, and for every person the
  pattern `\\b<name>\\b\\s+is\\s+a\\s+\\b(knight|knave)\\b` (case-insensitive; the first
  match counts) is found. The gold roles are parsed from the data set's
  `solution_text_format`: on each non-empty line, the first ASCII word and the first
  "knight"/"knave" after it.

So the maximum is 3 (gold answer, good format), a parsable wrong answer with good format
gets -0.5, an unparsable one -1, and a badly formatted response -3.

Differences from the official code (both deliberate):
  * The official code first cuts the decoded prompt+response at "Assistant:" or
    "<|im_start|>assistant" and scores -3 when neither header is present. rlx
    completions never contain the prompt, so the whole completion is the response;
    a template that pre-fills part of the response (e.g. ends the prompt with
    "<think>") passes it as `response_prefix`, which is prepended before checking.
  * `require_think=False` drops the <think> tags from the structure rule, for rlx's
    "answer" template that does not ask for reasoning. The default is the official rule.
"""

from __future__ import annotations

import re

from rlx.rewards.format import extract_tagged, strict_format_ok

FORMAT_GOOD, FORMAT_BAD = 1.0, -1.0
ANSWER_CORRECT, ANSWER_WRONG, ANSWER_UNPARSABLE = 2.0, -1.5, -2.0
MAX_SCORE = FORMAT_GOOD + ANSWER_CORRECT

_GOLD_LINE = re.compile(r"\b([A-Za-z]+)\b.*?\b(knight|knave)\b", re.IGNORECASE)


def parse_gold(solution_text_format: str) -> dict[str, str]:
    """name -> "knight"/"knave" from a numbered gold answer ("(1) Zoey is a knight\\n...")."""
    if not isinstance(solution_text_format, str):
        raise TypeError(f"solution_text_format must be a str, got {type(solution_text_format).__name__}")
    roles: dict[str, str] = {}
    for line in solution_text_format.split("\n"):
        line = line.strip()
        if not line:
            continue
        m = _GOLD_LINE.search(line)
        if m is None:
            raise ValueError(f"solution_text_format: cannot parse line {line!r}")
        roles[m.group(1)] = m.group(2).lower()
    if not roles:
        raise ValueError("solution_text_format: no roles found")
    return roles


def parse_prediction(answer_text: str, names: list[str]) -> dict[str, str] | None:
    """The official answer parser: name -> role, or None if the section does not parse."""
    low = answer_text.lower()
    if low.count("knight") + low.count("knave") != len(names):
        return None
    roles = {}
    for name in names:
        m = re.search(rf"\b{re.escape(name)}\b\s+is\s+a\s+\b(knight|knave)\b", answer_text, re.IGNORECASE)
        if m is None:
            return None
        roles[name] = m.group(1).lower()
    return roles


def kk_components(response: str, solution_text_format: str, *, require_think: bool = True,
                  response_prefix: str = "") -> tuple[float, float]:
    """(format_score, answer_score) of one response; their sum is the DUMP reward."""
    gold = parse_gold(solution_text_format)
    text = response_prefix + response
    fmt_ok = strict_format_ok(text, require_think=require_think)
    format_score = FORMAT_GOOD if fmt_ok else FORMAT_BAD
    answer = extract_tagged(text) if fmt_ok else None
    if not answer:
        return format_score, ANSWER_UNPARSABLE
    pred = parse_prediction(answer, list(gold))
    if pred is None:
        return format_score, ANSWER_UNPARSABLE
    return format_score, ANSWER_CORRECT if pred == gold else ANSWER_WRONG


def kk_reward(response: str, solution_text_format: str, *, require_think: bool = True,
              response_prefix: str = "") -> float:
    """The DUMP / Logic-RL K&K reward: format (+1/-1) + answer (+2/-1.5/-2); maximum 3."""
    f, a = kk_components(response, solution_text_format, require_think=require_think,
                         response_prefix=response_prefix)
    return f + a
