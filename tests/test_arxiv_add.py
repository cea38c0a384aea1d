"""`assistant add` from arXiv: ids, URLs and searches against a loopback replay of recorded
real arXiv API responses (tests/fixtures/arxiv_api, see its NOTICE); no test reaches the internet."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import AssistantError, BackendError
from assistant.settings import Settings
from assistant.sources.arxiv import USER_AGENT, ArxivClient, ArxivRef, ArxivUnreachable, parse_ref
from tests.arxiv_replay import ArxivReplay
from tests.conftest import cli_env, make_settings

DELAY = 0.2  # the tests' spacing between requests (the default is the API's 3 s)


@pytest.fixture()
def replay() -> Iterator[ArxivReplay]:
    with ArxivReplay() as r:
        yield r


def _assistant(home: Path, cache: Path, url: str, **sources: object) -> Assistant:
    a = Assistant(make_settings(home, cache, sources={"arxiv_api_url": url, "arxiv_delay": DELAY, **sources}))
    a.auto_sample = False
    return a


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/api/query"


@pytest.mark.parametrize("text,ref", [
    ("2401.01234", ArxivRef("2401.01234")),
    ("2401.01234v2", ArxivRef("2401.01234", "v2")),
    ("arXiv:2401.01234", ArxivRef("2401.01234")),
    ("0704.0001", ArxivRef("0704.0001")),
    ("hep-th/9901001v2", ArxivRef("hep-th/9901001", "v2")),
    ("math.GT/0309136", ArxivRef("math.GT/0309136")),
    ("https://arxiv.org/abs/2402.00001", ArxivRef("2402.00001")),
    ("http://arxiv.org/abs/hep-th/9901001v1", ArxivRef("hep-th/9901001", "v1")),
    ("https://arxiv.org/pdf/2401.01234v3.pdf", ArxivRef("2401.01234", "v3")),
    ("https://export.arxiv.org/abs/2401.01234?context=cs", ArxivRef("2401.01234")),
    (" arxiv.org/pdf/2401.01234 ", ArxivRef("2401.01234")),
])
def test_parse_ref_accepts_ids_and_urls(text: str, ref: ArxivRef) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize("text", ["abc", "2401.123", "https://example.org/abs/2401.01234", "hep-th/99", ""])
def test_parse_ref_names_what_is_wrong(text: str) -> None:
    with pytest.raises(AssistantError, match="is not an arXiv id or URL"):
        parse_ref(text)


def test_defaults_follow_the_api_terms() -> None:
    s = Settings.load(env={"ASSISTANT_CONFIG": ""})
    assert s.sources.arxiv_delay == 3.0
    assert s.sources.arxiv_api_url == "https://export.arxiv.org/api/query"
    env = Settings.load(env={"ASSISTANT_CONFIG": "", "ASSISTANT_ARXIV_API_URL": "http://127.0.0.1:9/api/query"})
    assert env.sources.arxiv_api_url == "http://127.0.0.1:9/api/query"
    assert "paper-assistant/" in USER_AGENT and "arXiv API" in USER_AGENT


def test_add_ids_and_urls_keeps_arxiv_metadata_and_is_resumable(replay: ArxivReplay, fresh_home: Path,
                                                                 embed_cache: Path) -> None:
    # One id per request here, because the recordings are single-id requests.
    a = _assistant(fresh_home, embed_cache, replay.url, arxiv_page_size=1)
    ids = ["2104.12255v1", "quant-ph/0201082v1", "https://arxiv.org/abs/astro-ph/0601001"]
    report = a.add(ids)
    assert report.ok, report
    assert sorted(report.added) == ["2104.12255", "astro-ph/0601001", "quant-ph/0201082"]
    assert (report.updated, report.skipped) == (0, 0)
    assert len(replay.requests) == 3
    assert {r["user_agent"] for r in replay.requests} == {USER_AGENT}  # a User-Agent that says who asks
    assert "id_list=quant-ph%2F0201082v1" in str(replay.requests[1]["query"])
    times = [float(r["t"]) for r in replay.requests]  # type: ignore[arg-type]
    assert all(b - a_ >= DELAY for a_, b in zip(times, times[1:], strict=False))

    quant = a.get_paper("quant-ph/0201082")
    assert quant is not None and quant.arxiv_id == "quant-ph/0201082"
    assert quant.extra["version"] == "v1"
    assert quant.extra["categories"] == ["quant-ph", "cs.PL"] and quant.extra["primary_category"] == "quant-ph"
    assert quant.authors == ["Stephen Blaha"] and quant.date == "2002-01-18"
    astro = a.get_paper("astro-ph/0601001")
    assert astro is not None and astro.extra["journal_ref"] == "ActaAstron.56:1-50,2006"
    assert a.search("quantum assembly language", 1)[0].paper.paper_id == "quant-ph/0201082"

    # A re-run skips everything; versioned ids already indexed at that version need no request.
    again = a.add(ids)
    assert (len(again.added), again.updated, again.skipped) == (0, 0, 3)
    assert len(replay.requests) == 4
    assert "id_list=astro-ph%2F0601001" in str(replay.requests[3]["query"])
    a.index.close()


def test_not_found_ids_are_named(replay: ArxivReplay, fresh_home: Path, embed_cache: Path) -> None:
    a = _assistant(fresh_home, embed_cache, replay.url)
    report = a.add(["0808.05394", "1707.08567"])
    assert report.added == ["1707.08567"]
    assert report.not_found == ["0808.05394"]
    assert not report.ok
    # An id arXiv has nothing for: the API's empty feed (totalResults 0) is an answer, not a bad response.
    empty = a.add(["0000.0000"])
    assert (empty.added, empty.not_found, empty.problems) == ([], ["0000.0000"], [])
    a.index.close()


def test_search_pages_through_results(replay: ArxivReplay, fresh_home: Path, embed_cache: Path) -> None:
    a = _assistant(fresh_home, embed_cache, replay.url, arxiv_page_size=10)
    report = a.add(search="testing", max_results=25)
    assert report.ok, report
    assert len(report.added) == 25
    starts = [dict(p.split("=", 1) for p in str(r["query"]).split("&"))["start"] for r in replay.requests]
    assert starts == ["0", "10", "20"]
    assert a.status()["papers"] == 25
    first = a.get_paper("2202.12139")
    assert first is not None and first.extra["doi"] == "10.1109/ICSTW55395.2022.00035"  # the Atom's arxiv:doi
    assert first.extra["categories"] == ["cs.SE", "cs.LG"]
    # One request at a time, at least the configured delay apart.
    times = [float(r["t"]) for r in replay.requests]  # type: ignore[arg-type]
    assert all(b - a_ >= DELAY for a_, b in zip(times, times[1:], strict=False))
    assert replay.max_active == 1
    a.index.close()


def test_a_search_cut_short_keeps_what_it_fetched_and_resumes(replay: ArxivReplay, fresh_home: Path,
                                                                embed_cache: Path) -> None:
    replay.fail_from = 1  # the first page arrives, then the API answers 503 to everything
    a = _assistant(fresh_home, embed_cache, replay.url, arxiv_page_size=10, arxiv_retries=1)
    report = a.add(search="testing", max_results=25)
    assert len(report.added) == 10 and report.error and "HTTP 503" in report.error and not report.ok
    assert a.status()["papers"] == 10
    replay.fail_from = None
    again = a.add(search="testing", max_results=25)
    assert again.ok and (len(again.added), again.updated, again.skipped) == (15, 0, 10)
    assert a.status()["papers"] == 25
    a.index.close()


def test_429_and_503_are_retried(replay: ArxivReplay, fresh_home: Path, embed_cache: Path) -> None:
    replay.faults = [503, 429]
    a = _assistant(fresh_home, embed_cache, replay.url)
    waits: list[str] = []
    from assistant.index.ingest import SilentReporter

    report = a.add(["1605.08386"], progress=SilentReporter(on_message=waits.append))
    assert report.added == ["1605.08386"]
    assert [r["status"] for r in replay.requests] == [503, 429, 200]
    assert any("HTTP 503" in w for w in waits) and any("HTTP 429" in w for w in waits)
    a.index.close()


def test_retries_give_up_and_change_nothing(replay: ArxivReplay, copied_sample_home: Path,
                                            embed_cache: Path) -> None:
    replay.faults = [503] * 10
    a = _assistant(copied_sample_home, embed_cache, replay.url, arxiv_retries=2)
    before = a.index.catalogue.hashes()
    with pytest.raises(BackendError, match="answered HTTP 503"):
        a.add(["1605.08386"])
    assert len(replay.requests) == 3
    assert a.index.catalogue.hashes() == before
    a.index.close()


def test_one_request_at_a_time_across_threads(replay: ArxivReplay) -> None:
    settings = Settings.load(env={"ASSISTANT_CONFIG": ""}, sources={"arxiv_api_url": replay.url,
                                                                     "arxiv_delay": 0.05})
    errors: list[BaseException] = []

    def fetch(i: str) -> None:
        try:
            ArxivClient(settings.sources).get({"search_query": "", "id_list": i, "start": "0", "max_results": "1"})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in ("1605.08386", "1707.08567", "2104.12255v1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(replay.requests) == 3 and replay.max_active == 1


def test_a_newer_record_updates_the_indexed_one(replay: ArxivReplay, fresh_home: Path, embed_cache: Path,
                                                tmp_path: Path) -> None:
    old = tmp_path / "old.xml"
    old.write_text("""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><entry>
