"""The openai backend with a small local model: answer quality, refusals, checked citations, speed.

    python benchmarks/llm_path.py evals/questions/dev.jsonl --limit 10          # starts the Qwen 1.5B server
    python benchmarks/llm_path.py evals/questions/heldout.jsonl --base-url http://127.0.0.1:8080/v1
    python benchmarks/llm_path.py --calibrate-judge --every 4   # LLM judge vs the 96 hand support labels

Without --base-url it serves the Qwen2.5-Coder-1.5B-Instruct Q4_K_M fixture (.ci/fetch_test_model.py)
with llama.cpp (xllamacpp) on a loopback port. Every question goes through ``Assistant.ask`` with the
openai backend (streaming, so time to first token is measured) and is scored by the evaluation
runner with the offline judge. In the same run the extractive backend answers the same questions
(the offline baseline) and the prompt a whole-abstracts prompt would have needed is sized, so the
figures carry their own reference. Prints one table; --out writes the rows as JSON.

--calibrate-judge measures the LLM judge (``assistant eval calibrate --judge llm``: claims, then
verification, strict JSON via the schema) against the hand labels in
evals/calibration/support_labels.jsonl, beside the offline judge on the same rows; --every/--limit
take a slice when the whole file would take too long on a small CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class TimedAssistant:
    """Assistant.ask with streaming on, recording time to first token and the answer's checks."""

    def __init__(self, assistant: Any) -> None:
        self.a = assistant
        self.settings = assistant.settings
        self.records: dict[str, dict[str, Any]] = {}

    def get_paper(self, paper_id: str) -> Any:
        return self.a.get_paper(paper_id)

    def ask(self, question: str) -> Any:
        t0 = time.perf_counter()
        first: list[float] = []

        def on_token(_: str) -> None:
            if not first:
                first.append(time.perf_counter() - t0)

        ans = self.a.ask(question, on_token=on_token)
        self.records[question] = {"ttft_s": first[0] if first else None, "checks": ans.checks,
                                  "wall_s": time.perf_counter() - t0}
        return ans


def whole_abstract_chars(a: Any, question: str, k: int) -> int:
    """Characters of the sources block a whole-abstracts prompt would carry for this question."""
    return sum(len(s.paper.title) + len(s.paper.abstract) + 8 for s in a.search(question, k=k))


#: Question files written against the whole sample; every other one (fit, validation, pool, heldout-2..4)
#: runs against the sample minus evals/questions/holdout_papers.txt (their absent-study questions are
#: about the held-out papers): evals/questions/README.md.
WHOLE_SAMPLE = ("dev", "heldout")


def default_home(questions: Path) -> Path:
    """The cached index home the question file runs against (benchmarks/answer_quality.py builds
    and reuses it): the whole sample for dev and heldout, the sample minus the held-out papers for
    every other file."""
    from benchmarks.answer_quality import holdout_titles, prepared_home, sample_minus_holdout

    held = [] if questions.stem in WHOLE_SAMPLE else holdout_titles()
    return prepared_home("sample", sample_minus_holdout(held))


