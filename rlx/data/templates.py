"""Plain (chat-free) prompt templates, one family per task, kept short for tiny models.

Three styles; the style is stored in the example's `template` field, and the reward
checkers (rlx/rewards/checkers.py) read it to know where the answer is:

  * "compact": the shortest prompt; the completion IS the answer (its first line), e.g.
    arithmetic "12+7=" -> "19". No tags are needed (a tagged answer also counts).
  * "answer": a one-line instruction; the final answer goes in <answer>...</answer>.
  * "think": reasoning in <think>...</think>, then the answer in <answer>...</answer>
    (the Logic-RL / DUMP structure; the K&K default).

`render(example, style)` fills `prompt`, `template` and `response_prefix` (text a template
pre-fills at the start of the response; "" for all built-in templates) and returns the
example. Knights & Knaves has no compact style: its answer is a list of roles.
"""

from __future__ import annotations

from collections.abc import Callable

STYLES = ("compact", "answer", "think")

_ANSWER = "Give the final answer in <answer></answer>."
_THINK = "Think in <think></think>, then give the final answer in <answer></answer>."


def _tail(style: str) -> str:
    return _THINK if style == "think" else _ANSWER


def _arithmetic(ex: dict, style: str) -> str:
    if style == "compact":
        return f"{ex['expression']}="
    return f"Compute {ex['expression']}. {_tail(style)}"


def _countdown(ex: dict, style: str) -> str:
    nums = " ".join(str(n) for n in ex["numbers"])
    if style == "compact":
        return f"Using {nums} make {ex['target']}:"
    rule = "each exactly once" if ex.get("use_all", True) else "each at most once"
    return (f"Using the numbers {nums} ({rule}) and + - * / ( ), write an expression equal to "
            f"{ex['target']}. {_tail(style)}")


def _knights_knaves(ex: dict, style: str) -> str:
    if style == "compact":
        raise ValueError("template: knights_knaves has no 'compact' style (use 'answer' or 'think')")
    first = ex["names"][0]
    how = (f"List each person's role in <answer></answer>, one per line, as (1) {first} is a knight")
    if style == "think":
        return f"{ex['quiz']}\nThink in <think></think>, then {how[0].lower()}{how[1:]}."
    return f"{ex['quiz']}\n{how}."


def _gsm8k(ex: dict, style: str) -> str:
    if style == "compact":
        return f"Q: {ex['question']}\nA:"
    return f"{ex['question']}\n{_tail(style)}"


def _math(ex: dict, style: str) -> str:
    if style == "compact":
        return f"{ex['problem']}\nPut the final answer in \\boxed{{}}."
    return f"{ex['problem']}\n{_tail(style)}"


def _jsonl(ex: dict, style: str) -> str:
    # the user's own prompt: verbatim ("compact"), or with the answer-format instruction
    if style == "compact":
        return ex["problem"]
    return f"{ex['problem']}\n{_tail(style)}"


_RENDERERS: dict[str, Callable[[dict, str], str]] = {
    "arithmetic": _arithmetic, "countdown": _countdown, "knights_knaves": _knights_knaves, "gsm8k": _gsm8k,
    "math": _math, "jsonl": _jsonl,
}


def render(example: dict, style: str) -> dict:
    """Fill example['prompt'] for `style` (see the module docstring); returns the example."""
    if style not in STYLES:
        raise ValueError(f"template: unknown style {style!r}; known: {', '.join(STYLES)}")
    task = example.get("task")
    if task not in _RENDERERS:
        raise ValueError(f"template: unknown task {task!r}; known: {', '.join(sorted(_RENDERERS))}")
    example["prompt"] = _RENDERERS[task](example, style)
    example["template"] = style
    example.setdefault("response_prefix", "")
    return example
