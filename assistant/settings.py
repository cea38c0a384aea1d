"""Typed settings from env vars and an optional TOML file.

This is the only module that reads ``os.environ`` for configuration, so every
knob is discoverable in one place (``assistant config show`` prints them).
Precedence: explicit keyword arguments > environment > TOML file > defaults.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

ENV_PREFIX = "ASSISTANT_"
#: Well-known variables accepted besides the ``ASSISTANT_`` ones.
ENV_ALIASES = {
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "chroma_host": "CHROMA_HOST",
    "chroma_port": "CHROMA_PORT",
}
SECRET_FIELDS = {"openai_api_key"}
EMBEDDING_BACKENDS = ("local", "openai")
LLM_BACKENDS = ("extractive", "openai")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "paper-assistant"


def _default_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "paper-assistant" / "config.toml"


@dataclass
class Settings:
    """Everything configurable. Field docs double as ``config show`` help."""

    home: Path = field(default_factory=_default_home)
    """Where the index, caches and lock live."""
    config_file: Path | None = None
    """TOML file read for defaults (ASSISTANT_CONFIG)."""
    cache_dir: Path | None = None
    """Embedding cache; empty = <home>/cache. Share it between homes to embed a text only once."""

    embedding: str = "local"
    """Embedding backend: local (ONNX, offline) or openai (any compatible server)."""
    embedding_model: str = ""
    """Model name; empty means the backend's default."""
    embed_batch_size: int = 1
    """Texts per ONNX call; 1 measured fastest for the int8 model on 2 cores (benchmarks/)."""
    threads: int = 0
    """CPU threads for the local model; 0 = all cores."""

    llm: str = "extractive"
    """Answer backend: extractive (offline, default) or openai."""
    llm_model: str = "gpt-4o-mini"
    openai_base_url: str = ""
    openai_api_key: str = ""
    request_timeout: float = 60.0
    max_retries: int = 3
    temperature: float = 0.0
    max_answer_tokens: int = 400
    """Upper bound on a generated answer (a few cited sentences need far fewer)."""
    prompt_char_budget: int = 16000
    """Characters of abstracts put in the LLM prompt (shared by the sources); lower it for small contexts."""

    # -- LLM answers: evidence-first prompts, structured output, checked sentences (issue 15) --
    llm_structured: str = "auto"
    """auto: ask for the JSON answer schema (response_format) and fall back to plain [n] text when the
    server rejects it; json_schema: always ask for it; off: plain text only."""
    llm_max_papers: int = 5
    """Retrieved papers whose evidence sentences go into the prompt."""
    llm_evidence_sentences: int = 2
    """Best abstract sentences per paper in the prompt (instead of whole abstracts)."""
    llm_evidence_chars: int = 1600
    """Characters of evidence sentences in the prompt, shared equally by the papers."""
    llm_min_support: float = 0.5
    """A generated sentence is shown only if its cited abstracts cover this share (idf-weighted) of its
    content words and contain every number it states; otherwise it is dropped and listed in checks."""
    llm_refusal_fallback: str = "extractive"
    """When the model refuses (or keeps no supported sentence) but the evidence check finds an answer:
    extractive = show the extractive answer; refuse = keep the refusal. Either way checks say so."""
    llm_require_evidence: bool = True
    """When the model answers but the evidence check (the extractive answerer's decision) finds no
    answer: refuse (true) or show the model's checked sentences (false)."""

    chroma_host: str = ""
    """Chroma server host; empty = embedded persistent Chroma under home."""
    chroma_port: int = 8000
    chroma_timeout: float = 30.0
    """Seconds before a Chroma server request fails (never hang on a stopped server)."""
    collection: str = "papers"

    chunk_size: int = 200
    """Tokens per chunk (tiktoken cl100k_base); 200 + title fits the 256-token encoder window."""
    chunk_overlap: int = 30

    top_k: int = 10
    """Papers retrieved per question."""
    fusion: str = "zscore"
    """How dense and BM25 rankings merge: zscore (weighted z-scored scores) or rrf."""
    rrf_k: int = 60
    """Reciprocal-rank-fusion constant (fusion = rrf)."""
    dense_weight: float = 0.5
    bm25_weight: float = 0.5
    candidates: int = 50
    """Chunks fetched from each retriever before fusion."""

    max_abstract_chars: int = 20000
    """Longer abstracts are truncated with a warning."""
    hf_page_year: int = 0
    """Year for HF Papers dates written without one; 0 = infer from the page."""

    @property
    def embedding_model_name(self) -> str:
        if self.embedding_model:
            return self.embedding_model
        return "all-MiniLM-L6-v2-int8" if self.embedding == "local" else "text-embedding-3-small"

    @property
    def server_mode(self) -> bool:
        return bool(self.chroma_host)

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def embedding_cache(self) -> Path:
        return (self.cache_dir or self.home / "cache") / "embeddings.sqlite"

    @classmethod
    def load(cls, config_file: str | Path | None = None, env: dict[str, str] | None = None,
             **overrides: Any) -> Settings:
        """Build settings from a TOML file, the environment and keyword overrides."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        cfg = config_file if config_file is not None else env.get(ENV_PREFIX + "CONFIG")
        # ASSISTANT_CONFIG="" means "no config file at all" (tests, CI); unset means the default path.
        cfg_path = None if cfg == "" else (Path(cfg).expanduser() if cfg else _default_config())
        if cfg_path is not None and cfg_path.is_file():
            try:
                data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"{cfg_path}: cannot read config file: {exc}") from exc
            data = data.get("assistant", data)
            for key, raw in data.items():
                if key not in _FIELD_TYPES:
                    raise SettingsError(f"{cfg_path}: unknown setting '{key}'")
                values[key] = _coerce(key, raw, f"{cfg_path}: {key}")
            values["config_file"] = cfg_path
        elif cfg:
            raise SettingsError(f"{cfg_path}: config file not found (ASSISTANT_CONFIG)")
        for name in _FIELD_TYPES:
            if name == "config_file":
                continue
            for var in (ENV_PREFIX + name.upper(), ENV_ALIASES.get(name)):
                if var and env.get(var, "") != "":
                    values[name] = _coerce(name, env[var], var)
                    break
        for key, raw in overrides.items():
            if raw is None:
                continue
            if key not in _FIELD_TYPES:
                raise SettingsError(f"unknown setting '{key}'")
            values[key] = _coerce(key, raw, key)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.embedding not in EMBEDDING_BACKENDS:
            raise SettingsError(f"ASSISTANT_EMBEDDING: '{self.embedding}' is not one of {EMBEDDING_BACKENDS}")
        if self.llm not in LLM_BACKENDS:
            raise SettingsError(f"ASSISTANT_LLM: '{self.llm}' is not one of {LLM_BACKENDS}")
        if self.chunk_size < 32:
            raise SettingsError("ASSISTANT_CHUNK_SIZE: must be at least 32 tokens")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise SettingsError("ASSISTANT_CHUNK_OVERLAP: must be >= 0 and smaller than the chunk size")
        if self.fusion not in ("zscore", "rrf"):
            raise SettingsError(f"ASSISTANT_FUSION: '{self.fusion}' is not one of ('zscore', 'rrf')")
        if self.top_k < 1:
            raise SettingsError("ASSISTANT_TOP_K: must be at least 1")
        if self.llm_structured not in ("auto", "json_schema", "off"):
            raise SettingsError(f"ASSISTANT_LLM_STRUCTURED: '{self.llm_structured}' is not one of "
                                "('auto', 'json_schema', 'off')")
        if self.llm_refusal_fallback not in ("extractive", "refuse"):
            raise SettingsError(f"ASSISTANT_LLM_REFUSAL_FALLBACK: '{self.llm_refusal_fallback}' is not one of "
                                "('extractive', 'refuse')")
        if self.llm_max_papers < 1 or self.llm_evidence_sentences < 1:
            raise SettingsError("ASSISTANT_LLM_MAX_PAPERS and ASSISTANT_LLM_EVIDENCE_SENTENCES: must be at least 1")

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated)."""
        new = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        new.validate()
        return new

    def public_dict(self) -> dict[str, Any]:
        """Effective settings with secrets masked, for display and eval reports."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "***" if value else ""
            out[f.name] = str(value) if isinstance(value, Path) else value
        out["embedding_model"] = self.embedding_model_name
        return out


_FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(Settings)}


def _coerce(name: str, raw: Any, where: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind.startswith("Path"):
            return Path(str(raw)).expanduser()
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        return str(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{where}: expected {kind}, got {raw!r}") from None
