"""Near misses: the question asks for a count, a setting or a licence that no retrieved sentence states.

"How many GPU hours did X take?" about a paper whose abstract gives only X's parameter count is the
error both answer paths made: the paper is right, a number is there, and the answer is wrong. Here the
asked-for thing is read off the question (the noun after "how many", a time for "how long did it take",
a named training setting, a licence) and looked for in the retrieved sentences: a count needs the noun
and a number in one sentence, a setting or licence one of its words. Nothing found means the papers do
not answer, whatever the answerability model says. Conservative on purpose: a question it cannot read
(comparatives, "how much of the gap") is never a near miss. Rules written on the fit split's questions
and checked on validation (``benchmarks/llm_path.py --near-miss``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..text import evidence_spans

if TYPE_CHECKING:
    from ..records import Source

#: Papers whose sentences may state the asked-for thing: the evidence comes from the top few.
TOP_PAPERS = 3

#: Words that end the noun phrase after "how many": auxiliaries, prepositions, conjunctions.
_PHRASE_END_TEXT = """
did does do is are was were has have had can could will would should may might must
in on of for to with by from at as than per and or but that which who when where while across
"""
_PHRASE_END = frozenset(_PHRASE_END_TEXT.split())
_COUNT = re.compile(r"\bhow many\s+((?:[A-Za-z][\w-]*\s*){1,4})", re.IGNORECASE)
_HOW_LONG = re.compile(r"\bhow long\b.{0,40}\b(take|took|train|trained|training|run|ran|spend|spent)\b", re.IGNORECASE)
_TIME_WORDS = ("hour", "hours", "day", "days", "minute", "minutes", "week", "weeks", "month", "months", "second",
               "seconds", "gpu-hours", "h")

#: A named setting the question asks for -> words of which one must be stated.
_SETTINGS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    # Which hardware: a sentence naming "GPUs" without saying which does not state it.
    (re.compile(r"\b(what|which) (kinds? of |types? of )?(hardware|gpus?|gpu type|accelerators?|tpus?)\b",
                re.IGNORECASE),
     ("tpu", "tpus", "tpuv4", "a100", "a100s", "h100", "h100s", "v100", "v100s", "a800", "h800", "a6000", "l40",
      "3090", "4090", "mi250", "mi300", "nvidia", "amd", "gaudi")),
    (re.compile(r"\bbatch sizes?\b", re.IGNORECASE), ("batch",)),
    (re.compile(r"\blearning rates?\b", re.IGNORECASE), ("learning rate", "lr")),
    (re.compile(r"\b(optimi[sz]er)\b", re.IGNORECASE), ("optimizer", "optimiser", "adam", "adamw", "sgd")),
    (re.compile(r"\bepochs?\b", re.IGNORECASE), ("epoch", "epochs")),
    (re.compile(r"\blicen[cs](e|ed|ing)\b", re.IGNORECASE),
     ("license", "licence", "licensed", "licenced", "mit", "apache", "gpl", "cc-by", "creative commons")),
)
#: Counted things that are units of a multiple, not a noun a sentence would state ("how many times faster").
_NOT_TARGETS = frozenset({"times", "fold", "more", "fewer", "less", "additional", "extra", "different", "distinct",
                          "new", "total", "other", "separate", "unique", "individual"})


@dataclass(frozen=True)
class Target:
    kind: str
    """count, time or setting."""
    words: tuple[str, ...]
    """Any one of them stated (as content tokens) satisfies the target."""
    needs_number: bool


def asked_for(question: str) -> list[Target]:
    """What the question asks for that a sentence must state to answer it; [] when it cannot tell."""
    targets: list[Target] = []
    m = _COUNT.search(question)
    if m:
        head = _count_noun(m.group(1))
        if head:
            targets.append(Target("count", (head,), True))
    if _HOW_LONG.search(question):
        targets.append(Target("time", _TIME_WORDS, True))
    for pattern, words in _SETTINGS:
        if pattern.search(question):
            targets.append(Target("setting", words, False))
    return targets


def _count_noun(phrase: str) -> str | None:
    """The counted noun of "how many <phrase>": the last word before the verb or preposition, when it
    reads as a plural noun (a comparative or an adverb is never a target)."""
    words: list[str] = []
    for raw in phrase.split():
        w = raw.strip("?,.;:").lower()
        if not w or w in _PHRASE_END or re.search(r"(ed|ing)$", w) and words:
            break
        words.append(w)
    words = [w for w in words if w not in _NOT_TARGETS]
    if not words:
        return None
    head = words[-1]
    if not head.endswith("s") or head.endswith("ss") or re.search(r"(er|ly)$", head):
        return None
    return head


def _stated(target: Target, sentence: str) -> bool:
    low = sentence.lower()
    toks = set(re.findall(r"[a-z0-9]+", low)) | set(re.findall(r"[a-z0-9][a-z0-9-]*", low))
    for word in target.words:
        if " " in word:
            hit = word in low
        else:  # the word or its singular/plural, never a looser stem ("annotated" is not "annotators")
            hit = bool({word, word.removesuffix("s"), word.removesuffix("es"), word + "s"} & toks)
        if hit and (not target.needs_number or re.search(r"\d", sentence)):
            return True
    return False


def unstated(question: str, sentences: Iterable[str]) -> list[Target]:
    """The targets of ``question`` that none of ``sentences`` states ([] = not a near miss)."""
    targets = asked_for(question)
    if not targets:
        return []
    pool = list(sentences)
    return [t for t in targets if not any(_stated(t, s) for s in pool)]


def near_miss(question: str, sources: Sequence[Source]) -> list[Target]:
    """``unstated`` over the sentences of the top retrieved papers (never text addressing the model)."""
    if not sources:
        return []
    pool = [s.paper.abstract[a:b] for s in sources[:TOP_PAPERS] for a, b in evidence_spans(s.paper.abstract)]
    return unstated(question, pool)


def describe(targets: Iterable[Target]) -> str:
    """For a refusal reason: "no retrieved sentence states the asked-for gpus (with a number)"."""
    parts = []
    for t in targets:
        what = t.words[0] if t.kind == "count" else ("a time" if t.kind == "time" else "/".join(t.words[:3]))
        parts.append(what + (" with a number" if t.needs_number and t.kind == "count" else ""))
    return "no retrieved sentence states the asked-for " + "; ".join(parts)
