"""Reading JSONL data files record by record, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator


def records(path: str) -> Iterator[tuple[int, str, dict]]:
    """Yields (line number, "path:line", object) for every non-blank line of `path`.

    A line that is not UTF-8, not JSON, or not a JSON object raises ValueError naming the
    file and line; a file without any record raises ValueError naming it; a missing file
    raises FileNotFoundError naming it.
    """
    n = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            n += 1
            yield lineno, where, rec
    if n == 0:
        raise ValueError(f"{path}: no records (the file is empty or blank)")
