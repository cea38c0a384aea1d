"""SciFact claims -> question-set JSONL (and a small corpus slice for CI smoke runs).

One question per claim of a split: the claim text is the question, the gold papers
are the claim's evidence docs (its cited docs when it has no evidence, as the
derived claims.jsonl already records), the evidence is the rationale sentences
quoted verbatim from the corpus "sentences" field, and the reference answer is
those sentences joined. ``gold_ids`` is kept so gold matching can use ids: SciFact
has two different papers titled "Summary".
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import json_text, jsonl_records, write_atomic

SPLITS = ("train", "dev")


def default_dir(repo: Path) -> Path:
    """Where the fitting scripts and benchmarks look for SciFact by default: ``shared/scifact`` beside the
    checkout ``repo``; for a linked git worktree without one there, beside the repository's main checkout
    (its ``.git`` file points into ``<main>/.git/worktrees/``), so /work/main and /work/wt/x find the same.
    Returns the checkout's own path when neither exists, for the error to name."""
    own = repo.parent / "shared" / "scifact"
    dot_git = repo / ".git"
    if own.is_dir() or not dot_git.is_file():
        return own
    line = dot_git.read_text(encoding="utf-8").strip()
    if not line.startswith("gitdir:"):
        return own
    gitdir = (repo / line.removeprefix("gitdir:").strip()).resolve()
    commondir = gitdir / "commondir"
    common = (gitdir / commondir.read_text(encoding="utf-8").strip()).resolve() if commondir.is_file() else gitdir
    main = common.parent.parent / "shared" / "scifact" if common.name == ".git" else None
    return main if main is not None and main.is_dir() else own


def read_corpus(path: str | Path) -> dict[str, dict[str, Any]]:
    """doc id -> record (id, title, abstract, sentences)."""
    out: dict[str, dict[str, Any]] = {}
    for n, _, d in jsonl_records(Path(path), "file"):
        if not isinstance(d, dict) or "id" not in d or "title" not in d:
            raise InputError(f"{path}:{n}: a corpus record needs 'id' and 'title'")
        out[str(d["id"])] = d
    return out


def claim_to_question(claim: dict[str, Any], corpus: dict[str, dict[str, Any]], where: str) -> dict[str, Any]:
    gold = [str(g) for g in claim.get("gold_ids") or []]
    if not gold:
        raise InputError(f"{where}: claim has no gold or cited documents (test split claims are unlabelled)")
    missing = [g for g in gold if g not in corpus]
    if missing:
        raise InputError(f"{where}: gold document(s) {missing} not in the corpus")
    evidence: list[dict[str, str]] = []
    for doc_id in gold:
        doc = corpus[doc_id]
        sentences = doc.get("sentences") or []
        indices = sorted({i for group in (claim.get("rationales") or {}).get(doc_id, []) for i in group})
        for i in indices:
            if not 0 <= i < len(sentences):
                raise InputError(f"{where}: rationale sentence {i} outside document {doc_id}")
            evidence.append({"title": doc["title"], "quote": sentences[i]})
    return {
        "qid": str(claim.get("qid") or f"sf-{claim.get('split')}-{claim.get('id')}"),
        "type": "lookup" if len(gold) == 1 else "multi",
        "question": claim["claim"],
        "gold_titles": [corpus[g]["title"] for g in gold],
        "answer": " ".join(e["quote"] for e in evidence),
        "evidence": evidence,
        "gold_ids": gold,
        "scifact": {"id": claim.get("id"), "split": claim.get("split"), "labels": claim.get("labels") or {},
                    "no_evidence": bool(claim.get("no_evidence")),
                    "cited_ids": [str(c) for c in claim.get("cited_ids") or gold]},
    }


