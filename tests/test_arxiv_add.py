"""`assistant add` from arXiv: ids, URLs and searches against a loopback replay of recorded
real arXiv API responses (tests/fixtures/arxiv_api, see its NOTICE); no test reaches the internet."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import AssistantError, BackendError
from assistant.readers.arxiv_atom import parse_feed
from assistant.readers.common import FileResult
from assistant.settings import Settings, SettingsError
from assistant.sources.arxiv import USER_AGENT, ArxivClient, ArxivRef, ArxivUnreachable, fetch_ids, parse_ref, search
from tests.arxiv_replay import ArxivReplay, RawHTTP, atom_entry, atom_feed, http_answer, query_of
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


# --- A hostile or broken API: one clear error, bounded in time, and no id called "not found" unasked.

def _client(url: str, *, sleeps: list[float] | None = None, **sources: object) -> ArxivClient:
    settings = Settings.load(env={"ASSISTANT_CONFIG": ""},
                             sources={"arxiv_api_url": url, "arxiv_delay": 0, "arxiv_retries": 0, **sources})
    return ArxivClient(settings.sources, sleep=sleeps.append if sleeps is not None else time.sleep)


def _feed_of_asked_ids(server: RawHTTP, conn: socket.socket, target: str) -> None:
    """What the API answers an id_list: each id at the version asked, the latest (v3) if none."""
    ids = [i for i in query_of(target).get("id_list", "").split(",") if i]
    entries = [atom_entry(i if "v" in i.split("/")[-1] else i + "v3") for i in ids]
    conn.sendall(http_answer(atom_feed(entries)))


def _answer(data: bytes) -> Callable[[RawHTTP, socket.socket, str], None]:
    return lambda server, conn, target: conn.sendall(data)


@pytest.mark.parametrize(("asked", "fetched", "version"), [
    (["2401.00002", "2401.00002v2"], "2401.00002", "v3"),  # no version: the latest
    (["2401.00002v1", "2401.00002v2"], "2401.00002v2", "v2"),  # else the newest asked
])
def test_two_versions_of_one_paper_are_one_request_and_one_paper(asked: list[str], fetched: str,
                                                                  version: str) -> None:
    # Both refs went into one request; its two entries of one id made a KeyError traceback.
    with RawHTTP(_feed_of_asked_ids) as server:
        out = fetch_ids(_client(server.url), [parse_ref(a) for a in asked], page_size=10)
    assert [query_of(t)["id_list"] for t in server.requests] == [fetched]
    assert [(p.paper_id, p.extra["version"]) for p in out.papers] == [("2401.00002", version)]
    assert (out.not_found, out.problems) == ([], [])
    assert len(out.warnings) == 1 and "same paper" in out.warnings[0]


def test_the_newest_version_asked_is_kept_when_it_is_indexed(fresh_home: Path, embed_cache: Path) -> None:
    # Review: "v1 v2" with v2 indexed skipped v2 as indexed, fetched v1 and replaced v2 with it.
    with RawHTTP(_feed_of_asked_ids) as server:
        a = _assistant(fresh_home, embed_cache, server.url)
        a.add(["2401.00002v2"])
        rep = a.add(["2401.00002v1", "2401.00002v2"])
        asked = [query_of(t)["id_list"] for t in server.requests]
    assert asked == ["2401.00002v2"] and rep.skipped == 1
    paper = a.get_paper("2401.00002")
    assert paper is not None and paper.extra["version"] == "v2"
    assert any("same paper" in w for w in rep.warnings)


def _drip_headers(server: RawHTTP, conn: socket.socket, target: str) -> None:
    server.drip(conn, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000)


def _drip_body(server: RawHTTP, conn: socket.socket, target: str) -> None:
    body = atom_feed([atom_entry("2401.00001v1")]) * 10
    conn.sendall(http_answer(body)[:-len(body)])
    server.drip(conn, body)


@pytest.mark.parametrize("respond", [_drip_headers, _drip_body], ids=["headers", "body"])
def test_a_dripping_api_times_out_at_the_deadline(respond: Callable[[RawHTTP, socket.socket, str], None]) -> None:
    # urlopen's timeout bounds each read: a byte every 0.2 s kept a request going as long as the server liked.
    with RawHTTP(respond) as server:
        t0 = time.monotonic()
        with pytest.raises(ArxivUnreachable) as err:
            _client(server.url, arxiv_timeout=1).get({"id_list": "2401.00001"})
        took = time.monotonic() - t0
    assert str(err.value) == f"cannot reach the arXiv API at {server.url} (timed out)"
    assert took < 3, took


_HEADERS = "HTTP/1.1 200 OK\r\nContent-Type: application/atom+xml\r\n"


@pytest.mark.parametrize(("raw", "why"), [
    (b"GARBAGE\r\n\r\n", "not an HTTP status line: 'GARBAGE"),
    ((_HEADERS + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n").encode(), "the answer was cut off"),
    ((_HEADERS + "X-Long: " + "a" * 70000 + "\r\n\r\n").encode(), "a header line too long"),
    ((_HEADERS + "".join(f"X-H{i}: v\r\n" for i in range(150)) + "\r\n").encode(), "got more than 100 headers"),
    # A body shorter than its Content-Length was taken as the whole answer.
    (http_answer(atom_feed([atom_entry("2401.00001v1")]))[:-20], "the answer was cut off"),
], ids=["status-line", "bad-chunk", "long-header", "many-headers", "cut-off"])
def test_a_broken_http_answer_is_one_line(raw: bytes, why: str) -> None:
    with RawHTTP(_answer(raw)) as server, pytest.raises(BackendError) as err:
        _client(server.url).get({"id_list": "2401.00001"})
    message = str(err.value)
    assert message.startswith(f"the arXiv API at {server.url} sent a broken HTTP answer (")
    assert why in message and "\n" not in message


@pytest.mark.parametrize("value", ["nan", "NaN", "inf"])
def test_a_retry_after_that_is_not_a_number_waits_the_backoff(replay: ArxivReplay, value: str) -> None:
    replay.faults, replay.retry_after = [503], value  # time.sleep(nan) was a ValueError traceback
    sleeps: list[float] = []
    text = _client(replay.url, sleeps=sleeps, arxiv_retries=1).get(
        {"search_query": "", "id_list": "1605.08386", "start": "0", "max_results": "1"})
    assert "1605.08386" in text
    assert len(sleeps) == 1 and math.isfinite(sleeps[0]) and 1.0 <= sleeps[0] < 600


def _pages(entries_for: Callable[[int], list[str]], total: int = 10**9,
           give_up_after: int = 20) -> Callable[[RawHTTP, socket.socket, str], None]:
    """A search API that answers page ``start`` with ``entries_for(start)``, and (so that a client that
    never stops still ends) 503 from request ``give_up_after`` on."""
    def respond(server: RawHTTP, conn: socket.socket, target: str) -> None:
        if len(server.requests) > give_up_after:
            conn.sendall(http_answer(b"down", "503 Service Unavailable", ctype="text/plain"))
        else:
            conn.sendall(http_answer(atom_feed(entries_for(int(query_of(target)["start"])), total=total)))
    return respond


@pytest.mark.parametrize("abstract", [None, ""], ids=["same-entries", "no-abstracts"])
def test_search_stops_at_a_page_that_adds_nothing(abstract: str | None) -> None:
    # Every page the same three entries and a total of 10^9: paging went on for ever.
    same = _pages(lambda start: [atom_entry(f"2401.0000{n}v1", abstract=abstract) for n in range(3)])
    with RawHTTP(same) as server:
        out = search(_client(server.url), "all:x", 5, page_size=3)
    assert out.error is None
    assert len(server.requests) == (2 if abstract is None else 1)
    assert len(out.papers) == (3 if abstract is None else 0)
    assert any("added no new paper" in w for w in out.warnings)


def test_search_reads_short_pages_but_not_for_ever() -> None:
    # The API often answers fewer entries than asked: a cap of pages (ceil(max / page) + 2) cut a normal
    # search of 10 short pages at 4 of them (review). Slow progress stops at 2 * max + a page of entries.
    def short(start: int) -> list[str]:
        return [atom_entry(f"2401.{n:05d}v1") for n in (start, start + 1)]

    with RawHTTP(_pages(short)) as server:
        out = search(_client(server.url), "all:x", 10, page_size=5)
    assert len(out.papers) == 10 and out.warnings == [] and len(server.requests) == 5

    def slow(start: int) -> list[str]:  # each page repeats four earlier entries and adds one
        return [atom_entry(f"2401.{n:05d}v1") for n in (range(5) if start == 0 else [0, 1, 2, 3, start])]

    with RawHTTP(_pages(slow)) as server:
        out = search(_client(server.url), "all:x", 20, page_size=5)
    assert len(server.requests) == 9 and out.error is None and len(out.papers) == 13
    assert any("stopped after 45 entries" in w for w in out.warnings)


@pytest.mark.parametrize("total", ["\u00b2", "\u0661", "9" * 5000])
def test_a_strange_total_count_is_ignored(total: str) -> None:
    # '\u00b2'.isdigit() is True and int() refuses it; 5000 digits exceed int()'s limit.
    entries = [atom_entry("2401.00001v1")]
    with RawHTTP(lambda server, conn, target: conn.sendall(http_answer(atom_feed(entries, total=total)))) as server:
        out = fetch_ids(_client(server.url), [ArxivRef("2401.00001")], page_size=10)
    assert [p.paper_id for p in out.papers] == ["2401.00001"] and out.problems == []
    info = parse_feed(atom_feed(entries, total=total).decode(), "feed.xml", FileResult())
    assert info.total_results is None and info.entries == 1


@pytest.mark.parametrize("scheme", ["ftp", "file", "data", "gopher"])
def test_a_redirect_away_from_http_is_refused(scheme: str) -> None:
    ftp = socket.create_server(("127.0.0.1", 0))  # a would-be FTP server: nothing should connect to it
    ftp.setblocking(False)
    target = {"ftp": f"ftp://127.0.0.1:{ftp.getsockname()[1]}/feed.xml", "file": "file:///etc/passwd",
              "data": "data:,hello", "gopher": f"gopher://127.0.0.1:{ftp.getsockname()[1]}/"}[scheme]
    redirect = http_answer(b"", "302 Found", headers=[("Location", target)])
    try:
        with RawHTTP(_answer(redirect)) as server, pytest.raises(BackendError) as err:
            _client(server.url, arxiv_timeout=2).get({"id_list": "2401.00001"})
        assert str(err.value) == (f"the arXiv API at {server.url} redirected to {target!r}, which is not a valid "
                                  "http(s) URL; refused")
        with pytest.raises(BlockingIOError):
            ftp.accept()  # no connection was made
    finally:
        ftp.close()


def _utf16_entity_feed() -> bytes:
    """A billion-laughs feed in UTF-16 without a byte-order mark: read as UTF-8 its '<!DOCTYPE' has
    NULs between the letters, so a text check passes it, and expat honours encoding="UTF-16"."""
    doc = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE feed [<!ENTITY l0 "lollollol">'
           '<!ENTITY l1 "&l0;&l0;&l0;&l0;&l0;&l0;&l0;&l0;">]>'
           '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
           '<opensearch:totalResults>1</opensearch:totalResults>'
           + atom_entry("2401.00001v1", title="Entity title &l0;", abstract="Expanded: &l1;") + "</feed>")
    return doc.encode("utf-16-le")


def test_a_dtd_is_refused_whatever_the_encoding() -> None:
    with RawHTTP(_answer(http_answer(_utf16_entity_feed()))) as server:
        out = fetch_ids(_client(server.url), [ArxivRef("2401.00001")], page_size=10)
    assert out.papers == [] and out.not_found == []
    assert f"{server.url}: XML with DOCTYPE/ENTITY declarations is refused" in out.problems
    result = FileResult()
    parse_feed(_utf16_entity_feed().decode("utf-8", errors="replace"), "feed.xml", result)
    assert result.papers == [] and [p.message for p in result.problems] == [
        "XML with DOCTYPE/ENTITY declarations is refused"]


def test_ids_never_asked_are_not_called_not_found(replay: ArxivReplay) -> None:
    replay.fail_from = 1  # the first batch is answered, then the API answers 503 to everything
    out = fetch_ids(_client(replay.url), [ArxivRef("1605.08386"), ArxivRef("1707.08567")], page_size=1)
    assert [p.paper_id for p in out.papers] == ["1605.08386"]
    assert out.not_found == [] and out.error and "HTTP 503" in out.error
    assert out.problems == ["not fetched (the arXiv API stopped answering before them; run again to fetch them): "
                            "1707.08567"]


@pytest.mark.parametrize(("body", "problem"), [
    (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x', "malformed XML"),
    (b"<html><body>Service down</body></html>", "no Atom <entry> elements found"),
], ids=["malformed", "not-a-feed"])
def test_an_unreadable_answer_names_its_ids_as_not_fetched(body: bytes, problem: str) -> None:
    with RawHTTP(_answer(http_answer(body))) as server:
        out = fetch_ids(_client(server.url), [ArxivRef("2401.00001")], page_size=10)
    assert out.not_found == []
    assert out.problems[0].startswith(f"{server.url}") and problem in out.problems[0]  # 'http://', not 'http:/'
    assert out.problems[1:] == ["not fetched (the arXiv API's answer could not be read; run again to fetch them): "
                                "2401.00001"]


def test_an_entry_without_abstract_is_a_problem_not_a_missing_paper() -> None:
    feed = atom_feed([atom_entry("2401.00001v1", abstract="")])
    with RawHTTP(_answer(http_answer(feed))) as server:
        out = fetch_ids(_client(server.url), [ArxivRef("2401.00001")], page_size=10)
    assert out.not_found == [] and out.papers == []
    assert out.problems == [f"{server.url}:entry 1 (http://arxiv.org/abs/2401.00001v1): record has no abstract; "
                            "skipped"]


def test_a_400_with_an_html_page_is_an_error_not_a_missing_paper(replay: ArxivReplay) -> None:
    replay.faults = [400]  # the API's own 400s are Atom feeds naming the error; this one is a proxy's page
    with pytest.raises(BackendError, match=r"answered HTTP 400 \(Bad Request\); nothing was changed"):
        fetch_ids(_client(replay.url), [ArxivRef("1605.08386")], page_size=10)


@pytest.mark.parametrize("url", ["export.arxiv.org/api/query", "http://[::1", "http://127.0.0.1:99999/api/query",
                                 "ftp://export.arxiv.org/api/query", "http:///api/query", "http://a b/api"])
def test_a_bad_api_url_names_the_setting(url: str) -> None:
    with pytest.raises(SettingsError) as err:
        _client(url).get({"id_list": "2401.00001"})
    assert str(err.value).startswith(f"sources.arxiv_api_url (ASSISTANT_ARXIV_API_URL) is {url!r}: ")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_cli_hostile_api_answers_are_one_line(fresh_home: Path, embed_cache: Path) -> None:
    def run(url: str) -> subprocess.CompletedProcess[str]:
        env = cli_env(fresh_home, embed_cache, ASSISTANT_ARXIV_API_URL=url, ASSISTANT_SOURCES__ARXIV_RETRIES="0",
                      ASSISTANT_SOURCES__ARXIV_TIMEOUT="2")
        return subprocess.run([sys.executable, "-m", "assistant", "add", "2401.00001"], capture_output=True,
                              text=True, env=env, timeout=120)

    bad_url = run("export.arxiv.org/api/query")
    assert bad_url.returncode == 1
    assert bad_url.stderr.splitlines() == ["error: sources.arxiv_api_url (ASSISTANT_ARXIV_API_URL) is "
                                           "'export.arxiv.org/api/query': not an http:// or https:// URL with a "
                                           "host (e.g. https://export.arxiv.org/api/query)"]
    with RawHTTP(_answer(b"GARBAGE\r\n\r\n")) as server:
        garbage = run(server.url)
    assert garbage.returncode == 1
    assert garbage.stderr.splitlines() == [f"error: the arXiv API at {server.url} sent a broken HTTP answer (not an "
                                           "HTTP status line: 'GARBAGE\\r\\n'); nothing was changed for this request"]
    with RawHTTP(_drip_headers) as server:
        t0 = time.monotonic()
        drip = run(server.url)
    assert drip.returncode == 1 and time.monotonic() - t0 < 30
    assert drip.stderr.splitlines() == [f"error: cannot reach the arXiv API at {server.url} (timed out)"]
