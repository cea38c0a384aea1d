"""Fuzz the real `assistant serve` from its own OpenAPI schema with Schemathesis (issue 23): every
operation, valid and invalid inputs (positive and negative generation), and no answer may be a 5xx.

A slice that fits CI: a few dozen examples per operation and mode, on one server with ingest on
(a copy of the sample home, so fuzzed papers go nowhere else). A failure prints the case as a curl line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess
from tests.test_server import writable_copy

pytestmark = pytest.mark.slow
EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve-fuzz") / "serve.log"
    srv = ServerProcess(writable_copy(sample_home, tmp_path_factory), embed_cache, log, "--allow-ingest",
                        "--max-concurrent", "2", env={"ASSISTANT_SERVE__MAX_INGEST_BYTES": "65536"})
    yield srv
    srv.stop()


def _text_media_types() -> None:
    """Ingest bodies are JSONL or BibTeX text: let Schemathesis send generated strings as they are."""
    import schemathesis
    from hypothesis import strategies as st

    for name in ("application/x-ndjson", "application/x-bibtex"):
        schemathesis.openapi.media_type(name, st.text(max_size=400).map(lambda s: s.encode("utf-8", "replace")))


def _operations(srv: ServerProcess) -> list[Any]:
    import schemathesis  # (the test extra installs it; imported here to keep collection light)

    status, raw_schema = srv.json("GET", "/openapi.json")
    assert status == 200
    schema = schemathesis.openapi.from_dict(raw_schema)
    return [op.ok() for op in schema.get_all_operations()]


def test_the_schema_describes_every_endpoint(fuzz_server: ServerProcess) -> None:
    labels = {op.label for op in _operations(fuzz_server)}
    assert {"POST /v1/ask", "POST /v1/chat/completions", "POST /v1/ingest", "GET /v1/search", "GET /v1/papers",
            "GET /v1/papers/{paper_id}", "GET /healthz", "GET /v1/models"} <= labels, labels
    # The bodies the routes parse themselves are described too.
    schema = fuzz_server.json("GET", "/openapi.json")[1]
    assert schema["paths"]["/v1/ask"]["post"]["requestBody"]["required"] is True
    assert schema["components"]["schemas"]["AskRequest"]["properties"]["question"]["maxLength"] == 4000
    assert "messages" in schema["components"]["schemas"]["ChatRequest"]["properties"]
    # /v1/verify's body and /v1/ingest's collection were missing: the fuzzer never sent them.
    assert schema["paths"]["/v1/verify"]["post"]["requestBody"]["required"] is True
    assert "claim" in schema["components"]["schemas"]["VerifyRequest"]["properties"]
    assert "collection" in {p["name"] for p in schema["paths"]["/v1/ingest"]["post"]["parameters"]}


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_the_schema_allows_or_breaks_gets_a_5xx(fuzz_server: ServerProcess, mode: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    _text_media_types()
    seen: dict[str, set[int]] = {}
    failures: list[str] = []
    for op in _operations(fuzz_server):
        strategy = op.as_strategy(generation_mode=GenerationMode(mode))

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: Any) -> None:
            resp = case.call(base_url=fuzz_server.url, timeout=120)
            seen.setdefault(case.operation.label, set()).add(resp.status_code)
            if resp.status_code >= 500 and resp.status_code != 503:  # 503 = busy, with Retry-After
                failures.append(f"{resp.status_code} {case.as_curl_command(headers=None)[:600]}\n"
                                f"  -> {resp.text[:300]}")

        try:
            run()
        except Unsatisfiable:
            assert mode == "negative"  # nothing to break in an operation without parameters or body
    assert not failures, "\n".join(failures[:10])
    assert "Traceback" not in fuzz_server.log(), fuzz_server.log()[-3000:]
    assert len(seen) >= (8 if mode == "positive" else 5), seen
