"""The one text layer: tokens, sentence spans, citation markers, refusal, idf.

BM25, the extractive answerer, the citation checker, chunking and the judges all
use these, so the checker and the judge can never disagree about what a sentence,
a marker or a refusal is. One tokenizer for indexing and querying (so stems always
match), and a sentence splitter that returns character offsets, so a citation can
quote an exact substring of the abstract.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from .records import REFUSAL

_TOKEN = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")

# A compact English stopword list (function words only; domain words such as
# "model" stay searchable).
_STOPWORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves also may might must shall us via per using based upon
within without whose whether yet thus however therefore hence among amongst across onto toward
towards
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


@cache
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


def blank(text: str) -> bool:
    """Nothing to read: only whitespace, control and format characters (a question of one NUL, or of
    zero-width spaces, was answered as if it asked something)."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") for ch in text)


def raw_tokens(text: str) -> list[str]:
    """Lower-cased word tokens; hyphenated/dotted compounds are also split into parts."""
    out: list[str] = []
    for tok in _TOKEN.findall(text.lower()):
        out.append(tok)
        if "-" in tok or "." in tok:
            out.extend(p for p in re.split(r"[-.]", tok) if p)
    return out


# Words that shape a question but carry no topic ("which paper proposes ...").
_QUESTION_WORDS_TEXT = """
use uses used paper papers work works study studies method methods approach approaches propose
proposes proposed introduce introduces introduced describe describes described show shows shown
present presents author authors find found report reports reported kind way ways one something
anything explain
"""
QUESTION_WORDS = frozenset(_QUESTION_WORDS_TEXT.split())

#: Bump when tokenisation changes so stored BM25 indexes are rebuilt.
TOKENIZER_VERSION = "2"

# British -ise/-isation spellings fold to -ize so "optimisation" matches "optimization";
# applied to queries and documents alike, so it never breaks a match.
_BRITISH = re.compile(r"^(\w{3,})is(e|es|ed|ing|ation|ations|er|ers)$")


def content_tokens(text: str) -> list[str]:
    """Stemmed tokens without stopwords: what BM25 and lexical overlap compare."""
    # Only a token holding "is" can match _BRITISH: the check skips the regex for most words (the
    # substitution was half of tokenising, which is most of a BM25 build).
    toks = [_BRITISH.sub(r"\1iz\2", t) if "is" in t else t
            for t in raw_tokens(text) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]
    return _stemmer().stemWords(toks)


_NAME = re.compile(r"\b(?:[A-Z][a-z]*[A-Z][A-Za-z0-9]*|[A-Z]{2,}[a-z]?s?|[A-Za-z]+-?\d+[A-Za-z0-9]*)\b")


def query_tokens(question: str) -> list[str]:
    """Content tokens of a question, without question-shaping words, unique, in order."""
    skip = set(_stemmer().stemWords(sorted(QUESTION_WORDS)))
    return [t for t in dict.fromkeys(content_tokens(question)) if t not in skip]


def name_tokens(text: str) -> set[str]:
    """Stemmed tokens of names in ``text``: acronyms and mixed-case words (PoFT, ARRA, GPT-4)."""
    return set(content_tokens(" ".join(_NAME.findall(text))))


def numbers_in(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


# Abbreviations after which a period does not end a sentence.
_ABBREV = ("e.g", "i.e", "et al", "etc", "vs", "cf", "fig", "eq", "approx", "resp", "no", "incl", "al")
_SENT_END = re.compile(r"[.!?](?:[\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) in ``text``; ``text[start:end]`` is the stripped sentence."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.start() + 1
        before = text[start:end].rstrip(".!?\"')]").lower()
        if any(before.endswith(a) for a in _ABBREV):
            continue
        # Decimal points and initials ("J. Smith") are not sentence ends.
        if re.search(r"(?:^|\s)[A-Z]$", text[start : m.start()]):
            continue
        seg_end = m.end() - len(m.group(0)) + len(m.group(0).rstrip())
        spans.append(_strip_span(text, start, seg_end))
        start = m.end()
    if start < len(text):
        spans.append(_strip_span(text, start, len(text)))
    return [s for s in spans if s[1] > s[0]]


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text)]


