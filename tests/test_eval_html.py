"""The HTML eval report, made from real eval runs on the sample index and read back with html.parser:
per-type bars, the latency histogram, two runs' deltas and the worst questions carry the run's own
numbers and text, and text from answers (even a <script>) stays text."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.cli.eval_cmd import eval_app
from assistant.evaluation import EvalReport, run_eval, write_questions
from assistant.evaluation.html_report import render_html
from assistant.evaluation.questions import Question
from tests.conftest import make_settings
from tests.test_eval_run import QUESTIONS

INJECTED = "<script>alert('answer')</script>"
XSS_QUESTION = Question("xss<b>", "detail", "What does <script>alert('q')</script> TDPO constrain at the token level?",
                        ["Token-level Direct Preference Optimization"], "TDPO constrains each token with KL.", [])


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text_parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Descendants by tag and attributes (``class_`` matches one of the classes; ``data_x`` is data-x)."""
        def ok(c: Node) -> bool:
            for k, v in attrs.items():
                if k == "class_":
                    if v not in (c.attrs.get("class") or "").split():
                        return False
                elif c.attrs.get(k.replace("_", "-")) != v:
                    return False
            return tag is None or c.tag == tag

        out = []
        for c in self.children:
            if ok(c):
                out.append(c)
            out += c.find_all(tag, **attrs)
        return out


