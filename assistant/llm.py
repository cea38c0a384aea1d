"""Thin clients for OpenAI-compatible servers (OpenAI, llama.cpp, vLLM, Ollama, ...):
chat completions and embeddings.

Why our own retry loop instead of the openai package's: a streaming request is only
safe to repeat while nothing has reached the user, so retries stop at the first token,
and chat and embeddings share one policy (backoff on 429/5xx/connection errors, never on
400/401/403/404 or a garbled reply). ``request_timeout`` is a deadline for the whole
call, retries included: httpx timeouts only bound the gap between two reads, so a server
that sends a byte or an SSE ``: ping`` every few seconds would otherwise hold a request
open forever. That is why bodies are read here, chunk by chunk against the deadline,
and parsed here (a 200 reply that is not JSON is a one-line error, not a traceback).
Every failure becomes a one-line BackendError that names the server and never the key.
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from .errors import BackendError
from .settings import Settings

T = TypeVar("T")

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"

MAX_REPLY_BYTES = 16_000_000
"""The largest reply body read (a chat answer is a few KB; a long model list some hundreds)."""

MAX_EVENT_LINE = 1_000_000
"""The longest line of a stream (one event's data: a token or a few)."""

CONTEXT_ASK_SECONDS = 5.0
"""How long the optional context-window question to /models may take."""

#: Sent to local servers that need no key; the openai package refuses an empty one.
DUMMY_KEY = "not-needed"
MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0
_DETAIL_CHARS = 200


class _StreamBroken(Exception):
    """The stream failed after text reached on_token: not retryable."""

    def __init__(self, chars: int, reason: str) -> None:
        super().__init__(reason)
        self.chars = chars
        self.reason = reason


class _BadReply(Exception):
    """The server answered, but not with what the API promises: not retryable."""


class _DeadlinePassed(Exception):
    """``request_timeout`` ran out while the server was still sending."""


class OpenAICompatible:
    """One server connection: base URL and key from Settings, the shared retry policy,
    the whole-request deadline and one-line error messages."""

    needs_key_message = ("the openai backend needs OPENAI_API_KEY (or set OPENAI_BASE_URL to a local server): "
                         "export OPENAI_BASE_URL=http://127.0.0.1:8080/v1 ASSISTANT_LLM_MODEL=local, or unset "
                         "ASSISTANT_LLM for the offline default")

    @classmethod
    def configured_url(cls, settings: Settings) -> str:
        """The server's base URL as set (empty = api.openai.com)."""
        return settings.llm.base_url.strip()

    @classmethod
    def check_configured(cls, settings: Settings) -> None:
        """Neither a server nor a key: fail before any slow work (building an index) with the fix."""
        if not cls.configured_url(settings) and not settings.llm.api_key.get_secret_value():
            raise BackendError(cls.needs_key_message)

    @property
    def timeout(self) -> float:
        """Seconds a whole request may take."""
        return float(self.settings.llm.request_timeout)

    url_setting = "OPENAI_BASE_URL"

    def __init__(self, settings: Settings, *, backoff: float = 0.5) -> None:
        self.settings = settings
        self.backoff = backoff
        base = self.configured_url(settings).rstrip("/")
        self.check_configured(settings)
        # Always explicit: the openai package would otherwise read OPENAI_BASE_URL /
        # OPENAI_API_KEY itself, bypassing Settings (the one place that reads the env).
        self.base_url = base or OPENAI_DEFAULT_URL
        self._api_key = settings.llm.api_key.get_secret_value() or DUMMY_KEY
        self._client: Any = None

    @property
    def model_name(self) -> str:
        return self.settings.llm.model

    def _openai(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key,
                                         timeout=self.timeout, max_retries=0)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenAICompatible:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the deadline -------------------------------------------------------------------------
    def _remaining(self, deadline: float) -> float:
        """Seconds left for the next read; raises once the deadline has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _DeadlinePassed()
        return left

    def _fetch_json(self, request: Callable[[float], Any], deadline: float,
                    max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
        """Send ``request(timeout)`` (an openai ``with_streaming_response`` call) and parse its
        body, reading it chunk by chunk so a trickling server cannot outlast the deadline, and no
        further than ``max_bytes`` (a 100 MB reply was held whole, and echoed twice in --json)."""
        with request(self._remaining(deadline)) as resp:
            return self._read_json(resp, deadline, max_bytes)

    def _read_json(self, resp: Any, deadline: float, max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            self._remaining(deadline)
            if len(body) > max_bytes:
                raise _BadReply(f"sent a reply over {max_bytes // 1_000_000} MB; stopped reading it")
        try:
            data = json.loads(bytes(body))
        except (ValueError, RecursionError):
            raise _BadReply(f"sent a reply that is not JSON: {_snippet(bytes(body))}") from None
        if not isinstance(data, dict):
            raise _BadReply(f"sent a reply that is not a JSON object: {_snippet(bytes(body))}")
        return data

    # -- retries and error messages -----------------------------------------------------------
    def _with_retries(self, what: str, call: Callable[[float], T]) -> T:
        """``call(deadline)`` under the shared policy; every attempt ends by the same deadline."""
        self._openai()  # importing openai takes a second or two: not the server's time
        deadline = time.monotonic() + self.timeout
        attempts = max(0, self.settings.llm.max_retries) + 1
        for attempt in range(1, attempts + 1):
            try:
                return call(deadline)
            except BackendError:
                raise
            except _StreamBroken as exc:
                raise BackendError(self._scrub(
                    f"the stream from {self.base_url} broke after {exc.chars} characters: {exc.reason}")) from exc
            except _BadReply as exc:
                raise BackendError(self._scrub(f"the server at {self.base_url} {exc}")) from None
            except _DeadlinePassed:
                raise BackendError(self._timed_out()) from None
            except Exception as exc:
                if not _is_api_failure(exc):
                    raise
                if attempt < attempts and _retryable(exc):
                    delay = self._delay(attempt, exc)
                    if time.monotonic() + delay < deadline:
                        time.sleep(delay)
                        continue
                raise BackendError(self._scrub(self._describe(exc, what, attempt))) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _timed_out(self) -> str:
        return f"the server at {self.base_url} timed out after {self.timeout:g}s"

    def _delay(self, attempt: int, exc: Exception) -> float:
        delay = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        retry_after = _retry_after(exc)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    def _describe(self, exc: Exception, what: str, attempts: int) -> str:
        import openai

        url = self.base_url
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, _timeout_errors()):
            return self._timed_out()
        if isinstance(exc, openai.APIConnectionError):
            hint = f"check {self.url_setting}" if url != OPENAI_DEFAULT_URL else \
                "check your network, or set OPENAI_BASE_URL to a local server"
            return f"cannot reach the OpenAI-compatible server at {url} ({_reason(exc)}){tries}; {hint}"
        if isinstance(exc, openai.APIStatusError):
            code = exc.status_code
            detail = _detail(exc)
            if code == 401:
                return f"the server at {url} rejected the API key (401); check OPENAI_API_KEY"
            if code == 403:
                return (f"the server at {url} refused access (403){detail}; "
                        f"check OPENAI_API_KEY and that it may use model '{self.model_name}'")
            if code == 404:
                if what == "models":
                    return (f"the server at {url} has no /models endpoint (404); "
                            "check OPENAI_BASE_URL (it usually ends in /v1)")
                return (f"model '{self.model_name}' not found on {url} (404){detail}; "
                        f"check {self.model_setting} and OPENAI_BASE_URL")
            if code == 429:
                return f"the server at {url} is rate limiting requests (429){tries}{detail}; try again later"
            if code >= 500:
                return f"the server at {url} failed with HTTP {code}{tries}{detail}"
            return f"the server at {url} rejected the request (HTTP {code}){detail}"
        if isinstance(exc, openai.APIError):  # e.g. an error event inside a stream, malformed reply
            return f"the server at {url} sent an error: {_one_line(str(exc))}"
        return f"the connection to {url} broke before the reply was complete: {_reason(exc)}{tries}"

    model_setting = "ASSISTANT_LLM_MODEL"

    def _scrub(self, message: str) -> str:
        key = self.settings.llm.api_key.get_secret_value()
        if key:
            message = message.replace(key, "***")
        return message


class ChatClient(OpenAICompatible):
    """Chat completions against ``settings.llm.base_url`` (or api.openai.com)."""

    def __init__(self, settings: Settings, *, backoff: float = 0.5) -> None:
        super().__init__(settings, backoff=backoff)
        self.last_finish_reason: str | None = None
        """finish_reason of the last completion ("stop", "length", ...): "length" means truncated."""
        self.last_usage: dict[str, int] | None = None
        """Token counts the server reported for the last completion (prompt_tokens, completion_tokens), if any."""
        self._context: int | None = None

    def __enter__(self) -> ChatClient:
        return self

    # -- public calls -----------------------------------------------------------------
    def complete(self, messages: list[dict[str, Any]], *, stream: bool = False,
                 on_token: Callable[[str], None] | None = None, max_tokens: int | None = None,
                 json_mode: bool = False, response_format: dict[str, Any] | None = None) -> str:
        """The assistant's reply text; with ``stream`` every delta goes to ``on_token`` as it arrives.

        ``response_format`` is sent as given (e.g. a json_schema); it overrides ``json_mode``.
        """
        params: dict[str, Any] = {"model": self.model_name, "messages": messages,
                                  "temperature": self.settings.llm.temperature}
        if max_tokens is not None:
            params["max_tokens"] = max_tokens
        if json_mode:
            params["response_format"] = {"type": "json_object"}
        if response_format is not None:
            params["response_format"] = response_format
        self.last_finish_reason = None
        self.last_usage = None
        if stream:
            return self._with_retries("chat", lambda deadline: self._stream_once(params, on_token, deadline))
        return self._with_retries("chat", lambda deadline: self._complete_once(params, deadline))

    def first_token_logprobs(self, messages: list[dict[str, Any]], top: int = 10) -> dict[str, float]:
        """Log-probabilities of the likeliest first tokens of the reply (stripped, lower-cased; the
        likelier spelling wins), for a graded yes/no verdict rather than a coin of a reply. A server
        that sends no logprobs (not every OpenAI-compatible server does) gives its reply's first word
        at log-probability 0: the verdict is then all or nothing."""
        params: dict[str, Any] = {"model": self.model_name, "messages": messages, "temperature": 0.0,
                                  "max_tokens": 1, "logprobs": True, "top_logprobs": top}
        data = self._with_retries("chat", lambda deadline: self._fetch_json(
            lambda timeout: self._openai().chat.completions.with_streaming_response.create(
                **params, timeout=timeout), deadline))
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if first is None:
            raise BackendError(f"the server at {self.base_url} sent a reply without any choices")
        out: dict[str, float] = {}
        logprobs = first.get("logprobs")
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        tops = content[0].get("top_logprobs") if isinstance(content, list) and content and \
            isinstance(content[0], dict) else None
        for item in tops if isinstance(tops, list) else []:
            token, lp = (item.get("token"), item.get("logprob")) if isinstance(item, dict) else (None, None)
            if isinstance(token, str) and isinstance(lp, (int, float)) and token.strip():
                key = token.strip().lower()
                out[key] = max(out.get(key, float("-inf")), float(lp))
        if not out:
            message = first.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            words = text.split() if isinstance(text, str) else []
            if words:
                out[words[0].strip(".,!:;").lower()] = 0.0
        return out

    def list_models(self) -> list[str]:
        """Model ids the server offers; a cheap health check (reachable, key accepted)."""
        data = self._with_retries("models", lambda deadline: self._fetch_json(
            lambda timeout: self._openai().models.with_streaming_response.list(timeout=timeout), deadline))
        models = data.get("data") or []
        return [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)] \
            if isinstance(models, list) else []

    def context_tokens(self) -> int | None:
        """The model's context window as the server states it (llama.cpp: ``meta.n_ctx``; vLLM:
        ``max_model_len``; others: ``context_length``), asked once per client; None when the server
        does not say or cannot be asked (the caller then keeps the profile's budget)."""
        if self._context is not None:
            return self._context or None
        self._context = 0
        # Optional knowledge: one attempt within CONTEXT_ASK_SECONDS, no retries (a failing /models cost
        # every `ask` four attempts and their backoff before the answer's own request).
        deadline = time.monotonic() + min(self.timeout, CONTEXT_ASK_SECONDS)
        try:
            data = self._fetch_json(
                lambda timeout: self._openai().models.with_streaming_response.list(timeout=timeout), deadline)
        except Exception:  # noqa: BLE001 - any failure means "not stated": the profile's budget stands
            return None
        models = data.get("data") if isinstance(data, dict) else None
        entries = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        mine = [m for m in entries if m.get("id") == self.model_name] or entries[:1]
        for m in mine:
            meta = m.get("meta") if isinstance(m.get("meta"), dict) else {}
            for value in (meta.get("n_ctx"), m.get("max_model_len"), m.get("context_length"),
                          meta.get("n_ctx_train")):
                if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                    self._context = value
                    return value
        return None

    # -- one attempt ----------------------------------------------------------------------
    def _complete_once(self, params: dict[str, Any], deadline: float) -> str:
        data = self._fetch_json(lambda timeout: self._openai().chat.completions.with_streaming_response.create(
            **params, timeout=timeout), deadline)
        return self._completion_text(data)

    def _completion_text(self, data: dict[str, Any]) -> str:
        choices = data.get("choices")
        if not choices or not isinstance(choices, list):
            if data.get("error"):
                raise _BadReply(f"sent an error: {_error_text(data['error'])}")
            raise _BadReply("sent a reply without any choices")
        first = choices[0]
        message = first.get("message") if isinstance(first, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(content, (str, type(None))):
            raise _BadReply(f"sent a reply in an unexpected shape: {_snippet(json.dumps(first).encode())}")
        finish = first.get("finish_reason")
        self.last_finish_reason = finish if isinstance(finish, str) else None
        self.last_usage = _usage(data)
        return content or ""

    def _stream_once(self, params: dict[str, Any], on_token: Callable[[str], None] | None,
                     deadline: float) -> str:
        parts: list[str] = []
        chars = 0
        finish: str | None = None
        request = self._openai().chat.completions.with_streaming_response.create(
            **params, stream=True, timeout=self._remaining(deadline))
        with request as resp:
            if _is_json(resp):  # a server (or proxy) that ignored stream=true answered in one piece
                text = self._completion_text(self._read_json(resp, deadline))
                if text and on_token is not None:
                    on_token(text)
                return text
            try:
                check = lambda: self._remaining(deadline)  # noqa: E731 - run on every chunk read
                for data in _sse_data(_lines(resp.iter_bytes(), check), check):
                    if data.startswith("[DONE]"):
                        break
                    try:
                        event = json.loads(data)
                    except (ValueError, RecursionError):
                        raise _StreamBroken(chars, f"malformed event ({_one_line(data)})") from None
                    if not isinstance(event, dict):
                        raise _StreamBroken(chars, f"malformed event ({_one_line(data)})")
                    if event.get("error"):
                        error = _error_text(event["error"])
                        if not chars:
                            raise _BadReply(f"sent an error: {error}")
                        raise _StreamBroken(chars, f"the server sent an error: {error}")
                    self.last_usage = _usage(event) or self.last_usage
                    for choice in event.get("choices") or []:
                        if not isinstance(choice, dict):
                            continue
                        if isinstance(choice.get("finish_reason"), str):
                            finish = choice["finish_reason"]
                        delta = choice.get("delta")
                        text = delta.get("content") if isinstance(delta, dict) else None
                        if isinstance(text, str) and text:
                            if chars + len(text) > MAX_REPLY_BYTES:  # a server ignoring max_tokens
                                raise _StreamBroken(chars, f"the reply passed {MAX_REPLY_BYTES // 1_000_000} MB; "
                                                           "stopped reading it")
                            parts.append(text)
                            chars += len(text)
                            if on_token is not None:
                                on_token(text)
                    if finish is not None:
                        # The answer is whole (and usage, not asked for, comes with it if at all): a server
                        # that then neither sent [DONE] nor closed held the answer for the whole timeout.
                        break
            except _DeadlinePassed:
                if not chars:
                    raise
                raise _StreamBroken(chars, f"timed out after {self.settings.llm.request_timeout:g}s") from None
            except Exception as exc:
                if not chars or not _is_api_failure(exc):
                    raise  # nothing shown yet: safe to retry
                # Text already reached on_token: repeating would show it twice.
                if isinstance(exc, _timeout_errors()):
                    raise _StreamBroken(chars, f"timed out after {self.settings.llm.request_timeout:g}s") from exc
                raise _StreamBroken(chars, _reason(exc)) from exc
        if finish is None:
            # Servers end every complete stream with a finish_reason; without one the
            # answer may be cut off, and a silently truncated answer is worse than an error.
            raise _StreamBroken(chars, "it ended before the server reported a finish reason")
        return self._finished(finish, parts)

    def _finished(self, finish: str, parts: list[str]) -> str:
        self.last_finish_reason = finish
        return "".join(parts)


class EmbeddingClient(OpenAICompatible):
    """``/embeddings`` on the same kind of server, under the same retries and deadline."""

    needs_key_message = ("the openai embedding backend needs OPENAI_API_KEY (or ASSISTANT_EMBEDDING_BASE_URL "
                         "or OPENAI_BASE_URL pointing at a local server)")
    model_setting = "ASSISTANT_EMBEDDING_MODEL"

    @classmethod
    def configured_url(cls, settings: Settings) -> str:
        """``index.embedding_base_url`` (an embeddings box apart from the chat server), else ``llm.base_url``."""
        return settings.index.embedding_base_url.strip() or settings.llm.base_url.strip()

    @property
    def timeout(self) -> float:
        return float(self.settings.index.embedding_timeout or self.settings.llm.request_timeout)

    @property
    def url_setting(self) -> str:  # type: ignore[override]
        return "ASSISTANT_EMBEDDING_BASE_URL" if self.settings.index.embedding_base_url.strip() else "OPENAI_BASE_URL"

    @property
    def model_name(self) -> str:
        return self.settings.embedding_model_name

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order (one request; batch outside)."""
        batch = list(texts)
        data = self._with_retries("embeddings", lambda deadline: self._fetch_json(
            lambda timeout: self._openai().embeddings.with_streaming_response.create(
                model=self.model_name, input=batch, encoding_format="float", timeout=timeout), deadline,
            max_bytes=max(MAX_REPLY_BYTES, 200_000 * len(batch))))  # a 3072-float vector is ~70 KB of JSON
        rows = data.get("data")
        try:
            ordered = sorted(rows, key=lambda d: d["index"])  # type: ignore[arg-type]
            vectors = [[float(x) for x in d["embedding"]] for d in ordered]
        except (TypeError, KeyError, ValueError):
            raise BackendError(self._scrub(f"the server at {self.base_url} sent embeddings in an unexpected "
                                           f"shape: {_snippet(json.dumps(data).encode())}")) from None
        if len(vectors) != len(batch):
            raise BackendError(f"the server at {self.base_url} sent {len(vectors)} embeddings "
                               f"for {len(batch)} texts")
        return vectors


def _usage(reply: dict[str, Any]) -> dict[str, int] | None:
    """prompt/completion token counts of a reply or stream event, when the server sent them, with
    ``cached_tokens`` (prompt tokens the server reused from its cache, not read again) and, from
    llama.cpp, ``prompt_ms`` / ``generation_ms`` (its own clock) when known.

    llama.cpp's server sends its own "timings" in the last stream event even when usage was not
    asked for (stream_options, which some servers reject)."""
    out: dict[str, int] = {}
    usage = reply.get("usage")
    if isinstance(usage, dict):
        out = {k: v for k in ("prompt_tokens", "completion_tokens")
               if isinstance(v := usage.get(k), int) and not isinstance(v, bool)}
        details = usage.get("prompt_tokens_details")
        if out and isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            out["cached_tokens"] = details["cached_tokens"]
    timings = reply.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("prompt_n"), int):
        cached = int(timings.get("cache_n") or 0)
        out.setdefault("prompt_tokens", timings["prompt_n"] + cached)
        out.setdefault("completion_tokens", int(timings.get("predicted_n") or 0))
        out["cached_tokens"] = cached
        for key, name in (("prompt_ms", "prompt_ms"), ("predicted_ms", "generation_ms")):
            if isinstance(timings.get(key), (int, float)):
                out[name] = round(timings[key])
    return out or None


def _lines(chunks: Iterable[bytes], check: Callable[[], object]) -> Iterator[str]:
    """A byte stream's lines (SSE ends them with LF, CRLF or CR), decoded as UTF-8 with undecodable
    bytes replaced; ``check`` runs on every chunk. httpx's ``iter_lines`` reads on until a line
    ends: a server trickling bytes with no newline outlasted every deadline there, and a line
    of 100 MB was held whole."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pieces: list[str] = []  # the unfinished line, joined only once a line end arrives (linear, not quadratic)
    size = 0
    for chunk in chunks:
        check()
        text = decoder.decode(chunk)
        if "\n" in text or "\r" in text or (pieces and pieces[-1].endswith("\r")):
            pending = "".join(pieces) + text
            held = "\r" if pending.endswith("\r") else ""  # maybe half of a CRLF: kept for the next chunk
            parts = re.split(r"\r\n|\r|\n", pending[:-1] if held else pending)
            rest = parts.pop() + held
            yield from parts
            pieces, size = ([rest] if rest else []), len(rest)
        elif text:
            pieces.append(text)
            size += len(text)
        if size > MAX_EVENT_LINE:
            raise _BadReply(f"sent a stream line over {MAX_EVENT_LINE // 1_000_000} MB")
    pending = ("".join(pieces) + decoder.decode(b"", final=True)).rstrip("\r")
    if pending:
        yield pending


def _is_json(resp: Any) -> bool:
    """Whether a streamed request was answered as one JSON document instead of server-sent events."""
    kind = str(resp.headers.get("content-type", "")).split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _sse_data(lines: Iterable[str], check: Callable[[], object]) -> Iterator[str]:
    """The data of each server-sent event; ``check`` runs on every line, pings included."""
    data: list[str] = []
    for line in lines:
        check()
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):  # a comment, e.g. a keep-alive ": ping"
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("message") or error
    return _one_line(str(error))


def _snippet(body: bytes) -> str:
    text = _one_line(body.decode("utf-8", errors="replace"))
    return repr(text) if text else "(empty body)"


def _http_modules() -> list[Any]:
    """httpx and, with openai 3.x, httpx2: whichever the openai package talks through."""
    return [m for m in (sys.modules.get("httpx"), sys.modules.get("httpx2")) if m is not None]


def _timeout_errors() -> tuple[type[BaseException], ...]:
    import openai

    return (openai.APITimeoutError, *(m.TimeoutException for m in _http_modules()))


def _is_api_failure(exc: Exception) -> bool:
    import openai

    return isinstance(exc, (openai.APIError, *(m.HTTPError for m in _http_modules())))


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, _timeout_errors()):
        return False
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    # A stream that dropped before its first token is as safe to repeat as a refused connection.
    return isinstance(exc, tuple(m.TransportError for m in _http_modules()))


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    """The root cause in a few words, e.g. 'connection refused'."""
    import openai

    inner: BaseException = exc
    while inner.__cause__ is not None and isinstance(inner, openai.APIConnectionError):
        inner = inner.__cause__
    text = _one_line(str(inner)) or type(inner).__name__
    match = re.search(r"\[Errno -?\d+\] ([^\]\)]+)", text)
    if match:
        return match.group(1).strip().lower()
    return text


def _detail(exc: Any) -> str:
    """': <server's own message>' when it sent one (they often name the real problem)."""
    body = getattr(exc, "body", None)
    message: Any = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
    elif isinstance(body, str):
        message = body
    text = _one_line(str(message)) if message else ""
    return f": {text}" if text else ""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."