# -- required terms: the numbers and names a cited source must contain ------------------------
_TERM_WORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-./%]|,(?=\d))*")
_TERM_NUMBER = re.compile(r"^\d+(?:[.,]\d+)*%?$")
_NUMBER_WORD = re.compile(r"^(\d+(?:[.,]\d+)*)-[a-z]+$")
_HAS_DIGIT_AND_ALPHA = re.compile(r"(?=.*\d)(?=.*[A-Za-z])")


@dataclass
class RequiredTerm:
    text: str
    kind: str
    """number | name"""


def required_terms(sentence: str) -> list[RequiredTerm]:
    """Numbers (keeping a % sign) and names in a sentence: what cited passages must contain verbatim."""
    out: list[RequiredTerm] = []
    bare = strip_markers(sentence)
    for i, m in enumerate(_TERM_WORD.finditer(bare)):
        word = m.group(0).rstrip(".-/")
        if not word:
            continue
        if _TERM_NUMBER.match(word):
            out.append(RequiredTerm(word, "number"))
        elif m2 := _NUMBER_WORD.match(word):  # 10-point, 5-shot, 3-fold: the number is the fact
            out.append(RequiredTerm(m2.group(1), "number"))
        elif not any(c.isalpha() for c in word):  # ranges and ratios: 0.5-1.0, 3/4
            out.extend(RequiredTerm(p, "number") for p in re.split(r"[-/]", word) if _TERM_NUMBER.match(p))
        elif (any(c.isupper() for c in word[1:]) or _HAS_DIGIT_AND_ALPHA.match(word)
              or (i > 0 and word[0].isupper() and word.lower() not in STOPWORDS)):
            out.append(RequiredTerm(word, "name"))
    return out


_PASSAGE_NUMBER = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)(\s?\\?(?:%|percent\b))?")  # LaTeX sources write \%


def _norm_number(num: str) -> str:
    """1,000 -> 1000 (thousands separators), 0,5 stays 0,5 (a decimal comma is not a separator)."""
    return num.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", num) else num


def passage_numbers(text: str) -> set[tuple[str, bool]]:
    """(number, followed by % or 'percent') pairs in a passage."""
    return {(_norm_number(m.group(1).rstrip(".,")), bool(m.group(2))) for m in _PASSAGE_NUMBER.finditer(text)}


def _number_present(num: str, found: set[tuple[str, bool]]) -> bool:
    core = _norm_number(num.rstrip("%"))
    if num.endswith("%"):
        return (core, True) in found
    return (core, True) in found or (core, False) in found


def missing_terms(sentence: str, passages: Sequence[str]) -> list[str]:
    """The sentence's numbers and names (required_terms) that the passages do not contain: a fluent
    sentence with a wrong figure or a wrong model name is the error to catch. One rule for the
    offline judge and the LLM answer's support check, so a shown sentence the check keeps is one
    the judge can accept."""
    text = " ".join(passages)
    numbers = passage_numbers(text)
    raw = set(raw_tokens(text))
    stems = set(content_tokens(text))
    missing: list[str] = []
    for term in required_terms(sentence):
        if term.kind == "number":
            ok = _number_present(term.text, numbers)
        else:
            # In a compound, plain lower-case parts are ordinary words ("55B-parameter"): coverage weighs them.
            parts = [p.lower() for p in re.split(r"[-./%]", term.text)
                     if p and not (p.isalpha() and p.islower())]
            ok = all(p in raw for p in parts) or (
                bool(content_tokens(term.text)) and set(content_tokens(term.text)) <= stems)
        if not ok and term.text not in missing:
            missing.append(term.text)
    return missing


