"""Token-aware chunking of abstracts with character offsets.

llama-index's ``SentenceSplitter`` bounds chunks in tiktoken tokens; we locate
every chunk back in the abstract so a citation can later quote exact text.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from ..records import Chunk, Paper
from ..runtime import ensure_offline


@cache
def token_encoder(name: str = "cl100k_base") -> Any:
    """tiktoken encoder loaded from llama-index's bundled cache (never from the network)."""
    ensure_offline()
    import tiktoken

    return tiktoken.get_encoding(name)


def count_tokens(text: str) -> int:
    return len(token_encoder().encode(text, disallowed_special=()))


@cache
def _splitter(chunk_size: int, chunk_overlap: int) -> Any:
    ensure_offline()
    from llama_index.core.node_parser import SentenceSplitter

    enc = token_encoder()
    return SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                            tokenizer=lambda t: enc.encode(t, disallowed_special=()))


def chunk_paper(paper: Paper, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    text = paper.abstract
    pieces = _splitter(chunk_size, chunk_overlap).split_text(text) if text else []
    chunks: list[Chunk] = []
    cursor = 0
    for i, piece in enumerate(pieces):
        start, end = locate(text, piece, cursor)
        chunks.append(Chunk(chunk_id=f"{paper.paper_id}#{i}", paper_id=paper.paper_id, index=i,
                            text=text[start:end], start=start, end=end))
        # Overlapping chunks may begin before the previous one ends.
        cursor = max(0, start + 1)
    return chunks


def locate(text: str, piece: str, cursor: int = 0) -> tuple[int, int]:
    """Offsets of ``piece`` in ``text``, tolerant of whitespace the splitter normalised."""
    pos = text.find(piece, cursor)
    if pos < 0:
        pos = text.find(piece)
    if pos >= 0:
        return pos, pos + len(piece)
    words = piece.split()
    if not words:
        return cursor, cursor
    pattern = r"\s+".join(re.escape(w) for w in words)
    m = re.compile(pattern).search(text, cursor) or re.compile(pattern).search(text)
    if m:
        return m.start(), m.end()
    # Last resort: anchor on the first and last words.
    first = text.find(words[0], cursor)
    last = text.rfind(words[-1])
    if first >= 0 and last >= first:
        return first, last + len(words[-1])
    return cursor, min(len(text), cursor + len(piece))


def embed_text(paper: Paper, chunk: Chunk) -> str:
    """What gets embedded: the title travels with every chunk so it is searchable."""
    return f"{paper.title}\n\n{chunk.text}"
