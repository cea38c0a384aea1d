"""Token-aware chunking of abstracts with exact character offsets.

Chunks are runs of the text layer's sentence spans, so offsets are never
reconstructed and a citation can quote exact text; sizes are counted in
tiktoken tokens and checked against the embedder's own window.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from ..records import Chunk, Paper
from ..runtime import ensure_offline
from ..text import split_sentences


@cache
def token_encoder(name: str = "cl100k_base") -> Any:
    """tiktoken encoder loaded from llama-index's bundled cache (never from the network)."""
    ensure_offline()
    import tiktoken

    return tiktoken.get_encoding(name)


def count_tokens(text: str) -> int:
    return len(token_encoder().encode(text, disallowed_special=()))


def chunk_paper(paper: Paper, chunk_size: int, chunk_overlap: int,
                fits: Callable[[str], bool] | None = None) -> list[Chunk]:
    """Whole sentences (the text layer's spans) packed up to ``chunk_size`` tiktoken tokens;
    neighbours share trailing sentences of up to ``chunk_overlap`` tokens. A sentence longer
    than a chunk is cut at word boundaries. ``fits`` is the embedder's window check on what
    gets embedded (title + chunk): a chunk that would be truncated there is made smaller, so
    no text is silently dropped by the encoder. Offsets are exact by construction."""
    text = paper.abstract
    units = _units(text, chunk_size)

    def ok(a: int, b: int) -> bool:
        return count_tokens(text[a:b]) <= chunk_size and (fits is None or fits(_embed_input(paper, text[a:b])))

    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, used = i, 0
        while j < len(units) and (j == i or used + units[j][2] <= chunk_size):
            used += units[j][2]
            j += 1
        while not (fitted := ok(units[i][0], units[j - 1][1])) and j - i > 1:
            j -= 1
        start, end = units[i][0], units[j - 1][1]
        if not fitted:
            end = _shrink_to_fit(text, start, end, ok)
            if end < units[j - 1][1]:  # the rest of the unit starts the next chunk
                units[j - 1] = (end, units[j - 1][1], count_tokens(text[end:units[j - 1][1]]))
                j -= 1
        chunks.append(Chunk(chunk_id=f"{paper.paper_id}#{len(chunks)}", paper_id=paper.paper_id,
                            index=len(chunks), text=text[start:end], start=start, end=end))
        if j >= len(units):
            break
        # Step back over trailing whole units for the overlap, always moving forward.
        back, shared = j, 0
        while back - 1 > i and shared + units[back - 1][2] <= chunk_overlap:
            shared += units[back - 1][2]
            back -= 1
        i = back if back > i else j
    return chunks


def _units(text: str, chunk_size: int) -> list[tuple[int, int, int]]:
    """(start, end, tokens) of each sentence, long sentences cut into word runs that fit."""
    out: list[tuple[int, int, int]] = []
    for a, b in split_sentences(text):
        n = count_tokens(text[a:b])
        if n <= chunk_size:
            out.append((a, b, n))
            continue
        run_start, run_end, run_tokens = a, a, 0
        for m in re.finditer(r"\S+", text[a:b]):
            w_start, w_end = a + m.start(), a + m.end()
            w = count_tokens(" " + m.group(0))
            if run_tokens and run_tokens + w > chunk_size:
                out.append((run_start, run_end, run_tokens))
                run_start, run_tokens = w_start, 0
            run_end, run_tokens = w_end, run_tokens + w
        if run_end > run_start:
            out.append((run_start, run_end, run_tokens))
    return out


def _shrink_to_fit(text: str, start: int, end: int, ok: Callable[[int, int], bool]) -> int:
    """The largest word-boundary end with ``ok(start, end)`` (one word at least)."""
    ends = [start + m.end() for m in re.finditer(r"\S+", text[start:end])]
    lo, hi = 0, len(ends) - 1  # ends[lo] always fits (one word); binary search the last that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(start, ends[mid]):
            lo = mid
        else:
            hi = mid - 1
    return ends[lo] if ends else end


def _embed_input(paper: Paper, chunk_text: str) -> str:
    return f"{paper.title}\n\n{chunk_text}"


def embed_text(paper: Paper, chunk: Chunk) -> str:
    """What gets embedded: the title travels with every chunk so it is searchable."""
    return _embed_input(paper, chunk.text)