<id>http://arxiv.org/abs/1605.08386v1</id><published>2016-05-26T17:59:46Z</published>
<title>Heat-bath random walks with Markov bases</title>
<summary>An earlier draft of the abstract about heat-bath random walks on lattice fibers.</summary>
<author><name>Caprice Stanley</name></author></entry></feed>""", encoding="utf-8")
    a = _assistant(fresh_home, embed_cache, replay.url)
    a.ingest([old])
    report = a.add(["1605.08386"])
    assert (report.added, report.updated, report.skipped) == ([], 1, 0)
    paper = a.get_paper("1605.08386")
    assert paper is not None and paper.abstract.startswith("Graphs on lattice points")
    assert paper.authors == ["Caprice Stanley", "Tobias Windisch"]
    a.index.close()


@pytest.mark.slow
def test_cli_add_offline_is_one_line_and_changes_nothing(copied_sample_home: Path, embed_cache: Path) -> None:
    a = Assistant(make_settings(copied_sample_home, embed_cache))
    before = a.index.catalogue.hashes()
    a.index.close()
    url = _closed_port_url()
    r = subprocess.run([sys.executable, "-m", "assistant", "add", "2104.12255"], capture_output=True, text=True,
                       env=cli_env(copied_sample_home, embed_cache, ASSISTANT_ARXIV_API_URL=url), timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: cannot reach the arXiv API at {url} (connection refused)"]
    a = Assistant(make_settings(copied_sample_home, embed_cache))
    assert a.index.catalogue.hashes() == before
    a.index.close()


def test_api_unreachable_is_its_own_error(fresh_home: Path, embed_cache: Path) -> None:
    a = _assistant(fresh_home, embed_cache, _closed_port_url())
    with pytest.raises(ArxivUnreachable, match="cannot reach the arXiv API"):
        a.add(search="all:electron")
    assert not a.index.exists()


@pytest.mark.slow
def test_cli_add_reports_added_and_skipped(replay: ArxivReplay, fresh_home: Path, embed_cache: Path) -> None:
    env = cli_env(fresh_home, embed_cache, ASSISTANT_ARXIV_API_URL=replay.url,
                  ASSISTANT_SOURCES__ARXIV_DELAY=str(DELAY))
    env["ASSISTANT_SOURCES__ARXIV_PAGE_SIZE"] = "1"
    cmd = [sys.executable, "-m", "assistant", "add", "https://arxiv.org/abs/1605.08386", "1707.08567"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "arXiv: 2 added, 0 updated, 0 skipped" in r.stderr
    r = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["added"], out["updated"], out["skipped"], out["papers_total"]) == (0, 0, 2, 2)
    bad = subprocess.run([sys.executable, "-m", "assistant", "add", "not-an-id"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 1 and "'not-an-id' is not an arXiv id or URL" in bad.stderr


def test_a_silent_api_times_out_instead_of_hanging(fresh_home: Path, embed_cache: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the kernel; nothing ever answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api/query"
        a = _assistant(fresh_home, embed_cache, url, arxiv_timeout=0.5, arxiv_retries=1)
        waits: list[str] = []
        from assistant.index.ingest import SilentReporter

        with pytest.raises(ArxivUnreachable, match=r"cannot reach the arXiv API at .* \(timed out\)"):
            a.add(["1605.08386"], progress=SilentReporter(on_message=waits.append))
        assert len(waits) == 1 and "did not answer (timed out)" in waits[0]
        assert not a.index.exists()
    finally:
        silent.close()
