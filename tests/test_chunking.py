"""Chunks are runs of whole sentences with exact offsets, within the token budget and
within what the embedder actually reads."""

from __future__ import annotations

import pytest

from assistant.index.chunking import chunk_paper, count_tokens, embed_text
from assistant.records import Paper
from assistant.settings import Settings
from assistant.text import split_sentences


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    from assistant.index.embeddings import get_embedder

    return get_embedder(Settings.load(env={"ASSISTANT_CONFIG": ""}))


def _paper(abstract: str, title: str = "A paper") -> Paper:
    return Paper(paper_id="p1", title=title, abstract=abstract)


SENTENCES = [f"Sentence number {i} talks about preference optimisation and reward models in detail." for i in range(40)]


def test_chunks_are_whole_sentences_with_exact_offsets() -> None:
    p = _paper(" ".join(SENTENCES))
    chunks = chunk_paper(p, chunk_size=64, chunk_overlap=16)
    assert len(chunks) > 3
    starts = {a for a, _ in split_sentences(p.abstract)}
    ends = {b for _, b in split_sentences(p.abstract)}
    covered: set[int] = set()
    for c in chunks:
        assert p.abstract[c.start:c.end] == c.text
        assert c.start in starts and c.end in ends  # sentence boundaries, nothing rebuilt
        assert count_tokens(c.text) <= 64
        covered.update(i for i, (a, b) in enumerate(split_sentences(p.abstract)) if c.start <= a and b <= c.end)
    assert covered == set(range(len(SENTENCES)))
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert prev.start < nxt.start  # always moving forward
        if nxt.start < prev.end:  # neighbours share whole trailing sentences, at most the overlap
            assert count_tokens(p.abstract[nxt.start:prev.end]) <= 16 + 2


def test_a_sentence_longer_than_a_chunk_is_cut_at_words() -> None:
    long = "word " * 500 + "end."
    p = _paper(long.strip())
    chunks = chunk_paper(p, chunk_size=100, chunk_overlap=10)
    assert len(chunks) >= 5
    for c in chunks:
        assert count_tokens(c.text) <= 100 and p.abstract[c.start:c.end] == c.text
        assert not c.text.startswith(" ") and not c.text.endswith(" ")
    assert chunks[-1].end == len(p.abstract)


def test_no_chunk_is_truncated_by_the_encoder(embedder) -> None:  # type: ignore[no-untyped-def]
    # Variant ids and gene symbols cost more WordPiece than tiktoken tokens, and the title is
    # embedded with every chunk: 200 tiktoken tokens of them overflow the 256 MiniLM reads
    # (SciFact had 44 such chunks).
    sent = "ZNF804A, CACNA1C and ANK3 loci: rs1344706, rs1006737, rs10994336."
    title = ("Genome-wide association of ZNF804A, CACNA1C, ANK3, rs1344706, rs1006737 and rs10994336 "
             "with schizophrenia and bipolar disorder in 12,345 Han Chinese cases")
    p = _paper(" ".join([sent] * 30), title=title)
    unchecked = chunk_paper(p, 200, 30)
    assert any(not embedder.fits(embed_text(p, c)) for c in unchecked)  # the problem is real
    checked = chunk_paper(p, 200, 30, fits=embedder.fits)
    assert checked and all(embedder.fits(embed_text(p, c)) for c in checked)
    assert all(p.abstract[c.start:c.end] == c.text for c in checked)
    assert checked[-1].end == len(p.abstract)
