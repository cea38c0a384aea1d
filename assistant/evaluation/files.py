"""Reading the harness's own input files (question sets, labels, gates, reports, SciFact).

Unlike the corpus readers, which collect problems and go on, a bad eval input stops the
run: every failure is one InputError naming the file, and the line for JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError


def _not_found(path: Path, what: str) -> InputError:
    """Name the next step: a relative path is read from the current folder, and the project's own
    question sets and gate live in a clone (evals/), which a newcomer may not be in."""
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return InputError(f"{path}: {what} not found{where}; check the path (the project's question sets and "
                      "gate are under evals/ in a clone of the repository)")


def read_text_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _not_found(path, what) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None


def jsonl_records(path: Path, what: str) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", parsed value) for each non-blank line, streamed."""
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise _not_found(path, what) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None
    with fh:
        try:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                yield n, where, value
        except UnicodeDecodeError as exc:  # text is decoded in blocks, so no exact line to name
            raise InputError(f"{path}: cannot read {what}: {exc}") from None