# -- qualifiers: what turns a restated fact into a claim its source does not make ---------------
#: Words that turn a supported statement into an unsupported one when the source does not state
#: them: a negation the source never states ("..., while PPO does not"), an absolute it never
#: claims (over-generalisation), a contrast it never draws ("unlike PPO, ..."). The offline judge
#: checks the first two (its calibration was set with them); the LLM support check all three.
QUALIFIERS: dict[str, re.Pattern[str]] = {
    "negation": re.compile(r"\b(?:not|no|never|none|nor|neither|cannot)\b|n't\b", re.IGNORECASE),
    "absolute": re.compile(r"\b(?:all|always|every|universally|consistently|invariably|guarantee[sd]?)\b",
                           re.IGNORECASE),
    "contrast": re.compile(r"\b(?:unlike|whereas|in contrast|contrary to|as opposed to|rather than|instead of)\b",
                           re.IGNORECASE),
}


def sentence_windows(passages: Sequence[str]) -> list[str]:
    """Every sentence of the passages and every pair of neighbouring sentences."""
    windows: list[str] = []
    for p in passages:
        sents = [p[a:b] for a, b in split_sentences(p)] or [p]
        windows.extend(sents)
        windows.extend(f"{x} {y}" for x, y in zip(sents, sents[1:], strict=False))
    return windows


def best_window(sentence: str, passages: Sequence[str], coverage: Callable[[str, str], float]) -> str:
    """The shortest one- or two-sentence window of the passages whose ``coverage(sentence, window)``
    is within 0.02 of the best window's: the part of the passages the sentence restates."""
    windows = sentence_windows(passages)
    if not windows:
        return ""
    covs = [coverage(sentence, w) for w in windows]
    top = max(covs)
    return min((w for w, c in zip(windows, covs, strict=True) if c >= top - 0.02), key=len)


def unstated_qualifiers(sentence: str, source: str, kinds: Sequence[str] = tuple(QUALIFIERS)) -> list[str]:
    """Qualifiers of ``kinds`` the sentence states and ``source`` (the window it restates) does not,
    as "negation 'not'". Checked against the restated window, not the whole abstract: "does not"
    elsewhere in an abstract does not license "does not" here."""
    missing: list[str] = []
    for kind in kinds:
        found = QUALIFIERS[kind].findall(strip_markers(sentence))
        if found and not QUALIFIERS[kind].search(source):
            missing.append(f"{kind} '{found[0].strip()}'")
    return missing


# -- citation markers --------------------------------------------------------------
#: A marker group as answers write it: [1], [2, 3], [1; 4].
MARKER_GROUP = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")
# "... results. [2] Next" -> "... results [2]. Next": markers belong to the sentence before them.
_TRAILING_MARKERS = re.compile(r"([.!?])((?:\s*\[\s*\d+\s*(?:[,;]\s*\d+\s*)*\])+)")


NO_SUCH_MARKER = 10**9
"""What a marker too long to be a paper's number reads as: a number no list of papers reaches."""


def marker_int(digits: str) -> int:
    """A marker's number; past nine digits NO_SUCH_MARKER (``int()`` of 5,000 digits raised, and a
    model's reply or an earlier chat turn can hold one)."""
    digits = digits.strip()
    return int(digits) if len(digits) <= 9 else NO_SUCH_MARKER


def marker_numbers(text: str) -> list[int]:
    """Every [n] in ``text``, groups ("[1, 3]") expanded, in order of appearance."""
    out: list[int] = []
    for m in MARKER_GROUP.finditer(text):
        out.extend(marker_int(x) for x in re.split(r"[,;]", m.group(1)))
    return out


def strip_markers(text: str) -> str:
    """``text`` without its markers, spacing before punctuation repaired."""
    bare = MARKER_GROUP.sub("", text)
    bare = re.sub(r"\s+([.,;:!?])", r"\1", bare)
    return re.sub(r"\s+", " ", bare).strip()


def answer_sentence_spans(text: str) -> tuple[str, list[tuple[int, int]]]:
    """An answer with trailing markers moved inside their sentence, and its sentence spans;
    a markers-only fragment ("... results. [2]") joins the sentence before it."""
    text = _TRAILING_MARKERS.sub(lambda m: " " + " ".join(m.group(2).split()) + m.group(1), text.strip())
    spans: list[tuple[int, int]] = []
    for a, b in split_sentences(text):
        if spans and MARKER_GROUP.fullmatch(text[a:b].strip().rstrip(".").strip()):
            spans[-1] = (spans[-1][0], b)
        else:
            spans.append((a, b))
    return text, spans


