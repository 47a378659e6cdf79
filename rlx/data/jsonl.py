"""Reading JSONL data files record by record, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator


def records(path: str) -> Iterator[tuple[int, str, dict]]:
    """Yields (line number, "path:line", object) for every non-blank line of `path`.

    A line that is not JSON, or not a JSON object, raises ValueError naming the file and
    line; a missing file raises FileNotFoundError naming it.
    """
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, where, rec