def convert(claims_path: str | Path, corpus_path: str | Path, *, split: str = "dev", limit: int | None = None,
            seed: int = 13, evidence_only: bool = False) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Questions for ``split`` (all, or a seeded sample of ``limit`` kept in file order) and the corpus."""
    if split not in SPLITS:
        raise InputError(f"split '{split}': expected one of {', '.join(SPLITS)} (test claims have no labels)")
    corpus = read_corpus(corpus_path)
    claims: list[tuple[str, dict[str, Any]]] = []
    for n, _, d in jsonl_records(Path(claims_path), "file"):
        if not isinstance(d, dict) or "claim" not in d:
            raise InputError(f"{claims_path}:{n}: a claim record needs 'claim'")
        if d.get("split") == split and not (evidence_only and d.get("no_evidence")):
            claims.append((f"{claims_path}:{n}", d))
    if limit is not None and limit < len(claims):
        keep = sorted(random.Random(seed).sample(range(len(claims)), limit))
        claims = [claims[i] for i in keep]
    return [claim_to_question(c, corpus, where) for where, c in claims], corpus


def corpus_slice(questions: list[dict[str, Any]], corpus: dict[str, dict[str, Any]], *, others: int = 0,
                 seed: int = 13) -> list[dict[str, Any]]:
    """The docs the questions cite (gold and cited-without-evidence) plus ``others`` distractors drawn
    with ``seed``, in corpus order."""
    wanted = {g for q in questions for g in [*q["gold_ids"], *q.get("scifact", {}).get("cited_ids", [])]}
    rest = sorted(set(corpus) - wanted, key=lambda x: (len(x), x))
    wanted |= set(random.Random(seed).sample(rest, min(others, len(rest))))
    return [d for doc_id, d in corpus.items() if doc_id in wanted]


def write_jsonl(records: list[dict[str, Any]], path: str | Path) -> None:
    write_atomic(path, "".join(json_text(r) + "\n" for r in records))


ABSENT_EVERY = 3
"""Every third claim with evidence (per split, in file order) is an absent study."""


def absent_studies(claims_path: str | Path, split: str) -> tuple[list[dict[str, Any]], set[str]]:
    """Absent studies on SciFact: claims whose own papers are held out of the index, so that they must
    be refused while papers on neighbouring topics stay. Every ``ABSENT_EVERY``-th claim with evidence
    of ``split`` is chosen (train ones teach the claim models, dev ones are only measured; each split
    has its own index, so the one the models learn from is shaped by train claims alone). Returns the
    chosen claims and the ids of every document they cite, which are held out."""
    if split not in SPLITS:
        raise InputError(f"split '{split}': expected one of {', '.join(SPLITS)}")
    chosen: list[dict[str, Any]] = []
    gone: set[str] = set()
    seen = 0
    for _, where, d in jsonl_records(Path(claims_path), "file"):
        if not isinstance(d, dict) or not isinstance(d.get("claim"), str) or not isinstance(d.get("qid"), str):
            raise InputError(f"{where}: a claim record needs 'qid' and 'claim' (strings)")
        rationales, cited = d.get("rationales") or {}, d.get("cited_ids") or []
        if not isinstance(rationales, dict) or not isinstance(cited, list):
            raise InputError(f"{where}: 'rationales' must be an object and 'cited_ids' a list")
        if d.get("split") != split or not rationales:
            continue
        if seen % ABSENT_EVERY == 0:
            chosen.append(d)
            gone |= {str(i) for i in [*cited, *(d.get("gold_ids") or []), *rationales]}
        seen += 1
    return chosen, gone


def absent_corpus(claims_path: str | Path, corpus_path: str | Path,
                  split: str) -> tuple[list[dict[str, Any]], bytes]:
    """The absent studies of ``split`` and the corpus to ask them over (the fitting script and the
    benchmark both index these bytes, so they share one cached index)."""
    chosen, gone = absent_studies(claims_path, split)
    return chosen, without_documents(corpus_path, gone)


def without_documents(corpus_path: str | Path, gone: set[str]) -> bytes:
    """The corpus without the ``gone`` documents, one JSON record a line (re-serialised: the bytes only
    need to be the same for the same input)."""
    keep = []
    for _, where, d in jsonl_records(Path(corpus_path), "file"):
        if not isinstance(d, dict) or "id" not in d:
            raise InputError(f"{where}: a corpus record needs 'id'")
        if str(d["id"]) not in gone:
            keep.append(json.dumps(d, ensure_ascii=False) + "\n")
    return "".join(keep).encode("utf-8")
