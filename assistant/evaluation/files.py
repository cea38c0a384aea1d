"""Reading the harness's own input files (question sets, labels, gates, reports, SciFact),
and writing its outputs (reports) atomically.

Unlike the corpus readers, which collect problems and go on, a bad eval input stops the
run: every failure is one InputError naming the file, and the line for JSONL. An output
is written whole or not at all, so a failed run never leaves a previous report truncated.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..display import one_line
from ..errors import InputError, line_of_byte
from ..records import SURROGATE


def _not_found(path: Path, what: str) -> InputError:
    """Name the next step: a relative path is read from the current folder, and the project's own
    question sets and gate live in a clone (evals/), which a newcomer may not be in."""
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return InputError(f"{path}: {what} not found{where}; check the path (the project's question sets and "
                      "gate are under evals/ in a clone of the repository)")


def read_text_file(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors write one) is not content
    except FileNotFoundError:
        raise _not_found(path, what) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what}: {exc}") from None


def _line_of_bad_byte(path: Path) -> int:
    """The line holding the first byte that is not UTF-8 (for the error message)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return line_of_byte(data, exc.start)
    return 1


def jsonl_records(path: Path, what: str) -> Iterator[tuple[int, str, Any]]:
    """(line number, "file:line", parsed value) for each non-blank line, streamed."""
    try:
        fh = path.open(encoding="utf-8-sig")  # as read_text_file: a leading BOM is skipped
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
                yield n, where, parse_json(line, where)
        except UnicodeDecodeError:  # decoded in blocks: the line is found in the bytes
            raise InputError(f"{path}:{_line_of_bad_byte(path)}: cannot read {what}: not UTF-8 text") from None


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` whose every failure is one line naming ``where``: bad syntax, but also
    nesting too deep for the parser (RecursionError) and an integer too long to convert."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise InputError(f"{where}: a JSON value cannot be read ({exc})") from None


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import: setting it later could race another thread creating a file
"""The process's umask: a new report gets the mode ``open()`` would give it (mkstemp makes 0600)."""



def json_text(value: Any, **dumps: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)`` that UTF-8 can always encode: a lone surrogate
    (a question holding ``"\\ud800"``) is written as its JSON escape, so it reads back the same."""
    text = json.dumps(value, ensure_ascii=False, **dumps)
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def printable(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 file can hold) replaced by U+FFFD."""
    return SURROGATE.sub("\ufffd", text)


def printable_line(value: object) -> str:
    """A qid, type, reason or path from the data as one printable line: a lone surrogate (a question file
    may hold "q\ud800") as U+FFFD, a newline or other control character as its escape (it would forge a
    line of output or a Markdown table row)."""
    return one_line(printable(str(value)))


def _is_dir(path: Path, option: str) -> bool | None:
    """True for a folder, False for anything else that exists, None for nothing there yet; a path the
    system refuses to look at (a name too long, no permission) is the option's one-line error."""
    try:
        path.lstat()
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file above it: file_in_the_way names it
        return None
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot be written ({exc.strerror or exc})") from None
    return path.is_dir()


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` that is not a folder (``afile`` for ``afile/sub/j.xml``):
    no folder can be made under it, which mkdir reports as a bare "File exists" or "Not a directory"."""
    for parent in path.parents:
        try:
            parent.lstat()
        except OSError:
            continue
        return None if parent.is_dir() else parent
    return None


def check_outputs(out_dir: Path | None = None, files: Sequence[tuple[str, Path | None]] = (),
                  out_option: str = "--out") -> None:
    """Refuse unusable output paths before a run starts (not after every question was answered):
    ``out_dir`` must be a folder or not exist yet; each (option, file) must not be a folder; and no
    file may stand where a folder above them has to be (``--out afile/sub``)."""
    if out_dir is not None:
        if _is_dir(out_dir, out_option) is False:
            raise InputError(f"{out_option} {out_dir}: is a file; {out_option} names a folder for report.json and "
                             "report.md")
        if (blocker := file_in_the_way(out_dir)) is not None:
            raise InputError(f"{out_option} {out_dir}: {blocker} is a file, not a folder; the reports cannot be "
                             "written under it")
        for name in ("report.json", "report.md"):
            if _is_dir(out_dir / name, out_option):
                raise InputError(f"{out_option} {out_dir}: {name} in it is a folder; the report cannot be written")
    for option, path in files:
        if path is None:
            continue
        if _is_dir(path, option):
            raise InputError(f"{option} {path}: is a folder; {option} names a file to write")
        if (blocker := file_in_the_way(path)) is not None:
            raise InputError(f"{option} {path}: {blocker} is a file, not a folder; {option} cannot be written "
                             "under it")


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all (see ``write_all_atomic``)."""
    return write_all_atomic([(Path(path), text)])[0]


def write_all_atomic(outputs: Sequence[tuple[Path, str]]) -> list[Path]:
    """Write each (path, UTF-8 text) whole or not at all: every text is encoded and written to a
    temporary file beside its target and flushed before the first target is replaced (a rename).
    A failure on the way (encoding, a full disk, Ctrl-C) leaves every previous file as it was and
    no temporary file behind."""
    staged: list[tuple[str, Path]] = []
    target: Path | None = None
    replaced = 0
    try:
        for path, text in outputs:
            target = path
            data = text.encode("utf-8")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        for tmp, path in staged:
            target = path
            os.replace(tmp, path)
            replaced += 1
    except BaseException as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a folder in the way, no permission, a full disk: one line
            done = "nothing was replaced" if not replaced else \
                f"{', '.join(str(p) for _, p in staged[:replaced])} already replaced"
            blocker = file_in_the_way(target) if target is not None else None
            why = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or exc
            raise InputError(f"{target}: cannot write ({why}); {done}") from None
        raise
    return [path for _, path in staged]
