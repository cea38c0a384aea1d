"""Per-model profiles: how much evidence a model reads and how its verdict combines with the evidence check.

A model earns a say in answer-or-refuse only through numbers fitted for it: ``assistant eval
calibrate-llm`` runs it over a fit split and a validation split, fits a small logistic model over
the evidence check's answerability and the model's own reply (its ``answerable``, how many of its
sentences survived the support check, how well supported), picks the threshold and the copy rule on
validation, and writes a profile keyed by the model's name. ``ask`` loads the profile matching
``llm.model`` (a user's own under ``<home>/profiles`` first, then the shipped ones); a model with no
profile of its own gets the default one's decision rule (the Qwen2.5-1.5B fixture's) and an evidence
budget sized from its context window, so a strong hosted model is not held to a small model's caps.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..errors import AssistantError
from .fitted import LogReg

#: Decision features, in the order the profile's logistic model stores them.
DECISION_FEATURES = ("evidence_p", "model_yes", "model_no", "kept", "kept_share", "best_support")
PROFILE_DIR = "profiles"
RECALIBRATE = "assistant eval calibrate-llm"
"""The command that fits a profile (named in errors about a bad one)."""
DEFAULT_PROFILE = "qwen2.5-coder-1.5b-instruct"
"""The shipped profile used for a model that has none of its own."""
CopyRule = Literal["off", "quantity", "all"]
#: Characters per token assumed when a context window sizes the evidence (English prose: ~4).
CHARS_PER_TOKEN = 4
#: Share of the context window the evidence may fill for a model without its own profile.
CONTEXT_SHARE = 0.25


@dataclass(frozen=True)
class Evidence:
    papers: int
    sentences: int
    chars: int


@dataclass(frozen=True)
class Profile:
    model: str
    """The model name it was fitted for (``llm.model`` when calibrated)."""
    evidence: Evidence
    decision: LogReg | None
    """p(answer) from DECISION_FEATURES; None: the evidence check alone decides (no calibration)."""
    threshold: float
    copy_numbers: CopyRule
    """Replace an answer sentence that restates an evidence sentence without its figures by that sentence:
    never (off), only for questions asking for a figure (quantity), or always (all)."""
    aliases: tuple[str, ...] = ()
    """Other model names the profile applies to (lower case; a server's file name for the same weights)."""
    meta: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    matched: bool = True
    """False when this is the default profile standing in for a model without one."""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "aliases": list(self.aliases), "evidence": asdict(self.evidence),
                "decision": self.decision.to_dict() if self.decision else None, "threshold": self.threshold,
                "copy_numbers": self.copy_numbers, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str = "") -> Profile:
        try:
            ev = d["evidence"]
            decision = LogReg.from_dict(d["decision"], DECISION_FEATURES, RECALIBRATE) if d.get("decision") else None
            copy = d.get("copy_numbers", "quantity")
            if copy not in ("off", "quantity", "all"):
                raise ValueError(f"copy_numbers must be off, quantity or all, not {copy!r}")
            return cls(str(d["model"]), Evidence(int(ev["papers"]), int(ev["sentences"]), int(ev["chars"])),
                       decision, float(d.get("threshold", 0.5)), copy,
                       tuple(str(a).lower() for a in d.get("aliases", [])), dict(d.get("meta", {})), path)
        except AssistantError as exc:
            raise AssistantError(f"{path or 'profile'}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise AssistantError(f"{path or 'profile'}: not a model profile ({type(exc).__name__}: {exc}); "
                                 f"re-run {RECALIBRATE}") from None

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)


def slug(model: str) -> str:
    """A model name as a file name: the last path part, lower case, without a .gguf suffix."""
    name = model.strip().replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    name = re.sub(r"\.gguf$", "", name)
    return re.sub(r"[^a-z0-9._-]+", "-", name).strip("-.") or "model"


def _load(path: Path) -> Profile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AssistantError(f"{path}: cannot read the model profile ({exc})") from None
    if not isinstance(data, dict):
        raise AssistantError(f"{path}: a model profile is a JSON object")
    return Profile.from_dict(data, str(path))


