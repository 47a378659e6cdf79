"""A MATH-style loader for a LOCAL JSONL file of problems with gold answers (never downloads).

Each line is a JSON object with a problem and a gold answer, under the field names
`prompt_field` / `answer_field` ("problem" / "answer" by default; e.g. "question" /
"solution"). The gold may be a bare answer ("\\frac{1}{2}", "(1, 2]") or a full
worked solution, which is reduced to its last `\\boxed{...}`
(`rlx.rewards.math_answers.gold_from_solution`). Scored by the `math` task
(math-verify). Errors name the file, the line and the field.
"""

from __future__ import annotations

from rlx.data.jsonl import records
from rlx.data.templates import render
from rlx.rewards.math_answers import gold_from_solution

TASK = "math"


def load_jsonl(path: str, *, template: str = "answer", prompt_field: str = "problem",
               answer_field: str = "answer", source: str = "math", limit: int | None = None,
               task: str = TASK) -> list[dict]:
    """Examples of the `math` task from a JSONL file (`task="jsonl"`: the user's own data,
    the same fields, checked by `data.checker`)."""
    out = []
    for _, where, rec in records(path):
        if limit is not None and len(out) >= limit:
            break
        for field in (prompt_field, answer_field):
            val = rec.get(field)
            if isinstance(val, (int, float)) and not isinstance(val, bool) and field == answer_field:
                continue
            if not isinstance(val, str) or not val.strip():
                have = ", ".join(sorted(rec)) or "none"
                raise ValueError(f"{where}: field {field!r} must be a non-empty string (fields of the record: "
                                 f"{have}; set data.prompt_field / data.answer_field)")
        try:
            gold = gold_from_solution(str(rec[answer_field]))
        except ValueError as e:
            raise ValueError(f"{where}: field {answer_field!r}: {e}") from None
        ex = {**{k: v for k, v in rec.items() if k not in (prompt_field, answer_field)},
              "task": task, "source": source, "level": 0, "index": len(out),
              "problem": rec[prompt_field].strip(), "solution": str(rec[answer_field]), "answer": gold}
        out.append(render(ex, template))
    return out
