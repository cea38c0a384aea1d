"""Claim verification on SciFact dev, scored as SciFact scores it.

    python benchmarks/verify_scifact.py [--limit N] [--llm] [--json OUT]

The 300 dev claims, each verified with open retrieval over all 5,183 abstracts (the same cached home
as ``benchmarks/answer_quality.py --scifact-dev`` and the fitting scripts; exact dense search, as the
label model was fitted with), scored by ``assistant/evaluation/scifact_metrics.py`` (the official
definitions, checked against the official evaluator in tests/test_scifact_metrics.py):
abstract-level Label-Only and Label+Rationale, sentence-level Selection-Only and Selection+Label P/R/F1.

Rows, measured in the same run on the same retrievals:
  * offline: ``Assistant.verify``'s offline path (label model ``answering/models/verify.json``, fitted on
    SciFact train only);
  * baseline: the top retrieved abstract, its best sentences (the same claim sentence scorer and rationale
    rule), always SUPPORT;
  * llm (``--llm --base-url URL --model NAME``): the LLM path against that OpenAI-compatible server;
    ``--llm-limit N`` scores it on the first N claims only, and
    the offline and baseline rows on that same slice are printed beside it; ``--llm-log FILE`` appends
    each claim's LLM prediction to FILE as it comes, and ``--from-log FILE`` scores such a log (a run
    stopped part-way: the claims it holds) without calling the model again.
Published dev figures are not measured here: see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assistant.answering.fit import CACHE, EXACT_ALL, _home, _settings  # noqa: E402
from assistant.evaluation.scifact_metrics import (  # noqa: E402
    METRIC_NAMES,
    gold_from_claims,
    scifact_metrics,
    sentence_indices,
    sentence_spans,
)

SCIFACT = Path(__import__("os").environ.get("ASSISTANT_SCIFACT_DIR", str(REPO.parent / "shared" / "scifact")))


def to_prediction(sources: list[Any], labels: list[Any], spans_of: Any) -> dict[str, dict[str, Any]]:
    """SciFact-format prediction of one claim's labelled papers (NEI papers left out)."""
    from assistant.answering.stance import NEI

    out: dict[str, dict[str, Any]] = {}
    for lab in labels:
        if lab.label == NEI:
            continue
        paper = sources[lab.source_index].paper
        spans = spans_of(paper)
        sents: list[int] = []
        for c in lab.rationale:
            sents.extend(i for i in sentence_indices(c.start, c.end, spans) if i not in sents)
        out[paper.paper_id] = {"label": lab.label, "sentences": sents}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N claims only")
    ap.add_argument("--split", choices=("dev", "train"), default="dev",
                    help="train: for choices (the label model was fitted on it, so its offline rows are in-sample)")
    ap.add_argument("--every", type=int, default=1, help="every Nth claim (a representative slice)")
    ap.add_argument("--llm-papers", choices=("kept", "candidates"), default=None,
                    help="llm.verify_papers for this run (default: the setting's)")
    ap.add_argument("--llm", action="store_true", help="also run the LLM path (llm settings' server)")
    ap.add_argument("--llm-limit", type=int, default=0, help="LLM path on the first N claims only")
    ap.add_argument("--base-url", default="", help="the OpenAI-compatible server for --llm (e.g. http://127.0.0.1:8080/v1)")
    ap.add_argument("--model", default="", help="model name sent to it")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds an LLM request may take")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--llm-log", type=Path, default=None,
                    help="append each claim's LLM prediction here as it comes (a long run can be scored part-way)")
    ap.add_argument("--predictions", type=Path, default=None,
                    help="write every row's predictions here (claim id -> doc -> label, sentences)")
    ap.add_argument("--from-log", type=Path, default=None,
                    help="score the LLM predictions of an --llm-log file (its claims only) instead of calling a model")
    args = ap.parse_args(argv)

    from assistant.answering.stance import SUPPORT, PaperLabel, rationale, shipped_verify_model
    from assistant.api import Assistant
    from assistant.verification import verify_offline, verify_with_llm

    corpus_path = SCIFACT / "corpus.jsonl"
    docs = {str(d["id"]): d for d in map(json.loads, corpus_path.read_text(encoding="utf-8").splitlines())}
    claims = [c for c in map(json.loads, (SCIFACT / "claims.jsonl").read_text(encoding="utf-8").splitlines())
              if c.get("split") == args.split][:: args.every]
    if args.limit:
        claims = claims[: args.limit]
    logged: dict[str, dict[str, Any]] = {}
    if args.from_log:
        logged = {str(r["id"]): r for r in map(json.loads, args.from_log.read_text(encoding="utf-8").splitlines())}
        claims = [c for c in claims if str(c["id"]) in logged]
    home = _home("scifact", corpus_path.read_bytes(), corpus_path, args.cache)
    settings = _settings(home, args.cache).with_(retrieval={"exact_search_max": EXACT_ALL})
    if args.llm:
        llm = {"request_timeout": args.timeout, "max_retries": 1}
        llm.update({k: v for k, v in (("base_url", args.base_url), ("model", args.model),
                                      ("verify_papers", args.llm_papers)) if v})
        settings = settings.with_(llm=llm)
    a = Assistant(settings)
    a.auto_sample = False
    model = shipped_verify_model()
    idf = a.index.lexical().idf
    spans_cache: dict[str, Any] = {}

    def spans_of(paper: Any) -> Any:
        if paper.paper_id not in spans_cache:
            spans_cache[paper.paper_id] = sentence_spans(paper.abstract, docs[paper.paper_id]["sentences"])
        return spans_cache[paper.paper_id]

    llm_n = (args.llm_limit or len(claims)) if args.llm else 0
    client = a.chat_client() if args.llm else None
    preds: dict[str, dict[str, Any]] = {"offline": {}, "baseline": {}, "llm": {}}
    t0 = time.perf_counter()
    llm_seconds = 0.0
    for n, c in enumerate(claims, 1):
        cid = str(c["id"])
        res = a.retriever.retrieve(c["claim"])
        ev, labels = verify_offline(c["claim"], res.sources, idf, res.chunk_sims, res.sentence_sims, model)
        preds["offline"][cid] = to_prediction(res.sources, labels, spans_of)
        top = next((p for p in ev.papers if p.source_index == 0), None)
        base = [PaperLabel(0, SUPPORT, 1.0, 1.0, 0.0, rationale(top.ranked, model.decisions.rationale_ratio))] \
            if top else []
        preds["baseline"][cid] = to_prediction(res.sources, base, spans_of)
        if cid in logged:
            preds["llm"][cid] = logged[cid]["prediction"]
            llm_seconds += logged[cid]["seconds"]
        elif client is not None and n <= llm_n:
            t = time.perf_counter()
            llm_labels, _ = verify_with_llm(client, c["claim"], res.sources, ev, labels, settings.llm.structured,
                                            settings.llm.max_answer_tokens, settings.llm.verify_papers)
            dt = time.perf_counter() - t
            llm_seconds += dt
            preds["llm"][cid] = to_prediction(res.sources, llm_labels, spans_of)
            if args.llm_log:
                with args.llm_log.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"id": cid, "seconds": round(dt, 2),
                                        "prediction": preds["llm"][cid]}) + "\n")
        if n % (10 if n <= llm_n else 50) == 0:
            print(f"{n}/{len(claims)} claims ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    gold = gold_from_claims(claims)
    out: dict[str, Any] = {"claims": len(claims), "seconds": round(time.perf_counter() - t0, 1),
                           "decisions": model.decisions.__dict__, "rows": {}}
    for name in ("offline", "baseline"):
        out["rows"][name] = scifact_metrics(gold, preds[name])
    if preds["llm"]:
        ids = list(preds["llm"])
        sub = {k: gold[k] for k in ids}
        out["llm_slice"] = {"claims": len(ids), "first_id": ids[0], "last_id": ids[-1],
                            "seconds_per_claim": round(llm_seconds / len(ids), 2),
                            "model": settings.llm.model if not logged else f"from {args.from_log}",
                            "verify_papers": settings.llm.verify_papers,
                            "base_url": settings.llm.base_url if not logged else ""}
        for name in ("llm", "offline", "baseline"):
            out["rows"][f"{name} (llm slice)"] = scifact_metrics(sub, {k: preds[name][k] for k in ids})
    print(f"SciFact {args.split}, {len(claims)} claims, open retrieval over {len(docs)} abstracts "
          f"({out['seconds']} s)")
    head = f"{'':24}" + "".join(f"{METRIC_NAMES[k]:>28}" for k in METRIC_NAMES)
    print(head)
    print(f"{'':24}" + "".join(f"{'P / R / F1':>28}" for _ in METRIC_NAMES))
    for name, m in out["rows"].items():
        cells = "".join(f"{m[k]['precision']:>10.3f}{m[k]['recall']:>7.3f}{m[k]['f1']:>7.3f}    " for k in METRIC_NAMES)
        print(f"{name:24}{cells}")
    rows = out["rows"]
    gain = rows["offline"]["abstract_rationalized"]["f1"] - rows["baseline"]["abstract_rationalized"]["f1"]
    print(f"offline - baseline, abstract Label+Rationale F1: {gain:+.3f}")
    if args.predictions:
        args.predictions.write_text(json.dumps({k: v for k, v in preds.items() if v}) + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
