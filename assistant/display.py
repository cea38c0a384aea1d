"""Paper text and links as something else will render them: every abstract, title, author list and
url is hostile text.

- **Links** are offered only when they are http(s) (``javascript:``, ``data:``, ``vbscript:`` and
  anything that is not an absolute web address stay in the catalogue as data, never as a link).
- **Markdown** (the chat-completions ``content`` a front-end renders, the Markdown reference list)
  gets paper text with its Markdown and HTML syntax escaped, so ``<img onerror=...>``, ``[x](javascript:...)``
  and ``<javascript:...>`` show as the text they are; a renderer displays the escaped text unchanged.
- **Direction overrides** (U+202A-U+202E, U+2066-U+2069) are dropped from paper text as it is read
  (``records.clean_text``): an unclosed right-to-left override reverses everything after it on screen,
  ids and dates included.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from .records import BIDI_CONTROLS

_HTTP_URL = re.compile(r"^https?://[^\s/?#<>\"]+[^\s<>\"]*$", re.IGNORECASE)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>!|#~&])")
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_MD_ESCAPED = re.compile(r"\\([\\`*_\[\]<>!|#~&(:])")
"""What :func:`markdown_text` escapes, plus the "(" and ":" escaped after a kept ``[n]`` marker."""


def web_link(url: object) -> str | None:
    """A stored ``url`` as a link a page may render: an absolute http(s) address, anchored
    (``javascript:...//arxiv.org/abs/1`` stays data), without spaces, quotes or angle brackets
    that would end an attribute or a Markdown autolink."""
    return url.strip() if isinstance(url, str) and _HTTP_URL.match(url.strip()) else None


def markdown_text(text: str) -> str:
    """``text`` escaped for CommonMark: no HTML, link, image, emphasis or code syntax of its own."""
    return _MD_SPECIAL.sub(r"\\\1", BIDI_CONTROLS.sub("", text))


def markdown_unescape(text: str) -> str:
    """Undo :func:`markdown_text` (a chat client sends the escaped text back as history)."""
    return _MD_ESCAPED.sub(r"\1", text)


def one_line(text: str) -> str:
    """A message as one line: a newline or other control character in a name the user gave (a file, an
    id, a date) shown as its escape, so it can neither split the message nor forge a line after it."""
    return _CONTROL_CHARS.sub(lambda m: repr(m.group())[1:-1], text)


def url_part(text: str) -> str:
    """``text`` percent-encoded for the path of a link (a DOI may hold ``)``, ``<`` or spaces)."""
    return quote(text, safe="/:;=@$,+~-._")
