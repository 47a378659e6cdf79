"""The `math` task: MATH-style final answers checked with Hugging Face's math-verify.

Gold answers are strings (`example["answer"]`); a full worked solution is reduced to
its last `\\boxed{...}` when the data is loaded (`gold_from_solution`). A completion's
final answer is, in order: the contents of its last `<answer>...</answer>` pair
("answer" / "think" templates; the last `\\boxed{}` inside it when there is one), else
its last `\\boxed{...}` (or `\\fbox{...}`), else — "compact" template only — its first
line. Equivalence is math-verify's (`math_verify.parse` then `math_verify.verify`, gold
first: numbers, fractions, LaTeX expressions, intervals, sets, tuples, units,
percentages, `x = 3` against `3`, as it handles them); both sides are parsed as the
contents of a `\\boxed{}`, so the whole extracted answer is compared, not its first
number. The gold is parsed once per distinct string and cached (per process).

Timeouts. math-verify bounds its own work with `signal.alarm`, which works only in the
main thread, and raises `TimeoutException`, a BaseException; rlx calls it with its
timeouts off (`parsing_timeout=None`, `timeout_seconds=None`) and bounds the whole
checker instead, as for every task (`rlx.rewards.score`: a killed worker process, or
SIGALRM in the main thread; off the main thread `score` moves the checkers to a worker
process). A hang or a crash inside the parser is a failure of that completion: reward
0, counted in `RewardStats` (errors / timeouts).

Components (format, answer), weights (0, 1) like the other binary tasks: answer is 1
when math-verify accepts, format is the templates' strict format rule (compact: an
answer was found).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from rlx.rewards import format as fmt
from rlx.rewards.components import register_task

TASK = "math"
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_boxed(text: str) -> str | None:
    """The contents of the last `\\boxed{...}` / `\\fbox{...}` of `text` (braces matched;
    `\\boxed 5` gives "5"), or None."""
    start, cmd = -1, ""
    for c in _BOX_COMMANDS:
        i = text.rfind(c)
        if i > start:
            start, cmd = i, c
    if start < 0:
        return None
    i = start + len(cmd)
    if i < len(text) and text[i] == " ":             # "\boxed 5": up to whitespace or "$"
        rest = text[i + 1:].strip()
        tok = rest.split()[0] if rest.split() else ""
        tok = tok.split("$")[0]
        return tok or None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                inner = text[i + 1:j].strip()
                return inner or None
    return None                                        # unbalanced


def gold_from_solution(solution: str) -> str:
    """The gold answer of a solution text: its last `\\boxed{}` contents, else the text
    itself (stripped); ValueError when that is empty."""
    box = last_boxed(solution)
    gold = (box if box is not None else solution).strip()
    if not gold:
        raise ValueError("empty answer")
    return gold


def extract_answer(completion: str, template: str = "answer") -> str | None:
    """The final answer of a completion (see the module docstring), or None."""
    tagged = fmt.extract_tagged(completion)
    if tagged is not None:
        box = last_boxed(tagged)
        return box if box is not None else (tagged.strip() or None)
    box = last_boxed(completion)
    if box is not None:
        return box
    if template == "compact":
        return fmt.extract_plain(completion)
    return None


def _quiet() -> None:
    # math-verify warns once that its timeouts are off: rlx bounds the checker itself.
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


@functools.lru_cache(maxsize=65536)
def _parse_boxed(answer: str):
    from math_verify import parse
    _quiet()
    return parse("\\boxed{" + answer + "}", parsing_timeout=None)


def is_equivalent(pred: str | None, gold: str, *, parse=None) -> bool:
    """math-verify's verdict on `pred` against `gold` (both answer strings). `parse`:
    a replacement of the parser (answer string -> math-verify's parsed list), for tests."""
    if pred is None:
        return False
    from math_verify import verify
    g = (parse or _parse_boxed)(str(gold))
    if not g:
        return False
    p = (parse or _parse_boxed.__wrapped__)(pred)     # predictions are not cached: they rarely repeat
    if not p:
        return False
    return bool(verify(g, p, timeout_seconds=None))


def math_checker(completion: str, example: Mapping, *, parse=None) -> tuple[float, float]:
    """(format, answer) of a completion of the `math` task."""
    template = example.get("template", "answer")
    text = example.get("response_prefix", "") + completion
    pred = extract_answer(text, template)
    if template == "compact":
        f = 1.0 if pred else 0.0
    else:
        f = fmt.format_reward(text, require_think=template == "think")
    return f, float(is_equivalent(pred, str(example["answer"]), parse=parse))


def warmup() -> None:
    """Import math-verify (and sympy) and parse once: seconds in a fresh process, paid
    before the checker's deadlines start (`TaskSpec.warmup`)."""
    _parse_boxed("1")


register_task(TASK, math_checker, warmup=warmup)

__all__ = ["extract_answer", "gold_from_solution", "is_equivalent", "last_boxed", "math_checker", "warmup"]
