"""Evaluation harness: question sets, metrics, offline and LLM judges, reports, gate, compare.

>>> from assistant.evaluation import run_eval, load_questions, compare_reports
>>> report = run_eval(load_questions("evals/questions/dev.jsonl"), assistant, out_dir="out/dev")
>>> report.summary["hit_at_k"], report.summary["sentence_support"]
"""

from __future__ import annotations

from .compare import Comparison, compare_reports
from .files import check_outputs
from .gate import Gate, check_gate, load_gate, parse_thresholds
from .html_report import render_html, write_html
from .questions import QUESTION_TYPES, Question, load_questions, write_questions
from .report import render_junit, render_markdown, write_report
from .results import EvalReport
from .runner import check_run_options, corpus_fingerprint, git_info, run_eval

__all__ = [
    "QUESTION_TYPES", "Comparison", "EvalReport", "Gate", "Question", "check_gate", "check_outputs",
    "check_run_options",
    "compare_reports",
    "corpus_fingerprint", "git_info", "load_gate", "load_questions", "parse_thresholds", "render_junit",
    "render_html", "render_markdown", "run_eval", "write_html", "write_questions", "write_report",
]
