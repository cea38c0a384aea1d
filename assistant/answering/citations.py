"""Citation checking for every backend: the checked result is what users see.

Markers must resolve to a source that was given; unknown ones are removed and
counted, and resolved ones whose paper does not contain the sentence's content are
listed (a marker that resolves is not thereby a true citation). Each citation gets
the sentence of its abstract that best supports the answer sentence citing it (an
exact substring, so it can be verified), and sentences without any citation are flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..records import REFUSAL, Citation, Source
from ..text import (
    MARKER_GROUP,
    addresses_model,
    answer_sentence_spans,
    content_tokens,
    evidence_spans,
    evidence_text,
    is_refusal,
    marker_int,
)

# A marker group with the space before it, which goes when the marker is rewritten.
_MARKER_GROUP = re.compile(r"\s*" + MARKER_GROUP.pattern)
# A paper's own reference markers ("[5]", "[2, 3]", "[4-6]") inside its abstract.
_REFERENCE_MARKER = re.compile(r"\[(\s*\d+\s*(?:[,;\u2013-]\s*\d+\s*)*)\]")


def neutralise_reference_markers(text: str) -> str:
    """"DPO [5]" -> "DPO (5)": an abstract's own references become text the marker grammar
    cannot read, so they never turn into citations of other sources.

    Every backend gets abstracts through this (the extractive answer copies their sentences,
    the LLM prompt quotes them). Same length on purpose: sentence and chunk offsets into the
    stored abstract stay valid, and quotes are still taken from the stored text.
    """
    return _REFERENCE_MARKER.sub(lambda m: f"({m.group(1)})", text)


@dataclass
class CheckedAnswer:
    text: str
    refused: bool
    citations: list[Citation]
    checks: dict[str, Any] = field(default_factory=dict)


def best_quote(sentence: str, abstract: str, idf: Callable[[list[str]], dict[str, float]] | None = None) -> str | None:
    """The abstract sentence that best supports ``sentence``: verbatim containment first,
    then idf-weighted overlap of stemmed content words. Never text addressing the model
    (``text.evidence_spans``): None when the abstract has nothing else."""
    spans = evidence_spans(abstract)
    if not spans:
        return None
    bare = MARKER_GROUP.sub("", sentence).strip()
    for a, b in spans:
        # The answer may quote the sentence with its reference markers neutralised.
        seen = neutralise_reference_markers(abstract[a:b])
        if seen and (seen in bare or bare.rstrip(".") in seen):
            return abstract[a:b]
    q = set(content_tokens(bare))
    if not q:
        return abstract[spans[0][0]:spans[0][1]]
    weights = idf(sorted(q)) if idf else dict.fromkeys(q, 1.0)
    best, best_score = spans[0], -1.0
    for a, b in spans:
        toks = set(content_tokens(abstract[a:b]))
        score = sum(weights.get(t, 1.0) for t in q & toks)
        # Tie-break toward shorter sentences: denser support.
        score -= 1e-4 * (b - a)
        if score > best_score:
            best, best_score = (a, b), score
    return abstract[best[0]:best[1]]


def check_answer(text: str, sources: Sequence[Source],
                 idf: Callable[[list[str]], dict[str, float]] | None = None) -> CheckedAnswer:
    """Resolve markers against ``sources`` (numbered 1..n as given to the backend),
    renumber cited papers 1..m in order of first use, and attach quotes."""
    text, spans = answer_sentence_spans(text)
    if not text or is_refusal(text):
        return CheckedAnswer(REFUSAL, True, [], {"unknown_markers": 0, "uncited_sentences": [],
                                                 "unsupported_citations": [], "sentences": []})
    unknown = 0
    unsupported: list[dict[str, Any]] = []
    paper_tokens: dict[int, set[str]] = {}
    renumber: dict[int, int] = {}
    citations: dict[int, Citation] = {}
    sentence_rows: list[dict[str, Any]] = []
    uncited: list[str] = []
    out_sentences: list[str] = []

    for a, b in spans:
        sent = text[a:b]
        markers: list[int] = []

        def repl(m: re.Match[str], markers: list[int] = markers) -> str:
            nonlocal unknown
            keep: list[int] = []
            for raw in re.split(r"[,;]", m.group(1)):
                n = marker_int(raw)
                if 1 <= n <= len(sources):
                    if n not in renumber:
                        renumber[n] = len(renumber) + 1
                    if renumber[n] not in keep:
                        keep.append(renumber[n])
                else:
                    unknown += 1
            markers.extend(k for k in keep if k not in markers)
            return "".join(f" [{k}]" for k in keep)

        cleaned = _MARKER_GROUP.sub(repl, sent).strip()
        cleaned = re.sub(r"\s+([.,;:!?])", r"\1", cleaned)
        if not MARKER_GROUP.sub("", cleaned).strip(" .,;:"):
            # A sentence that was only markers (now gone) adds nothing.
            continue
        out_sentences.append(cleaned)
        quotes: dict[int, str | None] = {}
        inv = {v: k for k, v in renumber.items()}
        for mk in markers:
            src = sources[inv[mk] - 1]
            quote = best_quote(cleaned, src.paper.abstract, idf)
            quotes[mk] = quote
            if mk not in citations:
                citations[mk] = Citation(marker=mk, paper_id=src.paper.paper_id, title=src.paper.title,
                                         quote=quote, date=src.paper.date)
        for mk in markers:
            n = inv[mk]
            if n not in paper_tokens:
                paper = sources[n - 1].paper
                paper_tokens[n] = set(content_tokens(paper_text(paper.title, paper.abstract)))
            if _support(cleaned, paper_tokens[n], idf) < MIN_SUPPORT:
                unsupported.append({"sentence": cleaned, "marker": mk})
        if not markers:
            uncited.append(cleaned)
        sentence_rows.append({"sentence": cleaned, "markers": markers,
                              "quotes": {str(k): v for k, v in quotes.items()}})

    final = " ".join(out_sentences).strip()
    if not final or is_refusal(final):
        return CheckedAnswer(REFUSAL, True, [], {"unknown_markers": unknown, "uncited_sentences": [],
                                                 "unsupported_citations": [], "sentences": []})
    ordered = [citations[k] for k in sorted(citations)]
    return CheckedAnswer(final, False, ordered,
                         {"unknown_markers": unknown, "uncited_sentences": uncited,
                          "unsupported_citations": unsupported, "sentences": sentence_rows})


MIN_SUPPORT = 0.5
"""Each cited paper must contain this share of the sentence's content words (idf-weighted) on its
own, whatever else the sentence cites; below it the citation is listed in
``checks["unsupported_citations"]``. A marker that resolves is not thereby a true citation:
"Quokka outperforms DPO [2]" citing a DPO paper that never mentions Quokka is listed, and so is
"[3]" riding along on "[1] [2]" that carry the sentence."""


def paper_text(title: str, abstract: str) -> str:
    """What a support check may count of a paper: its title (unless it addresses the model) and the
    abstract before any text addressing the model (``text.evidence_text``)."""
    head = "" if addresses_model(title) else title
    return f"{head}. {evidence_text(abstract)}" if head else evidence_text(abstract)


def _support(sentence: str, paper_tokens: set[str],
             idf: Callable[[list[str]], dict[str, float]] | None) -> float:
    """Share of the sentence's content words (idf-weighted) found in the paper's title and abstract."""
    q = sorted(set(content_tokens(MARKER_GROUP.sub("", sentence))))
    if not q:
        return 1.0
    weights = idf(q) if idf else dict.fromkeys(q, 1.0)
    total = sum(weights.get(t, 1.0) for t in q)
    return sum(weights.get(t, 1.0) for t in q if t in paper_tokens) / total if total else 1.0


# Leading discourse connectives that read oddly out of context; trimmed from the answer text only.
_LEADIN = re.compile(r"^(however|moreover|furthermore|additionally|in addition|specifically|finally|"
                     r"to this end|to address (this|these)( (issue|issues|limitations|challenges))?|"
                     r"in this (paper|work|study)|in particular|notably|importantly|consequently),\s+",
                     re.IGNORECASE)


def cited_sentence(sentence: str, marker: int) -> str:
    """An abstract sentence as an offline answer states it: its own "[5]" kept as text, a
    dangling lead-in ("However, ...") trimmed, and ``[marker]`` inside the final punctuation."""
    s = _LEADIN.sub("", neutralise_reference_markers(sentence).strip())
    s = s[0].upper() + s[1:] if s else s
    m = re.match(r"^(.*?)([.!?])\s*$", s, re.S)
    return f"{m.group(1)} [{marker}]{m.group(2)}" if m else f"{s} [{marker}]"