class Tree(HTMLParser):
    """A small DOM: every element with its attributes and its text (descendants' text included)."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "line"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {}, None)
        self.cur = self.root
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs), self.cur)
        self.tags.append((tag, node.attrs))
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.cur = self.cur.parent or self.root

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        node: Node | None = self.cur
        while node is not None:
            node.text_parts.append(data)
            node = node.parent


class Injecting:
    """The real assistant, whose answers get markup added to their text and first quote, as an answer
    quoting an abstract with markup in it would have."""

    def __init__(self, real: Any) -> None:
        self.real, self.settings = real, real.settings

    def get_paper(self, pid: str) -> Any:
        return self.real.get_paper(pid)

    def ask(self, question: str) -> Any:
        answer = self.real.ask(question)
        if not answer.refused:
            answer.text = f"{INJECTED} {answer.text}"
            if answer.citations:
                answer.citations[0].quote = f"{answer.citations[0].quote} </blockquote>{INJECTED}"
        return answer


@pytest.fixture(scope="module")
def runs(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from assistant.api import Assistant

    out = tmp_path_factory.mktemp("html_runs")
    qs = [*QUESTIONS, XSS_QUESTION]
    a_asst = Assistant(make_settings(sample_home, embed_cache))
    b_asst = Assistant(make_settings(sample_home, embed_cache, top_k=1))
    a_asst.auto_sample = b_asst.auto_sample = False
    try:
        a = run_eval(qs, a_asst, out_dir=out / "a", progress=False, html=out / "a.html")
        b = run_eval(qs, Injecting(b_asst), out_dir=out / "b", progress=False)
    finally:
        a_asst.index.close()
        b_asst.index.close()
    return {"a": a, "b": b, "dir": out, "questions": qs}


def test_one_run_page_is_self_contained_with_bars_histogram_and_worst(runs: dict[str, Any]) -> None:
    a: EvalReport = runs["a"]
    page = (runs["dir"] / "a.html").read_text(encoding="utf-8")  # written by run_eval(html=...)
    assert page == render_html(a)
    tree = Tree(page)
    # Self-contained: no script, no external resource, no event handler.
    assert not [t for t, _ in tree.tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [(t, k) for t, at in tree.tags for k in at if k in ("src", "href") or k.startswith("on")]
    by_type = a.summary["by_type"]
    assert set(by_type) == {"lookup", "compare", "unanswerable", "detail"}
    bars = tree.root.find_all("rect", class_="bar")
    assert bars and {b.attrs["data-run"] for b in bars} == {"A"}
    expected = {(m, t): v for t, ts in by_type.items() for m, v in ts.items()
                if v is not None and m in {b.attrs["data-metric"] for b in bars}}
    assert {(b.attrs["data-metric"], b.attrs["data-type"]): float(b.attrs["data-value"] or "nan")
            for b in bars} == pytest.approx(expected)
    for b in bars:  # heights are the values on a 110-pixel axis
        assert float(b.attrs["height"] or 0) == pytest.approx(110 * float(b.attrs["data-value"] or 0), abs=0.06)
    for metric in ("pass_rate", "hit_at_k", "sentence_support"):
        assert any(b.attrs["data-metric"] == metric for b in bars)
    assert by_type["unanswerable"]["refusal_accuracy"] == 1.0
    assert ("refusal_accuracy", "unanswerable") in {(b.attrs["data-metric"], b.attrs["data-type"]) for b in bars}
    # Histogram: bins partition the latencies (counted here from the edges, independently of numpy).
    bins = tree.root.find_all("rect", class_="bin")
    lat = [r["latency_ms"] for r in a.rows]
    assert len(bins) == 12 and sum(int(b.attrs["data-count"] or 0) for b in bins) == len(lat) == 4
    edges = [(float(b.attrs["data-lo"] or 0), float(b.attrs["data-hi"] or 0)) for b in bins]
    assert edges[0][0] == min(lat) and edges[-1][1] == max(lat)
    for i, (b, (lo, hi)) in enumerate(zip(bins, edges, strict=True)):
        inside = [x for x in lat if lo <= x < hi or (i == len(bins) - 1 and x == hi)]
        assert int(b.attrs["data-count"] or 0) == len(inside)
    # Worst questions: failing ones first, each with its answer, quotes and the judge's reasons.
    shown = tree.root.find_all("div", class_="q")
    assert sorted(q.attrs["data-qid"] or "" for q in shown) == sorted(r["qid"] for r in a.rows)
    failed_flags = [next(r for r in a.rows if r["qid"] == q.attrs["data-qid"])["failed"] for q in shown]
    assert failed_flags == sorted(failed_flags, reverse=True)
    for q in shown:
        row = next(r for r in a.rows if r["qid"] == q.attrs["data-qid"])
        assert q.find_all("span", class_="answer")[0].text == (row["answer"] or "(no answer)")
        assert [x.text for x in q.find_all("blockquote", class_="quote")] == [
            c["quote"] for c in row["citations"] if c.get("quote")]
        assert [x.text for x in q.find_all("td", class_="rationale")] == [v["rationale"] for v in row["sentences"]]
    tdpo = next(q for q in shown if q.attrs["data-qid"] == "tdpo")
    assert tdpo.find_all("blockquote", class_="quote")  # the extractive answer quotes its paper
    # The question with markup in it (qid and text) is shown as text.
    xss = next(q for q in shown if q.attrs["data-qid"] == "xss<b>")
    assert xss.find_all("span", class_="question")[0].text == XSS_QUESTION.question
    assert "<script" not in page and "xss<b>" not in page and "xss&lt;b&gt;" in page


def test_two_runs_side_by_side_with_deltas_and_injected_markup_escaped(runs: dict[str, Any]) -> None:
    a: EvalReport = runs["a"]
    b: EvalReport = runs["b"]
    page = render_html(a, b, names=["k=8 <default>", "k=1"])
    tree = Tree(page)
    assert "<script" not in page and not [t for t, _ in tree.tags if t == "script"]
    # Deltas: B - A for every summary metric either run measured.
    rows = {r.attrs["data-metric"]: r for r in tree.root.find_all("table", class_="deltas")[0].find_all("tr")
            if r.attrs.get("data-metric")}
    for metric in ("hit_at_k", "mrr", "recall_at_k", "sentence_support", "latency_p50_ms", "failed"):
        va, vb = a.summary[metric], b.summary[metric]
        cell = rows[metric].find_all("td")[-1]
        assert float(cell.attrs["data-delta"] or "nan") == pytest.approx(vb - va)
    assert b.summary["recall_at_k"] < a.summary["recall_at_k"]  # k=1 cannot retrieve both compare papers
    assert "worse" in (rows["recall_at_k"].find_all("td")[-1].attrs["class"] or "")
    # Bars for both runs, per type, with each run's values.
    bars = tree.root.find_all("rect", class_="bar")
    for run, rep in (("A", a), ("B", b)):
        got = {(x.attrs["data-metric"], x.attrs["data-type"]): float(x.attrs["data-value"] or "nan")
               for x in bars if x.attrs["data-run"] == run}
        assert got == pytest.approx({k: rep.summary["by_type"][k[1]][k[0]] for k in got})
        assert got[("hit_at_k", "compare")] == rep.summary["by_type"]["compare"]["hit_at_k"]
    assert tree.root.find_all("svg", data_chart="latency")
    counts = {run: sum(int(x.attrs["data-count"] or 0) for x in tree.root.find_all("rect", class_="bin")
                       if x.attrs["data-run"] == run) for run in "AB"}
    assert counts == {"A": 4, "B": 4}
    # Worst questions are B's, whose answers carry the injected markup: shown as text, never as markup.
    shown = tree.root.find_all("div", class_="q")
    answered = [r for r in b.rows if not r["refused"]]
    assert answered and all(r["answer"].startswith(INJECTED) for r in answered)
    for r in answered:
        q = next(x for x in shown if x.attrs["data-qid"] == r["qid"])
        assert q.find_all("span", class_="answer")[0].text == r["answer"]
        quotes = [x.text for x in q.find_all("blockquote", class_="quote")]
        assert quotes[0].endswith(f"</blockquote>{INJECTED}")
    assert "k=8 <default>" in tree.root.text and "&lt;default&gt;" in page


def test_cli_report_and_run_write_html(runs: dict[str, Any], sample_home: Path, embed_cache: Path,
                                       tmp_path: Path) -> None:
    env = {"ASSISTANT_HOME": str(sample_home), "ASSISTANT_CACHE_DIR": str(embed_cache), "ASSISTANT_CONFIG": "",
           "COLUMNS": "200", "NO_COLOR": "1"}
    runner = CliRunner()
    out = tmp_path / "two.html"
    res = runner.invoke(eval_app, ["report", str(runs["dir"] / "a"), str(runs["dir"] / "b"), "--html", str(out)],
                        env=env)
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    assert page == render_html(EvalReport.load(runs["dir"] / "a"), EvalReport.load(runs["dir"] / "b"),
                               names=[str(runs["dir"] / "a"), str(runs["dir"] / "b")])
    res = runner.invoke(eval_app, ["report", str(runs["dir"] / "a")], env=env)
    assert res.exit_code == 0 and res.output.startswith("# Evaluation report")
    qfile = tmp_path / "q.jsonl"
    write_questions(QUESTIONS[:1], qfile)
    res = runner.invoke(eval_app, ["run", str(qfile), "--out", str(tmp_path / "r"), "--html",
                                   str(tmp_path / "r.html"), "--no-progress", "--no-embed"], env=env)
    assert res.exit_code == 0, res.output
    tree = Tree((tmp_path / "r.html").read_text(encoding="utf-8"))
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [q.attrs["data-qid"] for q in tree.root.find_all("div", class_="q")] == ["tdpo"]
    assert {(x.attrs["data-metric"], float(x.attrs["data-value"] or "nan"))
            for x in tree.root.find_all("rect", class_="bar") if x.attrs["data-metric"] == "hit_at_k"} == {
        ("hit_at_k", report["summary"]["by_type"]["lookup"]["hit_at_k"])}