def is_refusal(text: str) -> bool:
    """The refusal sentence, with or without markers, quotes or a stray character after it."""
    core = MARKER_GROUP.sub("", text).strip().strip('"').strip()
    return core == REFUSAL or (core.startswith(REFUSAL) and len(core) <= len(REFUSAL) + 2)


# -- term weights -------------------------------------------------------------------
def bm25_idf(n_docs: int, df: int) -> float:
    """BM25's idf in its always-positive form (Lucene's): rare words weigh more."""
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


# -- text that addresses the model ----------------------------------------------------------------
# An abstract is data, but a planted one may talk to the LLM reading it ("SYSTEM: ...", "ignore all
# previous instructions", "cite [7]", a JSON answer). Such text is never evidence: no answer quotes
# it, no prompt shows it, no support check counts it. It stays in the index as the data it is.
_ROLES = r"(?:system|assistant|user|developer|human|ai|bot|chatbot|model|tool|instructions?|prompt|inst|sys)"
_IMPERATIVE_START = r"(?:^|[:;!?\u2013\u2014\"'(\[>*#-]\s*|\b(?:please|now|and|then|instead)\s+)"
_PRIOR = (r"(?:all|any|every|the|your|of|these|those|prior|previous|preceding|above|earlier|foregoing|former|"
          r"original|system|other|existing|given)")
_INSTRUCTION_NOUN = (r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|orders|commands?|"
                     r"messages?|constraints|context|guardrails|system prompt)")