def summarise(rows: list[dict[str, Any]], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from assistant.evaluation.metrics import mean, percentile

    ans = [r for r in rows if r["answerable"] and not r.get("error")]
    una = [r for r in rows if not r["answerable"] and not r.get("error")]
    shown = [s for r in rows for s in r.get("sentences", [])]
    out: dict[str, Any] = {
        "questions": len(rows),
        "errors": sum(1 for r in rows if r.get("error")),
        "answerable_refused": mean(float(r["refused"]) for r in ans),
        "unanswerable_refused": mean(float(r["refused"]) for r in una),
        "citation_precision": mean(r["scores"].get("citation_precision") for r in rows),
        "citation_recall": mean(r["scores"].get("citation_recall") for r in ans),
        "sentence_support": mean(r["scores"].get("sentence_support") for r in rows),
        "shown_sentences": len(shown),
        "shown_uncited": sum(1 for s in shown if not s.get("markers")),
        "shown_unsupported": sum(1 for s in shown if s.get("supported") is False),
        "gold_numbers": mean(r["scores"].get("gold_numbers") for r in ans),
        "content_recall": mean(r["scores"].get("content_recall") for r in ans),
        "correctness_f1": mean(r["scores"].get("correctness_f1") for r in ans),
        "latency_p50_s": (percentile([r["latency_ms"] for r in rows if r.get("latency_ms")], 50) or 0) / 1000,
        "latency_p95_s": (percentile([r["latency_ms"] for r in rows if r.get("latency_ms")], 95) or 0) / 1000,
    }
    if extra:
        ttft = [e["ttft_s"] for e in extra.values() if e.get("ttft_s") is not None]
        usage = [e["checks"].get("usage", {}).get("prompt_tokens") for e in extra.values()]
        used = [e["checks"].get("usage", {}) for e in extra.values()]
        # Tokens the server read (not reused from its prompt cache): what the first token waits for.
        read = [u["prompt_tokens"] - u["cached_tokens"] for u in used if "cached_tokens" in u]
        read_ms = [u["prompt_ms"] for u in used if "prompt_ms" in u]
        gen = [u.get("completion_tokens") for u in used]
        chars = [e["checks"].get("prompt_chars") for e in extra.values()]
        whole = [e.get("whole_chars") for e in extra.values()]
        out.update({
            "ttft_p50_s": percentile(ttft, 50), "ttft_p95_s": percentile(ttft, 95),
            "prompt_tokens_mean": mean(usage), "prompt_tokens_read_mean": mean(read),
            "server_prompt_ms_p50": percentile(read_ms, 50),
            "prompt_read_tok_per_s": (sum(read) / (sum(read_ms) / 1000)) if read and sum(read_ms) else None,
            "completion_tokens_mean": mean(gen), "prompt_chars_mean": mean(chars),
            "whole_abstract_chars_mean": mean(whole),
            "model_refused": sum(1 for e in extra.values() if e["checks"].get("model_answerable") is False),
            "disagreements": sum(1 for e in extra.values() if e["checks"].get("disagreement")),
            "extractive_fallbacks": sum(1 for e in extra.values()
                                        if str(e["checks"].get("decision", "")).startswith("extractive")),
            "dropped_sentences": sum(len(e["checks"].get("dropped_sentences", [])) for e in extra.values()),
            "recited_sentences": sum(len(e["checks"].get("recited_sentences", [])) for e in extra.values()),
            "structured": sum(1 for e in extra.values() if e["checks"].get("structured")),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path, nargs="?", default=REPO / "evals" / "questions" / "dev.jsonl")
    parser.add_argument("--calibrate-judge", action="store_true", help="LLM judge agreement with the hand labels")
    parser.add_argument("--evidence-budget", action="store_true",
                        help="offline: gold evidence kept in the prompt by each evidence budget (no model)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions (after --skip)")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N questions")
    parser.add_argument("--every", type=int, default=1,
                        help="take every Nth question (question files are grouped by type: a mixed slice)")
    parser.add_argument("--base-url", default="", help="an already running OpenAI-compatible server")
    parser.add_argument("--model", default="qwen", help="model name sent to the server")
    parser.add_argument("--threads", type=int, default=2, help="server threads when this script starts it")
    parser.add_argument("--lookup", type=int, default=0, metavar="N",
                        help="server this script starts: prompt-lookup speculative decoding, drafts of up to N tokens")
    parser.add_argument("--server-bin", type=Path, default=None, metavar="PATH",
                        help="start this llama.cpp llama-server executable instead of xllamacpp")
    parser.add_argument("--home", type=Path, default=None, 
                        help="index home (default: the cached one the question file runs against)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting override, e.g. --set llm_structured=off (repeatable)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the extractive baseline")
    parser.add_argument("--peer", action="store_true",
                        help="add the stock LlamaIndex CitationQueryEngine on the same model, questions and papers")
    parser.add_argument("--replies", type=Path, default=None,
                        help="replay file (assistant eval calibrate-llm writes one beside the profile): stored "
                             "replies are re-read, new ones asked and added; latency figures then mean nothing")
    parser.add_argument("--profile", default="", help="llm.profile for the openai backend (default: by model name)")
    parser.add_argument("--out", type=Path, default=None, help="write rows + summary as JSON here")
    args = parser.parse_args(argv)

    from assistant.api import Assistant
    from assistant.evaluation.questions import load_questions
    from assistant.evaluation.runner import run_eval
    from assistant.index.ingest import sample_paths

    if args.calibrate_judge:
        return calibrate_judge(args)
    if args.evidence_budget:
        return evidence_budget(args)
    questions = load_questions(args.questions)[args.skip::args.every]
    if args.limit is not None:
        questions = questions[: args.limit]
    overrides = dict(item.split("=", 1) for item in args.set)
    home = args.home or default_home(args.questions)

    server, base_url = _server(args)
    if base_url is None:
        return 1
    try:
        settings_kw: dict[str, Any] = {"home": home, "llm": "openai", "openai_base_url": base_url,
                                       "llm_model": args.model, "request_timeout": 900, "max_retries": 0,
                                       "llm_profile": args.profile}
        settings_kw.update(overrides)
        if args.home:
            a = Assistant(**settings_kw)
            if not a.index.exists():
                a.ingest(sample_paths())
        else:
            from benchmarks.answer_quality import CACHE, settings_for

            a = Assistant(settings_for(home, CACHE), **settings_kw)
        a.auto_sample = False
        client = a.answerer("openai").client
        if args.replies:
            from assistant.evaluation.calibrate_llm import ReplayClient

            client = ReplayClient(client, args.replies)
            a.answerer("openai").client = client
        timed = TimedAssistant(a)
        report = run_eval(questions, timed, judge="offline", progress=False)
        papers = 0
        for q in questions:
            rec = timed.records.get(q.question)
            if rec is not None:
                papers = (rec["checks"].get("evidence_budget") or {}).get("papers") or papers
                rec["whole_chars"] = whole_abstract_chars(a, q.question, papers or 3)
        llm = summarise(report.rows, timed.records)
        peer = None
        if args.peer:
            peer = summarise(peer_rows(a, questions, client, papers or 3), {})
        base = no_rule = None
        if not args.no_baseline:
            ext = Assistant(settings=a.settings.with_(llm="extractive"))
            ext.auto_sample = False
            base = summarise(run_eval(questions, ext, judge="offline", progress=False).rows, {})
            no_rule = summarise(without_near_miss_rule(lambda: run_eval(questions, ext, judge="offline",
                                                                         progress=False)).rows, {})
    finally:
        if server is not None:
            server.stop()

    print(f"\n{len(questions)} questions from {args.questions} "
          f"(skip {args.skip}, every {args.every}); model {args.model} at {base_url}; "
          f"cpu count {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'measure':<28} {'openai (local LLM)':>20} {'extractive baseline':>20} {'CitationQueryEngine':>20} "
          f"{'extractive, no near-miss rule':>30}")
    for key, value in llm.items():
        ref = base.get(key) if base else None
        other = peer.get(key) if peer else None
        bare = no_rule.get(key) if no_rule else None
        print(f"{key:<28} {_fmt(value):>20} {_fmt(ref):>20} {_fmt(other):>20} {_fmt(bare):>30}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for r in report.rows:
            rec = timed.records.get(r["question"], {})
            rows.append({**r, "ttft_s": rec.get("ttft_s"), "llm_checks": rec.get("checks")})
        args.out.write_text(json.dumps({"summary": llm, "baseline": base, "peer": peer,
                                        "baseline_without_near_miss_rule": no_rule, "rows": rows}, indent=1,
                                       default=str))
    return 0


def without_near_miss_rule(run: Any) -> Any:
    """``run()`` with the extractive answerer's near-miss refusal switched off: the same run's
    reference for what the rule adds (the rule is code, not a setting, so it is lifted here)."""
    import assistant.answering.fitted as fitted

    rule = fitted.near_miss
    fitted.near_miss = lambda question, sources: []
    try:
        return run()
    finally:
        fitted.near_miss = rule


_PEER_REFUSAL = re.compile(r"\b(none of the (provided )?sources|(do|does) not (mention|provide|state|contain)|"
                          r"no (information|mention)|not (mentioned|provided|stated) in)\b", re.IGNORECASE)


def peer_rows(a: Any, questions: list[Any], client: Any, papers: int) -> list[dict[str, Any]]:
    """The stock LlamaIndex ``CitationQueryEngine`` (its own prompt, chunking and [n] citations) over the
    assistant's retriever with the same number of papers the openai backend's evidence comes from, on
    the same model through the same chat client; each answer scored like ours (offline judge). It has
    no refusal of its own: a reply saying the sources do not answer, with no citation, counts as one."""
    from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
    from llama_index.core.query_engine import CitationQueryEngine

    from assistant.evaluation.judging import passage_text
    from assistant.evaluation.runner import make_judge
    from assistant.evaluation.scoring import score_answer
    from assistant.records import REFUSAL
    from assistant.text import marker_numbers

    class ServerLLM(CustomLLM):
        """The OpenAI-compatible server as a llama-index LLM (the chat client's transport and timeouts)."""

        max_tokens: int = 256

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=4096, num_output=self.max_tokens, model_name="server")

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=client.complete([{"role": "user", "content": prompt}],
                                                           max_tokens=self.max_tokens))

        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise NotImplementedError

    engine = CitationQueryEngine(a.as_retriever(k=papers), llm=ServerLLM())
    judge = make_judge("offline", settings=a.settings)
    rows = []
    for q in questions:
        t0 = time.perf_counter()
        resp = engine.query(q.question)
        ms = (time.perf_counter() - t0) * 1000
        text = str(resp.response or "").strip()
        nodes = list(resp.source_nodes)
        citations = []
        for n in dict.fromkeys(marker_numbers(text)):
            if 1 <= n <= len(nodes):
                meta = nodes[n - 1].node.metadata
                citations.append({"marker": n, "paper_id": meta.get("paper_id"), "title": meta.get("title")})
        refused = not citations and bool(_PEER_REFUSAL.search(text))
        sources = []
        for node in nodes:
            pid = node.node.metadata.get("paper_id")
            if pid not in [x["paper_id"] for x in sources]:
                sources.append({"rank": len(sources) + 1, "paper_id": pid, "title": node.node.metadata.get("title"),
                                "score": node.score})
        answer = {"answer": REFUSAL if refused else text, "refused": refused, "citations": citations,
                  "sources": sources, "timings_ms": {"total": ms}}
        passages = {c["paper_id"]: passage_text(p.title, p.abstract) for c in citations
                    if (p := a.get_paper(c["paper_id"])) is not None}
        rows.append(score_answer(q, answer, passages, judge, k=papers, latency_ms=ms))
    return rows


def calibrate_judge(args: argparse.Namespace) -> int:
    from assistant.evaluation.calibration import agreement, judge_verdicts, load_labels
    from assistant.evaluation.llm_judge import LLMJudge
    from assistant.evaluation.offline_judge import OfflineJudge
    from assistant.llm import ChatClient
    from assistant.settings import Settings

    rows = load_labels()[args.skip::args.every]
    if args.limit is not None:
        rows = rows[: args.limit]
    server, base_url = _server(args)
    if base_url is None:
        return 1
    log = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115 - closed below

    def on_verdict(row: Any, verdict: bool | None) -> None:
        print(f"label {row.id}: llm {verdict} / hand {row.supported}", file=sys.stderr, flush=True)
        if log is not None:
            log.write(json.dumps({"id": row.id, "llm": verdict, "hand": row.supported}) + "\n")
            log.flush()

    try:
        settings = Settings.load(env={"ASSISTANT_CONFIG": ""}, llm="openai", openai_base_url=base_url,
                                 llm_model=args.model, request_timeout=900, max_retries=0)
        t0 = time.perf_counter()
        llm = judge_verdicts(rows, LLMJudge(ChatClient(settings), max_tokens=512), on_verdict)
        seconds = time.perf_counter() - t0
    finally:
        if server is not None:
            server.stop()
        if log is not None:
            log.close()
    offline = judge_verdicts(rows, OfflineJudge())
    truth = [r.supported for r in rows]
    half = len(rows) // 2
    print(f"\n{len(rows)} of the hand labels (skip {args.skip}, every {args.every}); judge model {args.model}; "
          f"{seconds / max(1, len(rows)):.1f} s per label; load average {os.getloadavg()[0]:.1f}")
    print(f"{'judge':<22} {'rows':>7} {'n':>4} {'undecided':>10} {'accuracy':>9} {'kappa':>7}  confusion")
    # The halves: a judge changed after seeing the first half is checked on the second.
    for part, sl in (("all", slice(None)), ("1st half", slice(0, half)), ("2nd half", slice(half, None))):
        for name, verdicts in (("llm (" + args.model + ")", llm), ("offline (lexical)", offline)):
            ag = agreement(truth[sl], verdicts[sl])
            print(f"{name:<22} {part:>7} {ag.n:>4} {ag.undecided:>10} {ag.accuracy:>9.3f} {ag.kappa:>7.3f}  "
                  f"{ag.confusion}")
    return 0


def evidence_budget(args: argparse.Namespace) -> int:
    """Offline (no model): how much of the gold evidence each evidence budget puts in the prompt.

    For every answerable question: the share of its gold quotes that some chosen sentence overlaps,
    and the share of the reference answer's numbers the evidence states; for all questions the
    characters of the user message (the part of the prompt a server cannot cache). The fitted
    scorer's selection over a grid of (papers, sentences per paper, characters), beside the old
    lexical selection (5 papers x 2 sentences, 1,600 characters)."""
    from assistant.answering.features import question_view
    from assistant.answering.fitted import compose, score, shipped_model
    from assistant.answering.generative import build_messages, evidence_from_candidates, select_evidence
    from assistant.evaluation.questions import load_questions
    from assistant.text import numbers_in
    from benchmarks.answer_quality import CACHE, open_assistant

    questions = load_questions(args.questions)[args.skip::args.every]
    if args.limit is not None:
        questions = questions[: args.limit]
    a = open_assistant(args.home or default_home(args.questions), CACHE)
    idf = a.index.lexical().idf
    model = shipped_model()
    grid = [(p, n, c) for p in (2, 3, 4, 5) for n in (1, 2) for c in (500, 700, 900, 1200, 1600)]
    rows: dict[Any, dict[str, list[float]]] = {}

    def add(key: Any, q: Any, evidence: list[Any]) -> None:
        r = rows.setdefault(key, {"quotes": [], "numbers": [], "chars": []})
        r["chars"].append(len(build_messages(q.question, evidence, structured=True)[1]["content"]))
        if not q.answerable:
            return
        text = " ".join(s for ev in evidence for s in ev.sentences)
        for e in q.evidence:
            ab = next((ev for ev in evidence if ev.source.paper.title == e["title"]), None)
            hit = False
            if ab is not None:
                abstract = ab.source.paper.abstract
                qa = abstract.find(e["quote"])
                qb = qa + len(e["quote"])
                for sent in ab.sentences:
                    sa = abstract.find(sent)
                    hit = hit or (qa >= 0 and sa >= 0 and sa < qb and qa < sa + len(sent))
            r["quotes"].append(float(hit))
        gold = numbers_in(q.answer)
        if gold:
            r["numbers"].append(len(gold & numbers_in(text)) / len(gold))

    for q in questions:
        res = a.retriever.retrieve(q.question)
        sources = res.sources
        view = question_view(q.question, idf)
        cands = score(model, view, sources, res.chunk_sims, res.sentence_sims) if view is not None and sources else []
        picked = compose(model, view, sources, cands).picked
        add("lexical 5x2 1600", q, select_evidence(q.question, sources, idf))
        for p_, n_, c_ in grid:
            add((p_, n_, c_), q, evidence_from_candidates(sources, cands, picked, max_papers=p_, per_paper=n_,
                                                          budget_chars=c_) if cands else [])
    print(f"{len(questions)} questions from {args.questions} (skip {args.skip}, every {args.every})")
    print(f"{'evidence (papers x per paper, chars)':<38} {'gold quotes':>11} {'gold numbers':>12} {'user chars':>10}")
    for key, r in rows.items():
        name = key if isinstance(key, str) else f"fitted {key[0]}x{key[1]} {key[2]}"
        print(f"{name:<38} {sum(r['quotes']) / max(1, len(r['quotes'])):>11.3f} "
              f"{sum(r['numbers']) / max(1, len(r['numbers'])):>12.3f} {sum(r['chars']) / len(r['chars']):>10.0f}")
    return 0


def _server(args: argparse.Namespace) -> tuple[Any, str | None]:
    """``--base-url`` when given, else a llama.cpp server on the Qwen fixture started here
    (the caller stops it); (None, None) with a one-line error when there is no fixture."""
    if args.base_url:
        if args.lookup or args.server_bin:
            print("error: --lookup and --server-bin set up the server this script starts; not with --base-url",
                  file=sys.stderr)
            return None, None
        return None, args.base_url
    from tests.llm_server import find_gguf, start_llama_server

    gguf = find_gguf("qwen")
    if gguf is None:
        print("error: no Qwen GGUF; run python .ci/fetch_test_model.py (or pass --base-url)", file=sys.stderr)
        return None, None
    t = time.perf_counter()
    server = start_llama_server(gguf, Path(tempfile.mkdtemp(prefix="llm_path_srv_")), n_ctx=4096,
                                threads=args.threads, ready_timeout=300, lookup=args.lookup, binary=args.server_bin)
    print(f"server ready in {time.perf_counter() - t:.1f}s at {server.base_url}", file=sys.stderr)
    return server, server.base_url


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
