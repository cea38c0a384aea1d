"""Property tests: random and truncated files never crash a reader; failures are Problems."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.readers import SUPPORTED, read_paths
from tests.conftest import FIXTURES, SAMPLE_DIR

SEEDS = {
    ".txt": (SAMPLE_DIR / "001_71d732b7da70b2d3.txt").read_bytes()[:6000],
    ".jsonl": (FIXTURES / "readers" / "mixed.jsonl").read_bytes(),
    ".json": (FIXTURES / "readers" / "papers.json").read_bytes(),
    ".xml": (FIXTURES / "readers" / "arxiv.xml").read_bytes(),
    ".bib": (FIXTURES / "readers" / "refs.bib").read_bytes(),
    ".csv": (FIXTURES / "readers" / "zotero.csv").read_bytes(),
}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(ext: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"input{ext}"
        f.write_bytes(data)
        res = read_paths([f])  # must not raise
        assert res.files == 1
        for p in res.papers:
            assert p.title.strip() and p.abstract.strip() and p.paper_id
        for problem in res.problems:
            line = str(problem)
            assert "input" in line and "\n" not in line


@FUZZ
@given(ext=st.sampled_from(sorted(SUPPORTED)), data=st.binary(max_size=3000))
def test_random_bytes_never_crash(ext: str, data: bytes) -> None:
    _check(ext, data)


@FUZZ
@given(ext=st.sampled_from(sorted(SEEDS)), cut=st.floats(0, 1), junk=st.binary(max_size=40))
def test_truncated_real_files_never_crash(ext: str, cut: float, junk: bytes) -> None:
    seed = SEEDS[ext]
    _check(ext, seed[: int(len(seed) * cut)] + junk)


@FUZZ
@given(ext=st.sampled_from(sorted(SEEDS)), pos=st.floats(0, 1), text=st.text(max_size=30))
def test_spliced_text_never_crashes(ext: str, pos: float, text: str) -> None:
    seed = SEEDS[ext]
    i = int(len(seed) * pos)
    _check(ext, seed[:i] + text.encode("utf-8", "surrogatepass") + seed[i:])