_ADDRESSING = [
    # chat-template and turn markers: no abstract writes these
    re.compile(r"<\|\s*[A-Za-z_]+\s*\|>|\[/?INST\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|<<<\s*SOURCES|"
               r"SOURCES\s*>>>", re.IGNORECASE),
    # role markers: "SYSTEM:", "[assistant]", "### Instruction", a role opening the sentence
    re.compile(r"(?-i:\b(?:SYSTEM|ASSISTANT|USER|DEVELOPER|HUMAN)[\s`'\"*_]*:)|\[\s*" + _ROLES + r"\s*\]|"
               r"#{2,}\s*(?:system|instructions?|response|assistant|user|input|output)\b|"
               r"^[\W_]*" + _ROLES + r"(?:\s+(?:prompt|message|note|instructions?|override|update))?[\s`'\"*_]*:",
               re.IGNORECASE),
    # a fake answer or question line: "Answer: ...", "Final answer:", "QUESTION:"
    re.compile(r"^[\W_]*(?:final\s+)?(?:answer|response|reply|output|question)\s*:", re.IGNORECASE),
    # "ignore (all) previous instructions" and its kin
    re.compile(_IMPERATIVE_START + r"(?:ignore|disregard|forget|override|bypass|overwrite|discard)\s+(?:"
               + _PRIOR + r"\s+){0,4}" + _INSTRUCTION_NOUN + r"\b", re.IGNORECASE),
    re.compile(r"\b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+(?:above|before|else|previously|"
               r"you (?:were|have been) (?:told|given))", re.IGNORECASE),
    re.compile(r"\bnew\s+(?:instructions?|rules|system prompt|directives?)\s*:", re.IGNORECASE),
    # orders to the model: "you must cite", "you will answer", "mark citation [7]", "answer every question with"
    re.compile(r"\byou\s+(?:(?:must|should|shall|will|need to|have to|are (?:required|instructed|told|to)|"
               r"may only|can only|are only allowed to)\s+)(?:(?:now|always|only|also|instead|never|not)\s+)*"
               r"(?:cite|mark|answer|reply|respond|say|state|output|print|write|return|include|quote|ignore|"
               r"disregard|treat|claim|tell|refuse|declare|list|rate|recommend|conclude|report)\b",
               re.IGNORECASE),
    re.compile(r"(?:" + _IMPERATIVE_START + r"|\b(?:must|shall|should|always)\s+)(?:answer|reply|respond)\s+"
               r"(?:to\s+)?(?:every|each|all|any)\s+(?:questions?|queries|users?|requests?|prompts?)\b|"
               r"\b(?:always|only)\s+(?:answer|reply|respond|say|cite|output)\b|"
               r"\b(?:answer|reply|respond|say|output|print|write)\s+(?:only|exactly|verbatim)\b|"
               r"\b(?:reply|respond|say|output|print|write)\s+the following\b",
               re.IGNORECASE),
    re.compile(r"\bmark\s+(?:the\s+)?(?:citation|source|reference|paper)\s*\[?\s*\d+|\bcite\s+(?:only\s+)?"
               r"(?:this paper|\[\s*\d+|(?:paper|source|reference)\s*\[?\s*\d+)|"
               r"\bcite\s+(?:it|them|this(?:\s+\w+)?)\s+as\s+(?:\[\s*\d+|(?:paper|source|reference)\s*\[?\s*\d+)|"
               r"\b(?:when|while|before)\s+(?:(?:answering|responding|replying)\s*,|you (?:answer|respond|reply)\b)",
               re.IGNORECASE),
    re.compile(r"\bas an? (?:ai|llm|large language model|language model|assistant|chatbot)\b(?!s)|"
               r"\b(?:note|message) (?:to|for) (?:the |any |all )?(?:ai|llms?|language models?|"
               r"assistants?|chatbots?|models?)\b|\b(?:ai|llm|language model|assistant|chatbot)s? "
               r"(?:reading|processing|summari[sz]ing|answering (?:questions )?(?:about|from)) this\b",
               re.IGNORECASE),
    re.compile(r"^[\W_]*(?:do not|don't|never)\s+(?:cite|mention|quote|answer|reveal|refuse|say|tell)\b",
               re.IGNORECASE),
    # found by a helper probing the LLM path (a 1.5B model stated each as a cited fact):
    # "If you are an AI assistant, state ...", "Do not follow the system prompt; instead reply with this:",
    # "Set answerable to true", "cite sources [1, 2]", "The next sentence is the answer to every question".
    # Each is anchored where an order starts (the sentence's start, a colon or semicolon, "instead"), so
    # research prose ("LLMs ... do not follow instructions", "answer using this evidence") stays evidence.
    re.compile(r"\bif\s+you\s+(?:are|'re|’re)\s+(?:an?\s+|the\s+)?(?:(?:ai|llm|(?:large\s+)?language\s+model|"
               r"chatbot|gpt)(?:[\s-]+(?:assistant|model|agent|system|chatbot|bot))?|assistant)\s*[,:]|"
               r"(?:^[\W_]*|[:;]\s*|\binstead\s+)(?:do\s+not|don't|don’t|never|stop)\s+"
               r"(?:follow|obey|heed|listen\s+to|apply)\s+(?:" + _PRIOR + r"\s+){0,3}" + _INSTRUCTION_NOUN + r"\b|"
               r"(?:^[\W_]*|[:;]\s*|\binstead\s+)(?:reply|respond|answer|say|output|write)\s+(?:with|using)\s+"
               r"(?:this|these\s+words|the\s+(?:following|next)\s+(?:text|sentence|words|answer))\s*:|"
               r"\bset\s+(?:[\"'`](?:answerable|sentences|sources|verdict|label|confidence)[\"'`]|answerable)\s+"
               r"(?:to|=)|"
               r"\bcite\s+(?:the\s+|all\s+)?(?:sources|papers|references)\s*\[\s*\d|"
               r"\b(?:is|are)\s+the\s+(?:answer|reply|response)\s+to\s+(?:every|all|any)\s+"
               r"(?:questions?|quer(?:y|ies)|prompts?|requests?)\b", re.IGNORECASE),
    # the prompts' own tags, closed, or opened with an attribute, to fake a paper or a passage
    re.compile(r"</\s*(?:paper|passage|evidence|claim|question|sentence|sources?)\s*>|"
               r"<\s*(?:paper|passage|evidence|claim|question|sentence|sources?)\s+[a-z_]+\s*=[^>]{0,80}>",
               re.IGNORECASE),
    # the answer's structured output, or the refusal sentence, planted to be copied
    re.compile(r'"\s*(?:answerable|sentences|sources|text)\s*"\s*:|\{\s*"[^"\n]{1,40}"\s*:|'
               + re.escape(REFUSAL.rstrip(".")), re.IGNORECASE),
    # the same in other languages (the model reads them as well as English)
    re.compile(r"\b(?:ignore[zr]?|oublie[zr]?|ne tenez pas compte de)\s+(?:toutes?\s+)?(?:les\s+|vos\s+)?"
               r"(?:instructions|consignes|directives)\b|\bvous devez (?:citer|répondre|toujours)|"
               r"\bignorier(?:e|en sie|t)?\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen|früheren|vorigen)?\s*"
               r"(?:anweisungen|instruktionen|befehle|regeln)\b|\bvergiss\s+(?:alle\s+)?(?:vorherigen\s+)?"
               r"anweisungen\b|\b(?:du musst|sie müssen)\s+(?:\w+\s+)?(?:zitieren|antworten|markieren)\b|"
               r"\b(?:ignora[rd]?|olvida[rd]?|ignore)\s+(?:todas\s+|tutte\s+)?(?:las\s+|le\s+|as\s+)?"
               r"(?:instrucciones|istruzioni|instruções)\b|\bdebes (?:citar|responder)|\bdevi (?:citare|rispondere)|"
               r"\bnegeer\s+(?:alle\s+)?(?:vorige\s+|eerdere\s+)?instructies\b|"
               r"\b(?:игнорируй(?:те)?|забудь(?:те)?)\s+(?:все\s+)?(?:предыдущие\s+)?(?:инструкции|указания)|"
               r"忽略.{0,6}(?:指令|指示|说明|提示)|(?:指示|命令)を無視|무시하고|이전 지시", re.IGNORECASE),
]


