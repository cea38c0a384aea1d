"""Thin client for OpenAI-compatible chat servers (OpenAI, llama.cpp, vLLM, Ollama, ...).

Why our own retry loop instead of the openai package's: a streaming request is only
safe to repeat while nothing has reached the user, so retries stop at the first token,
and both paths share one policy (backoff on 429/5xx/connection errors, never on
400/401/403/404, no retry after a timeout — the user already waited request_timeout).
Every failure becomes a one-line BackendError that names the server and never the key.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import BackendError
from .settings import Settings

T = TypeVar("T")

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
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


class ChatClient:
    """Chat completions against ``settings.llm.base_url`` (or api.openai.com)."""

    def __init__(self, settings: Settings, *, backoff: float = 0.5) -> None:
        self.settings = settings
        self.backoff = backoff
        base = settings.llm.base_url.strip().rstrip("/")
        if not base and not settings.llm.api_key.get_secret_value():
            raise BackendError("the openai backend needs OPENAI_API_KEY (or set OPENAI_BASE_URL to a local server)")
        # Always explicit: the openai package would otherwise read OPENAI_BASE_URL /
        # OPENAI_API_KEY itself, bypassing Settings (the one place that reads the env).
        self.base_url = base or OPENAI_DEFAULT_URL
        self._api_key = settings.llm.api_key.get_secret_value() or DUMMY_KEY
        self._client: Any = None
        self.last_finish_reason: str | None = None
        """finish_reason of the last completion ("stop", "length", ...): "length" means truncated."""
        self.last_usage: dict[str, int] | None = None
        """Token counts the server reported for the last completion (prompt_tokens, completion_tokens), if any."""

    @property
    def model_name(self) -> str:
        return self.settings.llm.model

    def _openai(self) -> Any:
        if self._client is None:
            import httpx
            import openai

            self._client = openai.OpenAI(base_url=self.base_url, api_key=self._api_key,
                                         timeout=httpx.Timeout(self.settings.llm.request_timeout), max_retries=0)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            return self._with_retries("chat", lambda: self._stream_once(params, on_token))
        return self._with_retries("chat", lambda: self._complete_once(params))

    def list_models(self) -> list[str]:
        """Model ids the server offers; a cheap health check (reachable, key accepted)."""
        page = self._with_retries("models", lambda: self._openai().models.list())
        return [m.id for m in getattr(page, "data", None) or []]

    # -- one attempt ----------------------------------------------------------------------
    def _complete_once(self, params: dict[str, Any]) -> str:
        resp = self._openai().chat.completions.create(**params)
        choices = getattr(resp, "choices", None)
        if not choices:
            raise BackendError(f"the server at {self.base_url} sent a reply without any choices")
        self.last_finish_reason = choices[0].finish_reason
        self.last_usage = _usage(resp)
        return choices[0].message.content or ""

    def _stream_once(self, params: dict[str, Any], on_token: Callable[[str], None] | None) -> str:
        import httpx
        import openai

        parts: list[str] = []
        chars = 0
        finish: str | None = None
        with self._openai().chat.completions.create(**params, stream=True) as events:
            chunks = iter(events)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except ValueError as exc:  # an event that is not JSON
                    raise _StreamBroken(chars, f"malformed event ({_one_line(str(exc))})") from exc
                except (openai.APIError, httpx.HTTPError) as exc:
                    if not chars:
                        raise  # nothing shown yet: safe to retry
                    # Text already reached on_token: repeating would show it twice.
                    if isinstance(exc, httpx.TimeoutException):
                        raise _StreamBroken(chars, f"no data for {self.settings.llm.request_timeout:g}s") from exc
                    raise _StreamBroken(chars, _reason(exc)) from exc
                self.last_usage = _usage(chunk) or self.last_usage
                for choice in getattr(chunk, "choices", None) or []:
                    if choice.finish_reason:
                        finish = choice.finish_reason
                    text = choice.delta.content if choice.delta else None
                    if text:
                        parts.append(text)
                        chars += len(text)
                        if on_token is not None:
                            on_token(text)
        if finish is None:
            # Servers end every complete stream with a finish_reason; without one the
            # answer may be cut off, and a silently truncated answer is worse than an error.
            raise _StreamBroken(chars, "it ended before the server reported a finish reason")
        self.last_finish_reason = finish
        return "".join(parts)

    # -- retries and error messages -----------------------------------------------------------
    def _with_retries(self, what: str, call: Callable[[], T]) -> T:
        attempts = max(0, self.settings.llm.max_retries) + 1
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except BackendError:
                raise
            except _StreamBroken as exc:
                raise BackendError(self._scrub(
                    f"the stream from {self.base_url} broke after {exc.chars} characters: {exc.reason}")) from exc
            except Exception as exc:
                if not _is_api_failure(exc):
                    raise
                if attempt < attempts and _retryable(exc):
                    time.sleep(self._delay(attempt, exc))
                    continue
                raise BackendError(self._scrub(self._describe(exc, what, attempt))) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _delay(self, attempt: int, exc: Exception) -> float:
        delay = min(MAX_BACKOFF, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        retry_after = _retry_after(exc)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        return delay

    def _describe(self, exc: Exception, what: str, attempts: int) -> str:
        import httpx
        import openai

        url = self.base_url
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            return f"the server at {url} timed out after {self.settings.llm.request_timeout:g}s"
        if isinstance(exc, openai.APIConnectionError):
            hint = "check OPENAI_BASE_URL" if url != OPENAI_DEFAULT_URL else \
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
                        "check ASSISTANT_LLM_MODEL and OPENAI_BASE_URL")
            if code == 429:
                return f"the server at {url} is rate limiting requests (429){tries}{detail}; try again later"
            if code >= 500:
                return f"the server at {url} failed with HTTP {code}{tries}{detail}"
            return f"the server at {url} rejected the request (HTTP {code}){detail}"
        if isinstance(exc, openai.APIError):  # e.g. an error event inside a stream, malformed reply
            return f"the server at {url} sent an error: {_one_line(str(exc))}"
        return f"the stream from {url} broke before any text arrived: {_reason(exc)}"

    def _scrub(self, message: str) -> str:
        key = self.settings.llm.api_key.get_secret_value()
        if key:
            message = message.replace(key, "***")
        return message


def _usage(reply: Any) -> dict[str, int] | None:
    """prompt/completion token counts of a reply or stream chunk, when the server sent them."""
    usage = getattr(reply, "usage", None)
    if usage is None:
        # llama.cpp's server sends its own "timings" in the last stream chunk even when usage
        # was not asked for (stream_options), which some servers reject.
        timings = (getattr(reply, "model_extra", None) or {}).get("timings")
        if isinstance(timings, dict) and isinstance(timings.get("prompt_n"), int):
            return {"prompt_tokens": timings["prompt_n"] + int(timings.get("cache_n") or 0),
                    "completion_tokens": int(timings.get("predicted_n") or 0)}
        return None
    out = {k: v for k in ("prompt_tokens", "completion_tokens")
           if isinstance(v := getattr(usage, k, None), int)}
    return out or None


def _is_api_failure(exc: Exception) -> bool:
    import httpx
    import openai

    return isinstance(exc, (openai.APIError, httpx.HTTPError))


def _retryable(exc: Exception) -> bool:
    import httpx
    import openai

    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return False
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    # A stream that dropped before its first token is as safe to repeat as a refused connection.
    return isinstance(exc, httpx.TransportError)


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