@lru_cache(maxsize=1)
def shipped_profiles() -> tuple[Profile, ...]:
    root = resources.files("assistant.answering.models").joinpath(PROFILE_DIR)
    out = []
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            out.append(Profile.from_dict(json.loads(item.read_text(encoding="utf-8")), f"(shipped) {item.name}"))
    return tuple(out)


def _matches(profile: Profile, model: str) -> bool:
    want = slug(model)
    names = {slug(profile.model), *profile.aliases}
    return want in names


def find_profile(model: str, setting: str = "", home: Path | None = None) -> Profile:
    """The profile for ``model``: ``setting`` (``llm.profile``: a path, or "none" for the evidence check
    alone), else ``<home>/profiles/<slug>.json``, else a shipped profile naming the model, else the
    default profile (``matched`` False)."""
    if setting.strip().lower() == "none":
        return Profile(model, Evidence(3, 2, 700), None, 0.5, "off", matched=True, path="none")
    if setting:
        path = Path(setting).expanduser()
        if not path.is_file():
            raise AssistantError(f"llm.profile: no model profile at {path}")
        return _load(path)
    if home is not None:
        own = home / PROFILE_DIR / f"{slug(model)}.json"
        if own.is_file():
            return _load(own)
    shipped = shipped_profiles()
    for p in shipped:
        if _matches(p, model):
            return p
    default = next((p for p in shipped if slug(p.model) == DEFAULT_PROFILE), None)
    if default is None:  # pragma: no cover - the package ships it
        raise AssistantError(f"the default model profile {DEFAULT_PROFILE}.json is missing from the installation")
    return Profile(default.model, default.evidence, default.decision, default.threshold, default.copy_numbers,
                   default.aliases, default.meta, default.path, matched=False)


def evidence_budget(profile: Profile, context_tokens: int | None, *, cap_chars: int,
                    papers: int = 0, sentences: int = 0, chars: int = 0) -> Evidence:
    """How much evidence goes into the prompt. Explicit settings win; a calibrated model reads what
    its profile chose; a model without a profile gets a quarter of its context window (up to
    ``cap_chars``) over more papers, or the default profile's budget when the window is unknown.
    Never more than fits: the evidence is kept under half the window."""
    ev = profile.evidence
    if not profile.matched and context_tokens:
        room = int(context_tokens * CHARS_PER_TOKEN * CONTEXT_SHARE)
        if room > ev.chars:
            ev = Evidence(max(ev.papers, 5), max(ev.sentences, 3), min(cap_chars, room))
    out = Evidence(papers or ev.papers, sentences or ev.sentences, chars or ev.chars)
    if context_tokens:
        most = max(200, context_tokens * CHARS_PER_TOKEN // 2)
        out = Evidence(out.papers, out.sentences, min(out.chars, most))
    return out


@dataclass
class Signals:
    """What the decision reads for one question (also written to ``checks`` for calibration)."""

    evidence_p: float
    """The evidence check's answerability probability (0 when it refused before scoring)."""
    model_answerable: bool | None
    kept: int
    proposed: int
    best_support: float

    def vector(self) -> list[float]:
        return [self.evidence_p, 1.0 if self.model_answerable is True else 0.0,
                1.0 if self.model_answerable is False else 0.0, min(self.kept, 3) / 3.0,
                self.kept / self.proposed if self.proposed else 0.0, self.best_support]

    def to_dict(self) -> dict[str, Any]:
        return {"evidence_p": round(self.evidence_p, 6), "model_answerable": self.model_answerable,
                "kept": self.kept, "proposed": self.proposed, "best_support": round(self.best_support, 6)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Signals:
        answerable = d.get("model_answerable")
        return cls(float(d["evidence_p"]), answerable if isinstance(answerable, bool) else None, int(d["kept"]),
                   int(d["proposed"]), float(d["best_support"]))


def decide(profile: Profile, signals: Signals) -> tuple[bool, float | None]:
    """(answer?, p) by the profile's fitted combination; without one, the evidence check alone."""
    if profile.decision is None:
        return signals.evidence_p >= 0.5, None
    p = profile.decision.prob(signals.vector())
    return p >= profile.threshold, p
