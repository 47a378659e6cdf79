"""Answer extraction and format rewards for tagged completions.

Completions in rlx are the generated text only (never prompt + response). Every
function here is linear in the text length: tags are found with `str.find` / `count`,
never with a backtracking regex, so a 1 MB completion of repeated `<answer>` costs
milliseconds.

The strict format rule is the one of Logic-RL / DUMP (`validate_response_structure` in
DUMP's `verl/utils/reward_score/kk.py`): each required tag appears exactly once, in the
order `<think> </think> <answer> </answer>`, and nothing but whitespace or a trailing
`<|im_end|>` follows `</answer>`. With `require_think=False` (rlx's option for templates
that do not ask for reasoning) only the two answer tags are checked.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_ALLOWED_TRAILER = "<|im_end|>"


def tagged_spans(text: str, open_tag: str = ANSWER_OPEN, close_tag: str = ANSWER_CLOSE):
    """(start, end) of the contents of every non-overlapping `open ... close` pair, leftmost first.

    The same matches as `re.finditer('<answer>(.*?)</answer>', text, re.DOTALL)` (the
    official extraction), found in linear time.
    """
    spans, pos = [], 0
    while True:
        s = text.find(open_tag, pos)
        if s < 0:
            return spans
        e = text.find(close_tag, s + len(open_tag))
        if e < 0:
            return spans
        spans.append((s + len(open_tag), e))
        pos = e + len(close_tag)


def extract_tagged(text: str, open_tag: str = ANSWER_OPEN, close_tag: str = ANSWER_CLOSE) -> str | None:
    """The stripped contents of the LAST `<answer>...</answer>` pair (official rule), or None."""
    if not isinstance(text, str):
        return None
    spans = tagged_spans(text, open_tag, close_tag)
    if not spans:
        return None
    s, e = spans[-1]
    return text[s:e].strip()


def extract_plain(text: str) -> str | None:
    """For compact templates ("12+7="): the tagged answer if there is one, else the first line.

    None when the completion is empty (or only whitespace).
    """
    if not isinstance(text, str):
        return None
    tagged = extract_tagged(text)
    if tagged is not None:
        return tagged
    stripped = text.lstrip()
    if not stripped:
        return None
    line = stripped.split("\n", 1)[0] if "\n" in stripped[:4096] else stripped[:4096]
    return line.strip() or None


def strict_format_ok(text: str, require_think: bool = True) -> bool:
    """The Logic-RL / DUMP structure rule (see the module docstring)."""
    if not isinstance(text, str):
        return False
    tags = [ANSWER_OPEN, ANSWER_CLOSE]
    if require_think:
        tags = [THINK_OPEN, THINK_CLOSE] + tags
    positions = []
    for tag in tags:
        if text.count(tag) != 1:
            return False
        positions.append(text.find(tag))
    if positions != sorted(positions):
        return False
    tail = text[positions[-1] + len(ANSWER_CLOSE):].strip()
    return tail in ("", _ALLOWED_TRAILER)


def has_answer_tags(text: str) -> bool:
    """At least one well-formed `<answer>...</answer>` pair (a lenient format check)."""
    return isinstance(text, str) and bool(tagged_spans(text))


def format_reward(text: str, *, require_think: bool = False, strict: bool = True) -> float:
    """1.0 if the completion is well formed (strict rule, or any answer pair if not strict), else 0.0."""
    ok = strict_format_ok(text, require_think) if strict else has_answer_tags(text)
    return 1.0 if ok else 0.0
