"""Answer quality of `Assistant.ask` (issue 14's measures) beside a naive baseline, in one run.

Usage:
    python benchmarks/answer_quality.py [--questions FILE] [--json OUT]      # default: validation split
    python benchmarks/answer_quality.py --scifact-dev [--limit N] [--json OUT]
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO / "assistant" / "data" / "sample"
HOLDOUT = REPO / "evals" / "questions" / "holdout_papers.txt"
SCIFACT = REPO.parent / "shared" / "scifact"
CACHE = Path.home() / ".cache" / "paper-assistant-bench"


def holdout_titles(path: Path = HOLDOUT) -> list[str]:
    """Titles held out of the index (one a line; '#' lines are comments)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def fingerprint(*parts: bytes) -> str:
    """Key of a cached home: the source bytes, the index schema and the embedding model."""
    from assistant.index.store import SCHEMA_VERSION
    from assistant.settings import Settings

    h = hashlib.sha256(f"schema={SCHEMA_VERSION};model={Settings().embedding_model_name}".encode())
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def sample_minus_holdout(held: list[str]) -> list[dict[str, object]]:
    """The bundled sample as JSON records, without the held-out papers (read with the real readers)."""
    from assistant.readers import read_paths

    gone = set(held)
    papers = read_paths([SAMPLE]).papers
    missing = gone - {p.title for p in papers}
    if missing:
        raise SystemExit(f"error: held-out titles not in the sample: {sorted(missing)}")
    return [{"id": p.paper_id, "title": p.title, "abstract": p.abstract, "authors": list(p.authors),
             "date": p.date or None} for p in papers if p.title not in gone]


def prepared_home(kind: str, cache: Path = CACHE) -> Path:
    """An ASSISTANT_HOME with the corpus indexed, reused while its fingerprint holds."""
    from assistant.api import Assistant
    from assistant.settings import Settings

    if kind == "sample":
        records = sample_minus_holdout(holdout_titles())
        data = "\n".join(json.dumps(r, sort_keys=True) for r in records).encode()
        src_name, src_bytes = "corpus.jsonl", data
    else:
        src_bytes = (SCIFACT / "corpus.jsonl").read_bytes()
        src_name = "corpus.jsonl"
    home = cache / f"{kind}-{fingerprint(src_bytes)}"
    done = home / "READY"
    if done.exists():
        return home
    home.mkdir(parents=True, exist_ok=True)
    src = home / src_name
    if kind == "sample":
        src.write_bytes(src_bytes)
    else:
        src = SCIFACT / "corpus.jsonl"
    a = Assistant(Settings.load(config_file="", env={}, home=home, cache_dir=cache / "embed-cache"))
    a.auto_sample = False
    rep = a.ingest([src], progress=sys.stderr.isatty())
    print(f"indexed {rep.papers_total} papers into {home}", file=sys.stderr)
    done.write_text("ok\n")
    return home


if __name__ == "__main__":
    print(prepared_home(sys.argv[1]))
