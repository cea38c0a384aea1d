"""Hostile paper text, as other programs render it: Markdown (chat front-ends, the reference list), links,
terminals and right-to-left overrides. Real readers and exporters; the server-side checks are in
test_server_safety.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.display import markdown_text, markdown_unescape, web_link
from assistant.export import export
from assistant.readers import read_paths
from assistant.records import Answer, Citation, Paper, clean_text
from assistant.server import openai_compat

HOSTILE_TITLE = "<script>alert(1)</script> [Click me](javascript:alert(5)) ![x](http://evil.example/t.png)"
HOSTILE_AUTHORS = ["<b onmouseover=alert(4)>Eve</b>", "Mallory"]


def hostile(pid: str = "xss-1", url: str | None = "javascript:alert(document.domain)//https://arxiv.org/abs/1",
            **extra: object) -> Paper:
    return Paper(pid, HOSTILE_TITLE, "Reward hacking <img src=x onerror=alert(2)> happens. It is bad.",
                 authors=list(HOSTILE_AUTHORS), date="2024-03-01", url=url, extra=dict(extra))


def commonmark_html(text: str) -> str:
    """What a CommonMark renderer makes of ``text`` (markdown-it-py, which rich depends on)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").render(text)


@pytest.mark.parametrize("url", ["javascript:alert(1)", " JAVASCRIPT:alert(1)", "data:text/html,<script>x</script>",
                                 "vbscript:x", "javascript:x//https://arxiv.org/abs/1", "https://a.example/\"onx=1",
                                 "https://a.example/<x>", "http:/x", "//evil.example/x", "", None, 7])
def test_only_absolute_http_links_are_links(url: object) -> None:
    assert web_link(url) is None


def test_http_links_pass_unchanged() -> None:
    for url in ("https://arxiv.org/abs/2401.00001", "http://example.org/p?q=1#s", " https://doi.org/10.1/x "):
        assert web_link(url) == url.strip()


def test_markdown_text_shows_as_written_and_runs_nothing() -> None:
    for text in (HOSTILE_TITLE, HOSTILE_AUTHORS[0], "a_b*c* `code` | x # y ~z~ \\ end", "<javascript:alert(1)>"):
        escaped = markdown_text(text)
        assert markdown_unescape(escaped) == text
        html = commonmark_html(escaped)
        assert "<script" not in html and "<b " not in html and "<img" not in html and "<a " not in html, html
        assert "<em>" not in html and "<code>" not in html, html


def test_markdown_reference_list_escapes_every_field_and_links_only_http() -> None:
    doi = hostile("xss-2", url=None, doi="10.1/x) [y](javascript:alert(9)")
    ok = Paper("2401.00001", "A normal title", "An abstract.", authors=["Ann Lee"], date="2024")
    text = export([hostile(), doi, ok, hostile("xss-3", url="https://example.org/p")], "markdown")
    html = commonmark_html(text)
    assert "<b onmouseover" not in html and "<script>" not in html and "<img" not in html, html
    hrefs = [part.split('"', 1)[0] for part in html.split('href="')[1:]]
    # Four links: the DOI (its ")" and "[" encoded, so it stays one link), arXiv's, the http(s) url; none other.
    assert hrefs == ["https://doi.org/10.1/x%29%20%5By%5D%28javascript:alert%289%29",
                     "https://arxiv.org/abs/2401.00001", "https://example.org/p"], hrefs
    assert "javascript:alert(document.domain)" not in text  # the javascript: url is not written at all
    assert "[arXiv:2401.00001](https://arxiv.org/abs/2401.00001)" in text


@pytest.mark.parametrize("fmt", ["bibtex", "ris", "csl-json"])
def test_exports_carry_only_http_urls(fmt: str) -> None:
    text = export([hostile(), hostile("xss-3", url="https://example.org/p")], fmt)
    assert "alert(document.domain)" not in text and "https://example.org/p" in text  # (the title stays as data)


def test_chat_content_escapes_paper_text_but_keeps_markers_and_round_trips() -> None:
    quote = "Reward hacking <img src=x onerror=alert(2)> happens."
    ans = Answer(question="q", refused=False, text=f"{quote} [1] It is ![bad](javascript:x) [1, 2].",
                 citations=[Citation(1, "xss-1", HOSTILE_TITLE, quote), Citation(2, "a_b", "T*2*", None)])
    content = openai_compat.message_text(ans, openai_compat.citation_dicts(ans))
    html = commonmark_html(content)
    assert "<img" not in html and "<script" not in html and "<a " not in html and "<em>" not in html, html
    assert "[1]" in content and "[1, 2]" in content  # the answer's own markers stay markers
    body, cites = openai_compat.split_references(content)
    assert body == ans.text
    assert [(c.marker, c.paper_id, c.title) for c in cites] == [(1, "xss-1", HOSTILE_TITLE), (2, "a_b", "T*2*")]
    streamed = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content", "")
                       for e in openai_compat.stream_events(ans, "q") if e.startswith("data: {")
                       and json.loads(e[6:])["choices"])
    assert streamed == content


