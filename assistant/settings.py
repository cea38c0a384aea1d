"""Typed settings: one pydantic-settings object with nested sections.

This is the only module that reads ``os.environ`` for configuration, so every
knob is discoverable in one place (``assistant config show`` prints them all).
Precedence: keyword overrides > environment > TOML file > defaults.

Each nested field can be set three ways, all mapped here so messages can name
the variable the user actually wrote:

- TOML: ``[retrieval]`` / ``top_k = 8`` (the short names of ``FLAT`` also work at
  top level or under ``[assistant]``, as they did before sections existed);
- environment: ``ASSISTANT_RETRIEVAL__TOP_K=8`` or the documented short name
  ``ASSISTANT_TOP_K=8`` (and ``OPENAI_BASE_URL``, ``CHROMA_HOST`` ...);
- Python: ``Settings.load(top_k=8)`` or ``Settings.load(retrieval={"top_k": 8})``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import AssistantError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

ENV_PREFIX = "ASSISTANT_"


class SettingsError(AssistantError):
    """A setting has a value we cannot use; the message names the variable, key or option."""


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "paper-assistant"


def _default_config() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "paper-assistant" / "config.toml"


class _Section(BaseModel):
    # inf is no weight, threshold or timeout: it made scores NaN and --json output invalid JSON.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: Any) -> Any:
        """``top_k = true`` in TOML became 1 and ``max_retries = false`` 0 (pydantic reads a bool as a
        number): a number setting takes a number."""
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if isinstance(value, bool) and field is not None and field.annotation in (int, float):
            raise ValueError(f"input should be a number, not {str(value).lower()}")
        return value


class IndexSettings(_Section):
    """How papers are read, chunked, embedded and stored."""

    embedding: str = "local"
    """Embedding backend by registered name: local (ONNX, offline) or openai (any compatible server)."""
    embedding_model: str = ""
    """Model name; empty means the backend's default."""
    embed_batch_size: int = Field(1, ge=1, le=4096)
    """Texts per ONNX call; 1 measured fastest for the int8 model on 2 cores (benchmarks/)."""
    threads: int = Field(0, ge=0, le=1024)
    """CPU threads for the local model; 0 = all cores."""
    chunk_size: int = Field(200, ge=32, le=8192)
    """Tokens per chunk (tiktoken cl100k_base); 200 + title fits the 256-token encoder window."""
    chunk_overlap: int = Field(30, ge=0)
    """Tokens shared by neighbouring chunks; smaller than chunk_size."""
    max_abstract_chars: int = Field(20000, ge=200)
    """Longer abstracts are truncated with a warning."""
    hf_page_year: int = Field(0, ge=0, le=9999)
    """Year for HF Papers dates written without one; 0 = infer from the page."""
    chroma_host: str = ""
    """Chroma server host; empty = embedded persistent Chroma under home."""
    chroma_port: int = Field(8000, ge=1, le=65535)
    chroma_timeout: float = Field(30.0, gt=0)
    """Seconds before a Chroma server request fails (never hang on a stopped server)."""
    collection: str = "default"
    """The named collection (separate papers, vectors and BM25 in one home) that commands read and write;
    `assistant collections list` shows them. "default" is the index a home had before collections
    (Chroma collection "papers"; "papers" is accepted as its old name)."""
    sentence_vectors: bool = True
    """Embed every abstract sentence at ingest (collection NAME.sentences) so answerers score
    candidate sentences against the question with no model call; off = chunks only (faster ingest)."""
    sentence_strategy: Literal["auto", "all", "top", "query-time"] = "auto"
    """Which sentence vectors are stored (index.sentence_vectors on). all: every sentence (~5x the chunk
    vectors); top: index.sentence_top per paper (the longest), the rest of the answered papers' sentences
    embedded at question time; query-time: none stored, the answered papers' sentences embedded at question
    time, no sentence ranking signal; auto: all up to index.sentence_auto_papers papers, else query-time."""
    sentence_top: int = Field(3, ge=1, le=100)
    """Sentences per paper whose vectors are stored with sentence_strategy = top."""
    sentence_auto_papers: int = Field(20000, ge=0)
    """Largest index (papers) that sentence_strategy = auto gives every sentence vector; above: query-time."""
    sentence_query_papers: int = Field(5, ge=0, le=1000)
    """Retrieved papers (best first) whose unstored sentence vectors are embedded at question time
    (sentence_strategy top / query-time); the answerers read the first 5."""
    embedding_base_url: str = ""
    """OpenAI-compatible /embeddings server for embedding = openai (TEI, vLLM, llama.cpp --embeddings),
    e.g. http://gpu-box:8080/v1; empty = llm.base_url (the key is llm.api_key)."""
    embedding_timeout: float = Field(0.0, ge=0)
    """Seconds one embeddings request may take (retries: llm.max_retries) before it fails; 0 = llm.request_timeout."""
    embedding_request_texts: int = Field(64, ge=1, le=4096)
    """Texts sent per embeddings request (embedding = openai)."""
    embedding_concurrency: int = Field(2, ge=1, le=64)
    """Embeddings requests in flight at once (embedding = openai): the server batches them on its GPU."""

    @field_validator("chroma_host")
    @classmethod
    def _host_not_url(cls, value: str) -> str:
        """A host name, not a URL: 'http://127.0.0.1' gave "Could not connect" without saying why."""
        if "://" in value or "/" in value:
            raise ValueError("a host name is wanted, not a URL (e.g. 127.0.0.1, with the port in CHROMA_PORT)")
        return value.strip()

    @field_validator("collection", mode="before")
    @classmethod
    def _collection_name(cls, value: Any) -> Any:
        from .collection_names import check_name

        return check_name(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> IndexSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class RetrievalSettings(_Section):
    """Hybrid retrieval: dense (Chroma) + BM25, fused per paper."""

    top_k: int = Field(10, ge=1, le=1000)
    """Papers retrieved per question."""
    fusion: Literal["zscore", "rrf"] = "zscore"
    """How dense and BM25 rankings merge: zscore (weighted z-scored scores, default) or rrf."""
    rrf_k: int = Field(60, ge=1)
    """Reciprocal-rank-fusion constant (fusion = rrf)."""
    dense_weight: float = Field(0.3, ge=0)
    bm25_weight: float = Field(0.4, ge=0)
    candidates: int = Field(50, ge=1, le=10000)
    """Chunks fetched from each retriever before fusion."""
    sentence_weight: float = Field(0.3, ge=0)
    """Weight of a third signal, each paper's best sentence-vector similarity (needs
    index.sentence_vectors); 0 = off. 0.3/0.4/0.3 beat 0.5/0.5 on SciFact train (benchmarks/)."""
    sentence_candidates: int = Field(100, ge=1, le=10000)
    """Nearest sentences fetched for that signal (sentence_weight > 0)."""
    exact_search_max: int = Field(10000, ge=0)
    """A vector collection with at most this many vectors is searched exactly (every stored vector,
    loaded once per process and index change) instead of by Chroma's approximate HNSW graph, whose
    ranking tail differs between process starts: answers are then repeatable. 0 = always HNSW."""
    date_post_filter_max: int = Field(2000, ge=0)
    """A date-filtered HNSW search fetches up to this many nearest vectors unfiltered and keeps those in
    range, when enough of the index is in range for that to find the hits (else, or when it falls
    short, Chroma filters first: a cost linear in the index, 1.6 s at 100k papers). 0 = Chroma always filters."""


class LLMSettings(_Section):
    """The answer backend, and the OpenAI-compatible server when one is used."""

    backend: str = "extractive"
    """Answer backend by registered name: extractive (offline, default) or openai."""
    model: str = "gpt-4o-mini"
    """Model name sent to the OpenAI-compatible server."""
    base_url: str = ""
    """OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1; empty = api.openai.com."""
    api_key: SecretStr = SecretStr("")
    request_timeout: float = Field(60.0, gt=0)
    """Seconds a whole request may take, streaming included."""
    max_retries: int = Field(3, ge=0, le=20)
    temperature: float = Field(0.0, ge=0, le=2)
    max_answer_tokens: int = Field(256, ge=16)
    """Upper bound on a generated answer: 4 cited sentences as JSON need ~200 tokens; a small model on
    2 cores writes ~27 tokens/s. A structured reply cut here keeps its complete sentences."""
    prompt_char_budget: int = Field(16000, ge=500)
    """Characters of abstracts put in the LLM prompt (shared by the sources); lower it for small contexts."""

    # -- evidence-first prompts, structured output, checked sentences (issue 15) --
    structured: Literal["auto", "json_schema", "off"] = "auto"
    """auto: ask for the JSON answer schema (response_format) and fall back to plain [n] text when the
    server rejects it; json_schema: always ask for it; off: plain text only."""
    evidence_papers: int = Field(0, ge=0)
    """Most papers whose evidence sentences go into the prompt; 0 = the model profile's choice."""
    evidence_sentences: int = Field(0, ge=0)
    """Most abstract sentences per paper in the prompt (the fitted scorer's best); 0 = the model profile's."""
    evidence_chars: int = Field(0, ge=0)
    """Characters of evidence sentences in the prompt, in all (the best sentence always fits); 0 = the
    model profile's, or for a model without a profile a quarter of its context window."""
    profile: str = ""
    """Model profile (decision combination, evidence budget; `assistant eval calibrate-llm` writes one):
    empty = <home>/profiles/<model>.json, else the shipped one for llm.model, else the default (the
    Qwen2.5-1.5B's); a path = that file; none = the evidence check alone decides."""
    context_tokens: int = Field(0, ge=0)
    """The model's context window in tokens; 0 = ask the server (llama.cpp and vLLM say it in /v1/models)."""
    verify_papers: Literal["kept", "candidates"] = "kept"
    """Papers the LLM labels in ``verify``: kept = only those the offline label model keeps as evidence
    (its abstention stands, the model decides stance and quotes); candidates = the 3 most likely evidence
    papers whatever the offline model says. Chosen on a SciFact train slice (benchmarks/README.md)."""
    min_support: float = Field(0.5, ge=0, le=1)
    """A generated sentence is shown only if its cited abstracts cover this share (idf-weighted) of its
    content words and contain every number and name it states; otherwise it is dropped and listed in checks."""


class ExtractiveSettings(_Section):
    """The offline answerer's weights and refusal thresholds (set on evals/questions/dev.jsonl)."""

    max_papers: int = Field(5, ge=1)
    """Papers whose sentences are considered."""
    max_sentences: int = Field(3, ge=1)
    multi_max_sentences: int = Field(4, ge=1)
    w_coverage: float = Field(0.45, ge=0)
    w_focus: float = Field(0.20, ge=0)
    w_dense: float = Field(0.20, ge=0)
    w_rank: float = Field(0.15, ge=0)
    min_coverage: float = Field(0.20, ge=0, le=1)
    """Refuse when the best sentence covers less of the question's (idf-weighted) content than this."""
    min_focus_coverage: float = Field(0.15, ge=0, le=1)
    """Share of the question's words outside the top paper's title that the answer must cover."""
    min_dense: float = Field(0.30, ge=-1, le=1)
    """Refuse when the best paper's cosine similarity is below this (off-topic questions)."""
    min_quantity_focus: float = Field(0.5, ge=0, le=1)
    """For "how many / what accuracy" questions: a sentence with a number must cover this much of the focus."""
    min_anchor_idf: float = Field(3.0, ge=0)
    """Question names at least this rare (BM25 idf; ~12 of 250 papers) must appear in a cited paper."""
    anchors_all: bool = True
    """Outside comparisons, every rare name must be in a cited paper (else only one of them)."""
    min_named_coverage: float = Field(0.10, ge=0, le=1)
    """A comparison's further named paper needs a sentence covering at least this much of the question."""
    second_sentence_ratio: float = Field(0.80, ge=0, le=1)
    """A further sentence is added only if it scores at least this share of the best one."""
    multi_min_ratio: float = Field(0.70, ge=0, le=1)
    """Further papers in a multi-paper answer must score at least this share of the best sentence."""
    model_file: str = ""
    """The default (fitted) extractive backend's model JSON, e.g. one written by
    ``python -m assistant.answering.fit --out FILE``; empty = the weights shipped in the package.
    The weights and thresholds above are the ``extractive-rules`` backend's."""


class JudgeSettings(_Section):
    """The offline judge (calibrated on evals/calibration/support_labels.jsonl)."""

    threshold_lexical: float = Field(0.419, ge=0, le=1)
    """Support score a sentence needs with the lexical-only judge."""
    threshold_semantic: float = Field(0.6453, ge=0, le=1)
    """Support score a sentence needs when MiniLM cosine is averaged in."""
    cosine_weight: float = Field(0.5, ge=0, le=1)
    """Share of the support score that is MiniLM cosine (the rest is idf coverage)."""


class ServeSettings(_Section):
    """`assistant serve`: the HTTP API and web chat."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token_file: Path | None = None
    """File holding the bearer token; required when host is not loopback."""
    max_concurrent: int = Field(4, ge=1, le=256)
    """Answers computed at once; further requests wait briefly, then get 503 with Retry-After."""
    max_body_bytes: int = Field(5_000_000, ge=1024)
    """Largest JSON request body (413 beyond)."""
    max_queue: int = Field(16, ge=0, le=10_000)
    """Requests that may wait for an answer slot; beyond that the server answers 503 at once."""
    queue_timeout: float = Field(30.0, gt=0)
    """Seconds a queued request waits for a slot before a 503 with Retry-After."""
    max_ingest_bytes: int = Field(50_000_000, ge=1024)
    """Largest POST /v1/ingest body (JSONL or BibTeX)."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Extra names the server answers to in the ``Host`` header, besides loopback names and the bound
    host (comma-separated in the environment); ``*`` turns the check off (behind a trusted proxy)."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Web origins (``https://chat.example``) besides the server's own that may POST; ``*`` = any."""
    header_timeout: float = Field(10.0, gt=0)
    """Seconds a client has to send a request's headers (connection opened or previous answer sent)."""
    body_timeout: float = Field(30.0, gt=0)
    """Seconds the server waits for the next piece of a request body before answering 408."""
    keep_alive_timeout: float = Field(5.0, gt=0)
    """Seconds an idle keep-alive connection stays open."""

    @field_validator("token_file", mode="before")
    @classmethod
    def _token_path(cls, value: Any) -> Any:
        if value == "":  # (read as '.': ".: cannot read the token file (Is a directory)")
            raise ValueError("an empty path ('') names no file; leave it out to serve without a token")
        return value

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class SourcesSettings(_Section):
    """Remote catalogues papers are added from (`assistant add`)."""

    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    """The arXiv API (Atom) endpoint; tests point it at a loopback server."""
    arxiv_delay: float = Field(3.0, ge=0)
    """Seconds between two arXiv API requests; the API's terms of use ask for 3 (lower only for a local mirror)."""
    arxiv_timeout: float = Field(30.0, gt=0)
    """Seconds one arXiv API request may take before it fails (never hang on a stalled connection)."""
    arxiv_retries: int = Field(4, ge=0, le=20)
    """Retries of a request answered 429/503 (or cut off), waiting Retry-After or a doubling backoff."""
    arxiv_page_size: int = Field(100, ge=1, le=2000)
    """Results asked per request (search pages and id batches)."""


#: Documented short names -> (section, field). One table serves env vars, TOML keys
#: at top level, keyword overrides and error messages.
FLAT: dict[str, tuple[str, str]] = {
    **{name: ("index", name) for name in IndexSettings.model_fields},
    **{name: ("retrieval", name) for name in RetrievalSettings.model_fields},
    "llm": ("llm", "backend"),
    "llm_model": ("llm", "model"),
    "openai_base_url": ("llm", "base_url"),
    "openai_api_key": ("llm", "api_key"),
    **{name: ("llm", name) for name in ("request_timeout", "max_retries", "temperature", "max_answer_tokens",
                                        "prompt_char_budget")},
    **{f"llm_{name}": ("llm", name) for name in ("structured", "evidence_papers", "evidence_sentences",
                                                 "evidence_chars", "min_support", "profile", "context_tokens")},
    **{name: ("sources", name) for name in SourcesSettings.model_fields},
}
#: Well-known variables accepted besides the ``ASSISTANT_`` ones.
ENV_ALIASES = {
    "openai_base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "chroma_host": "CHROMA_HOST",
    "chroma_port": "CHROMA_PORT",
}
SECTIONS = ("index", "retrieval", "llm", "extractive", "judge", "serve", "sources")
TOP_LEVEL = ("home", "config_file", "cache_dir")
#: ``ASSISTANT_*`` variables that are not settings but are read by the project's own tests, CI and
#: scripts: never reported as misspellings.
NOT_SETTINGS = ("ASSISTANT_ARTIFACTS", "ASSISTANT_SCIFACT_DIR")
NOT_SETTINGS_PREFIXES = ("ASSISTANT_TEST_", "ASSISTANT_CI_", "ASSISTANT_REQUIRE_", "ASSISTANT_SKIP_")


class Settings(BaseSettings):
    """Everything configurable. Field docs double as ``config show`` help."""

    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    home: Path = Field(default_factory=_default_home)
    """Where the index, caches and lock live."""
    config_file: Path | None = None
    """TOML file read for defaults (ASSISTANT_CONFIG)."""
    cache_dir: Path | None = None
    """Embedding cache; empty = <home>/cache. Share it between homes to embed a text only once."""
    index: IndexSettings = Field(default_factory=IndexSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    extractive: ExtractiveSettings = Field(default_factory=ExtractiveSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)

    @model_validator(mode="before")
    @classmethod
    def _short_names(cls, data: Any) -> Any:
        """``Settings(top_k=5, llm="openai")``: the documented short names work here too."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in FLAT and not (key in SECTIONS and isinstance(value, (dict, BaseModel))):
                section, name = FLAT[key]
                sec = out.setdefault(section, {})
                if isinstance(sec, BaseModel):
                    sec = out[section] = sec.model_dump()
                sec[name] = value
            elif key in SECTIONS and isinstance(out.get(key), dict) and isinstance(value, dict):
                out[key] = {**value, **out[key]}
            else:
                out[key] = value
        return out

    @field_validator("home", "config_file", "cache_dir", mode="before")
    @classmethod
    def _expand(cls, value: Any, info: Any) -> Any:
        if value == "" and info.field_name == "home":  # (was "input is not a valid path for <class ...>")
            raise ValueError("an empty path ('') names no folder; leave it out for the default")
        if value is None or value == "":
            return None
        if not isinstance(value, (str, os.PathLike)):  # home = ["a"] made a folder named "['a']"
            raise ValueError(f"input should be a path (text), not {type(value).__name__}")
        return Path(os.fspath(value)).expanduser()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **_sources: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load` merges env and TOML itself (it must know where each value came from to
        # name it in errors), so only the values it passes in count.
        return (init_settings,)

    # -- derived -------------------------------------------------------------------
    @property
    def embedding_model_name(self) -> str:
        if self.index.embedding_model:
            return self.index.embedding_model
        from .registry import embedders

        return embedders.default_model(self.index.embedding)

    @property
    def server_mode(self) -> bool:
        return bool(self.index.chroma_host)

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def embedding_cache(self) -> Path:
        return (self.cache_dir or self.home / "cache") / "embeddings.sqlite"

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(cls, config_file: str | Path | None = None, env: dict[str, str] | None = None,
             **overrides: Any) -> Settings:
        """Build settings from a TOML file, the environment and keyword overrides."""
        if config_file is not None and not isinstance(config_file, (str, os.PathLike)):
            raise SettingsError(f"config_file: expected a path, got {type(config_file).__name__}")
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        origin: dict[tuple[str, ...], str] = {}
        cfg = config_file if config_file is not None else env.get(ENV_PREFIX + "CONFIG")
        # ASSISTANT_CONFIG="" means "no config file at all" (tests, CI); unset means the default path.
        cfg_path = None if cfg == "" else (Path(cfg).expanduser() if cfg else _default_config())
        if cfg_path is not None and (cfg or cfg_path.exists()):
            for path, raw, where in _read_toml(cfg_path):
                _put(values, origin, path, raw, where)
            values["config_file"] = cfg_path
        for path, raw, where in _read_env(env):
            _put(values, origin, path, raw, where)
        _warn_misspelled(env)
        _put_overrides(values, origin, overrides)
        return _build(values, origin)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (short names or ``section={...}``), validated."""
        values = self.model_dump()
        values["llm"]["api_key"] = self.llm.api_key.get_secret_value()
        origin: dict[tuple[str, ...], str] = {}
        _put_overrides(values, origin, changes)
        return _build(values, origin)

    def public_dict(self) -> dict[str, Any]:
        """Effective settings with secrets masked, for display and eval reports."""
        out = self.model_dump(mode="json")
        out["llm"]["api_key"] = "***" if self.llm.api_key.get_secret_value() else ""
        out["index"]["embedding_model"] = self.embedding_model_name
        return out

    def describe(self) -> list[tuple[str, Any, str]]:
        """(dotted name, value, help) for every knob, secrets masked: what `config show` prints."""
        rows: list[tuple[str, Any, str]] = []
        shown = self.public_dict()
        docs = _field_docs(type(self))
        for name in TOP_LEVEL:
            rows.append((name, shown[name], docs.get(name, "")))
        for section in SECTIONS:
            sec_cls = type(getattr(self, section))
            sec_docs = _field_docs(sec_cls)
            for name in sec_cls.model_fields:
                rows.append((f"{section}.{name}", shown[section][name], sec_docs.get(name, "")))
        return rows


def env_var_for(section: str, name: str) -> str:
    """The documented variable for a nested field: its short name when it has one."""
    for short, target in FLAT.items():
        if target == (section, name):
            return ENV_ALIASES.get(short) or ENV_PREFIX + short.upper()
    return f"{ENV_PREFIX}{section.upper()}__{name.upper()}"


# -- internals ---------------------------------------------------------------------

def _resolve(key: str, where: str) -> tuple[str, ...]:
    if key in TOP_LEVEL:
        return (key,)
    if key in FLAT:
        return FLAT[key]
    if "." in key:
        section, _, name = key.partition(".")
        if section in SECTIONS:
            return (section, name)
    raise SettingsError(f"{where}: unknown setting '{key}'")


def _put(values: dict[str, Any], origin: dict[tuple[str, ...], str], path: tuple[str, ...], raw: Any,
         where: str) -> None:
    if len(path) == 1:
        values[path[0]] = raw
    else:
        values.setdefault(path[0], {})[path[1]] = raw
    origin[path] = where


def _put_overrides(values: dict[str, Any], origin: dict[tuple[str, ...], str], overrides: dict[str, Any]) -> None:
    """Keyword settings: short names (``top_k=5``) or whole sections (``retrieval={"top_k": 5}``)."""
    for key, raw in overrides.items():
        if raw is None:
            continue
        if isinstance(raw, dict) and key in SECTIONS:
            for sub, v in raw.items():
                _put(values, origin, (key, sub), v, f"{key}.{sub}")
        else:
            _put(values, origin, _resolve(key, key), raw, key)


def _read_toml(path: Path) -> list[tuple[tuple[str, ...], Any, str]]:
    if not path.exists():
        raise SettingsError(f"{path}: config file not found (ASSISTANT_CONFIG)")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM (Windows editors write one) is not TOML
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: config file is not UTF-8 (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(data.get("assistant"), dict):
        others = [key for key in data if key != "assistant"]
        if others:  # which would win? the other tables were silently ignored
            raise SettingsError(f"{path}: settings go either under [assistant] or at the top level, not both "
                                f"(move {', '.join(others[:3])} under [assistant] as [assistant.SECTION] "
                                "tables, or drop the [assistant] table)")
        data = data["assistant"]
    out: list[tuple[tuple[str, ...], Any, str]] = []
    for key, raw in data.items():
        if key in SECTIONS:
            if not isinstance(raw, dict):
                raise SettingsError(f"{path}: [{key}] must be a table")
            for sub, v in raw.items():
                out.append(((key, sub), v, f"{path}: [{key}] {sub}"))
        else:
            out.append((_resolve(key, f"{path}"), raw, f"{path}: {key}"))
    return out


def _read_env(env: dict[str, str]) -> list[tuple[tuple[str, ...], Any, str]]:
    out: list[tuple[tuple[str, ...], Any, str]] = []
    for name in ("home", "cache_dir"):
        var = ENV_PREFIX + name.upper()
        if env.get(var, "") != "":
            out.append(((name,), env[var], var))
    # Short names first, nested ASSISTANT_SECTION__FIELD after, so the explicit form wins.
    for short, target in FLAT.items():
        for var in (ENV_PREFIX + short.upper(), ENV_ALIASES.get(short)):
            if var and env.get(var, "") != "":
                out.append((target, env[var], var))
                break
    for var, raw in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or "__" not in var or raw == "":
            continue
        section, _, name = var[len(ENV_PREFIX):].lower().partition("__")
        if section not in SECTIONS:
            raise SettingsError(f"{var}: unknown settings section '{section}' (one of {', '.join(SECTIONS)})")
        out.append(((section, name), raw, var))
    return out


_WARNED: set[str] = set()


def _known_env_names() -> dict[str, str]:
    """Every variable a setting is read from (without the prefix) -> the documented one to suggest."""
    known: dict[str, str] = {"CONFIG": ENV_PREFIX + "CONFIG"}
    for name in ("home", "cache_dir"):
        known[name.upper()] = ENV_PREFIX + name.upper()
    for short, (section, name) in FLAT.items():
        known[short.upper()] = env_var_for(section, name)
    for section in SECTIONS:
        for name in type(getattr(Settings(), section)).model_fields:
            known[f"{section}__{name}".upper()] = env_var_for(section, name)
    return known


def misspelled_env(env: dict[str, str]) -> list[tuple[str, str]]:
    """(variable, the setting it probably meant) for each ``ASSISTANT_*`` name that is not a setting
    but is close to one (``..._TOPK`` for ``..._TOP_K``): such a name is otherwise
    silently ignored. Names the project's tests and CI use (``NOT_SETTINGS``) are left alone."""
    import difflib

    out: list[tuple[str, str]] = []
    known: dict[str, str] | None = None
    bare: dict[str, str] | None = None  # both built once, at the first name that needs them
    for var in sorted(env):
        if (not var.startswith(ENV_PREFIX) or "__" in var or var in NOT_SETTINGS
                or var.startswith(NOT_SETTINGS_PREFIXES)):
            continue
        known = known or _known_env_names()
        tail = var[len(ENV_PREFIX):]
        if tail in known:
            continue
        squeezed = {k.replace("_", ""): k for k in known}
        match = squeezed.get(tail.replace("_", "")) or next(iter(difflib.get_close_matches(tail, known, 1, 0.8)),
                                                             None)
        if not match:  # a field's bare name (PORT or MODEL after the prefix): its section was left out
            bare = bare or _bare_field_names()
            match = bare.get(tail)
        if match:
            out.append((var, known[match]))
    return out


def _bare_field_names() -> dict[str, str]:
    """A nested field's own name (``PORT``) -> its variable's name without the prefix (``SERVE__PORT``), for
    the names only one section has; ``llm`` wins a name several share (``MODEL``: the answering model)."""
    owners: dict[str, list[str]] = {}
    defaults = Settings()
    for section in SECTIONS:
        for name in type(getattr(defaults, section)).model_fields:
            owners.setdefault(name.upper(), []).append(section)
    return {name: f"{'LLM' if 'llm' in secs else secs[0].upper()}__{name}" for name, secs in owners.items()
            if len(secs) == 1 or "llm" in secs}


def _warn_misspelled(env: dict[str, str]) -> None:
    """One line on stderr (through logging, so a library user can silence it) per misspelled
    variable, once per process."""
    import logging

    for var, meant in misspelled_env(env):
        if var not in _WARNED:
            _WARNED.add(var)
            logging.getLogger("assistant.settings").warning(
                "warning: %s is not a setting and is ignored; did you mean %s?", var, meant)


def _build(values: dict[str, Any], origin: dict[tuple[str, ...], str]) -> Settings:
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        where = origin.get(loc[:2]) or origin.get(loc[:1]) or ".".join(loc)
        if err["type"] == "extra_forbidden":
            raise SettingsError(f"{where}: unknown setting '{'.'.join(loc)}'") from None
        msg = str(err["msg"]).removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        given = err.get("input")
        shown = "" if isinstance(given, dict) or given is None else f", got {given!r}"
        if len(loc) < 2 or loc[:2] not in origin:
            # A cross-field rule (e.g. overlap < size): name the variables involved.
            section = loc[0] if loc else ""
            names = [v for k, v in origin.items() if k[0] == section]
            heads = {n.partition(": ")[0] for n in names}
            if len(names) > 1 and len(heads) == 1 and all(": " in n for n in names):  # one file: named once
                where = f"{heads.pop()}: " + " / ".join(n.partition(": ")[2] for n in names)
            else:
                where = " / ".join(names) or (section or "settings")
        raise SettingsError(f"{where}: {msg}{shown}") from None
    from .registry import answerers, embedders

    for (section, name), registry in ((("llm", "backend"), answerers), (("index", "embedding"), embedders)):
        value = getattr(getattr(settings, section), name)
        if value not in registry.names():
            where = origin.get((section, name)) or env_var_for(section, name)
            raise SettingsError(f"{where}: '{value}' is not a known {registry.kind} "
                                f"(one of {', '.join(registry.names())})")
    return settings


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal after a field) as help text."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs
