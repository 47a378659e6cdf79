"""A GSM8K-format loader for a LOCAL JSONL file (never downloads).

Each line is {"question": str, "answer": str} where the answer is the worked solution
ending in "#### <number>" (the GSM8K release format). The canonical answer is that
number with thousands separators and a leading "$" removed (e.g. "#### 1,200" ->
"1200"), validated by rlx's number parser; the reward compares numerically.
"""

from __future__ import annotations

from rlx.data.jsonl import records
from rlx.data.templates import render
from rlx.rewards.safe_eval import SafeEvalError, parse_number

TASK = "gsm8k"


def final_answer(solution: str) -> str:
    """The canonical number after the last "####" of a GSM8K solution; ValueError if absent/invalid."""
    if "####" not in solution:
        raise ValueError("no '#### <number>' final answer")
    raw = solution.rsplit("####", 1)[1].strip()
    try:
        parse_number(raw)
    except SafeEvalError as e:
        raise ValueError(f"final answer {raw[:40]!r} is not a number ({e})") from None
    return raw.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")


def load_jsonl(path: str, *, template: str = "answer", source: str = "gsm8k",
               limit: int | None = None) -> list[dict]:
    """Examples from a GSM8K-format JSONL file; errors name the file and line."""
    out = []
    for _, where, rec in records(path):
        if limit is not None and len(out) >= limit:
            break
        for field in ("question", "answer"):
            if not isinstance(rec.get(field), str) or not rec[field].strip():
                raise ValueError(f"{where}: field {field!r} must be a non-empty string")
        try:
            answer = final_answer(rec["answer"])
        except ValueError as e:
            raise ValueError(f"{where}: field 'answer': {e}") from None
        ex = {"task": TASK, "source": source, "level": 0, "index": len(out),
              "question": rec["question"].strip(), "solution": rec["answer"], "answer": answer}
        out.append(render(ex, template))
    return out