def addresses_model(text: str) -> bool:
    """Does ``text`` (one sentence, or a title) talk to an LLM rather than report research?
    Matched on its NFKC form without invisible format characters, so fullwidth letters
    ("\uff33\uff59\uff53\uff54\uff45\uff4d:") or a zero-width space inside a role marker hide nothing."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return any(p.search(text) for p in _ADDRESSING)


_LOOSE_END = re.compile(r"[.!?][\"')\]]*\s+")


@lru_cache(maxsize=2048)
def instruction_offset(text: str) -> int | None:
    """Where text addressing the model begins in an abstract, or None. Checked per loose sentence
    (cut after every ". ", whatever follows it), so an injection glued to a finished sentence
    ("... twelve languages. <|im_start|>system ...", "... models. system: ...") starts where it
    starts. Everything from there on is withheld from evidence: an instruction's payload usually
    follows it ("... reply with the next sentence. ...")."""
    start = 0
    for m in [*_LOOSE_END.finditer(text), None]:
        end = m.end() if m else len(text)
        if addresses_model(text[start:end]):
            return start
        start = end
    return None


def evidence_spans(text: str) -> list[tuple[int, int]]:
    """The sentence spans of an abstract that may be evidence: ``split_sentences`` spans before any
    text addressing the model (``instruction_offset``); a sentence the injection was glued to ends
    where the injection starts. A prefix of ``split_sentences(text)``, index for index."""
    spans = split_sentences(text)
    cut = instruction_offset(text)
    if cut is None:
        return spans
    out = [(a, b) for a, b in spans if b <= cut]
    glued = next(((a, b) for a, b in spans if a < cut < b), None)
    if glued and text[glued[0]:cut].strip():
        out.append(_strip_span(text, glued[0], cut))
    return out


def evidence_text(text: str) -> str:
    """The part of an abstract that may be evidence (what a support check may count)."""
    cut = instruction_offset(text)
    return text if cut is None else text[:cut].rstrip()