def test_a_kept_marker_cannot_become_a_link() -> None:
    for text in ("Results [1](https://evil.example/phish).", "[1]: https://evil.example\nIt works [1].",
                 "A & B &lt;img src=x&gt; [2] ok.", "Nothing odd \\( here [1]:x"):
        md = openai_compat.answer_markdown(text)
        html = commonmark_html(md)
        assert "<a " not in html and "<img" not in html and "&lt;img" not in html.replace("&amp;lt;img", ""), html
        assert markdown_unescape(md) == text


def test_reading_drops_terminal_controls_and_direction_overrides(tmp_path: Path) -> None:
    assert clean_text("a\x1b]0;owned\x07b\x1b[31mc\x00\x9bd \u202eevil\u2066 x\u2069") == "a]0;ownedb[31mcd evil x"
    # Control characters that are whitespace (page breaks from PDF text, NEL) still separate words.
    assert clean_text("page one\x0cpage two\x85three\x1ffour\x0bfive") == "page one page two three four five"
    assert clean_text("Arabic \u200f mark and tabs\tstay text") == "Arabic \u200f mark and tabs stay text"
    src = tmp_path / "papers.jsonl"
    src.write_text(json.dumps({"id": "t-1", "title": "Title \x1b[2J\u202eesrever", "abstract": "Abs\x07tract.",
                               "url": "https://x.example/\x1b[0m", "authors": ["Eve\x1b[5m"]}) + "\n", encoding="utf-8")
    (p,) = read_paths([src]).papers
    assert (p.title, p.abstract, p.url, p.authors) == ("Title [2Jesrever", "Abstract.", "https://x.example/[0m",
                                                       ["Eve[5m"])


@pytest.mark.parametrize(("pid", "reason"), [(".", "cannot name a paper"), ("..", "cannot name a paper"),
                                             ("a" * 513, "id of 513 characters (at most 512)")])
def test_ids_a_link_cannot_reach_are_refused_with_file_and_line(tmp_path: Path, pid: str, reason: str) -> None:
    src = tmp_path / "ids.jsonl"
    src.write_text(json.dumps({"id": "ok-1", "title": "Fine", "abstract": "Fine."}) + "\n"
                   + json.dumps({"id": pid, "title": "Bad id", "abstract": "Bad."}) + "\n", encoding="utf-8")
    res = read_paths([src])
    assert [p.paper_id for p in res.papers] == ["ok-1"]
    (problem,) = res.problems
    assert f"{src}:line 2" in str(problem) and reason in str(problem), str(problem)


def test_the_markdown_eval_report_shows_paper_text_as_text() -> None:
    from assistant.evaluation import EvalReport, render_markdown

    row = {"qid": "q<1>", "question": "What does [x](javascript:alert(1)) do?", "type": "lookup",
           "answerable": True, "refused": False, "failed": True, "fail_reasons": ["cites <b>nothing</b>"],
           "scores": {}, "latency_ms": 1, "answer": "It <img src=x onerror=alert(2)> works [1].",
           "gold_titles": [HOSTILE_TITLE], "citations": [{"marker": 1, "title": HOSTILE_TITLE}]}
    report = EvalReport(summary={"questions": 1, "failed": 1, "errors": 0}, rows=[row])
    html = commonmark_html(render_markdown(report))
    assert "<img" not in html and "<script" not in html and "<b>" not in html and "<a " not in html, html


def test_the_terminal_prints_bracketed_text_as_written(tmp_path: Path, embed_cache: Path) -> None:
    """Rich read '[...]' in a title, id, quote, question or command as markup: '[/x]' raised MarkupError (a
    traceback from papers list/search, ask --sources, verify, eval and chat), '[bold red]' styled the text."""
    import subprocess

    from tests.conftest import cli_env

    src = tmp_path / "mk.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "mk-[/y]", "title": "Gradient clipping [/x] stabilises transformers",
         "abstract": "Gradient clipping with a threshold [/b] stabilises training of transformers. We show it."},
        {"id": "mk-2", "title": "[bold red]Styled[/bold red] reward models",
         "abstract": "Reward models [i]overfit[/i] small preference sets. Ensembles reduce it."}]))
    env = cli_env(tmp_path / "home", embed_cache)

    def run(*args: str, stdin: str | None = None) -> str:
        r = subprocess.run(["assistant", *args], env=env, input=stdin, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
        return r.stdout + r.stderr

    run("ingest", str(src))
    assert "[bold red]Styled[/bold red]" in run("papers", "list") and "mk-[/y]" in run("papers", "list")
    assert "DPO [/x]" in run("papers", "search", "DPO [/x]", "-k", "1")
    assert "Gradient clipping [/x]" in run("ask", "--sources", "Does gradient clipping stabilise transformers?")
    assert "[/b]" in run("verify", "Gradient clipping with a threshold stabilises training of transformers.")
    out = run("chat", stdin="/foo[/x]\n/[bold]x\n/quit\n")
    assert "unknown command /foo[/x]" in out and "unknown command /[bold]x" in out
