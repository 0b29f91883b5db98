"""Whatever a page holds, its result is bounded: caps on links, headings, texts and URL lengths, a cap on the
stored size of one result, and `truncated` counting what was left out. The hostile pages are those of issue 10."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic_core import to_json

from shared.domain.pages import (
    MAX_HEADINGS,
    MAX_LINKS,
    MAX_RESULT_BYTES,
    MAX_TEXT_CHARS,
    MAX_URL_CHARS,
    Link,
    ScrapeResult,
    Truncation,
)
from shared.scraping.extract import extract
from shared.scraping.fetch import FetchLimits
from shared.scraping.scrape import fit_result, scrape
from shared.settings import Settings, parse_networks
from tests.unit.test_extract import page_of

FINAL_URL = "https://s.example/dir/page"


def links_page(count: int, href: str = "{n}", head: str = "") -> str:
    return f"<html><head>{head}</head><body>" + "".join(f"<a href={href.format(n=n)}>x</a>" for n in range(count))


# Issue 10's pages: each drove a worker to gigabytes or stored megabytes of JSONB.
LONG_BASE_PAGE = links_page(3000, head=f'<base href="https://s.example/{"b" * 100_000}/">')  # 138 KB
LONG_URLS_PAGE = links_page(1800, head=f'<base href="https://s.example/{"p" * 1900}/">')  # 35 KB, stored 20 MB
SHORT_LINKS_PAGE = links_page(250_000, href="/{n}")  # 5 MB, just under the fetch cap


def result_of(html: str) -> ScrapeResult:
    """What scrape() stores for a page, without the network."""
    data = extract(page_of(html, final_url=FINAL_URL))
    result = ScrapeResult(**data.model_dump(), url=FINAL_URL, charset="utf-8", redirects=0, elapsed_ms=1)
    return fit_result(result, MAX_RESULT_BYTES)


def test_the_submit_limit_is_the_extraction_limit() -> None:
    assert MAX_URL_CHARS == FetchLimits().max_url_length == Settings.model_fields["max_url_length"].default


def test_an_overlong_base_is_ignored_and_counted_rather_than_resolved_against() -> None:
    assert len(LONG_BASE_PAGE) > 130_000
    result = result_of(LONG_BASE_PAGE)

    assert len(result.links) == MAX_LINKS
    assert result.links[:2] == [Link(url="https://s.example/dir/0", nofollow=False),
                                Link(url="https://s.example/dir/1", nofollow=False)]
    assert result.truncated == Truncation(links=3000 - MAX_LINKS, long_urls=1)


def test_a_page_of_long_links_is_stored_within_the_result_cap() -> None:
    assert len(LONG_URLS_PAGE) < 36_000
    result = result_of(LONG_URLS_PAGE)

    assert MAX_RESULT_BYTES - 2100 < len(to_json(result)) <= MAX_RESULT_BYTES
    assert len(result.links) > 100 and len(result.links[0].url) > 1900
    assert result.truncated == Truncation(links=1800 - len(result.links))


def test_links_resolved_to_overlong_urls_are_dropped_and_counted() -> None:
    base = f"https://s.example/{'p' * 2020}/"  # 2,039 characters
    hrefs = ["a" * 5, "b" * 9, "c" * 10, "d" * 20]
    data = extract(page_of(f'<base href="{base}">' + "".join(f"<a href={href}>x</a>" for href in hrefs)))

    assert [link.url for link in data.links] == [base + "a" * 5, base + "b" * 9]
    assert data.truncated == Truncation(long_urls=2)


def test_a_page_of_short_links_keeps_the_first_thousand() -> None:
    assert 4_500_000 < len(SHORT_LINKS_PAGE) < FetchLimits().max_bytes
    result = result_of(SHORT_LINKS_PAGE)

    assert [link.url for link in result.links] == [f"https://s.example/{n}" for n in range(MAX_LINKS)]
    assert result.truncated == Truncation(links=250_000 - MAX_LINKS)
    assert len(to_json(result)) < 100_000


@pytest.mark.parametrize("length", [MAX_URL_CHARS, MAX_URL_CHARS + 1])
def test_a_link_is_kept_up_to_the_submit_limit(length: int) -> None:
    url = "https://s.example/" + "x" * (length - len("https://s.example/"))
    data = extract(page_of(f'<a href="{url}">x</a><a href="/ok">ok</a>', final_url=FINAL_URL))

    kept = [link.url for link in data.links]
    assert kept == ([url] if length <= MAX_URL_CHARS else []) + ["https://s.example/ok"]
    assert data.truncated == (None if length <= MAX_URL_CHARS else Truncation(long_urls=1))


def test_an_overlong_canonical_and_og_image_are_dropped_and_counted() -> None:
    long = "/" + "c" * MAX_URL_CHARS
    data = extract(page_of(f'<link rel="canonical" href="{long}"><meta property="og:image" content="{long}">'))

    assert (data.canonical, data.open_graph.image) == (None, None)
    assert data.truncated == Truncation(long_urls=2)


def test_every_text_is_cut_to_the_cap_and_counted() -> None:
    long = "word " * 2000
    head = (f"<title>{long}</title><meta name=description content='{long}'>"
            f"<meta property=og:title content='{long}'><meta property=og:description content='short'>")
    data = extract(page_of(f"<html><head>{head}</head><body><h1>{long}</h1><h2>fine</h2>"))

    texts = (data.title, data.description, data.open_graph.title, data.headings.h1[0])
    # Cut at the cap, the trailing space of the last whole word dropped.
    assert {len(text or "") for text in texts} == {MAX_TEXT_CHARS - 1}
    assert (data.open_graph.description, data.headings.h2) == ("short", ["fine"])
    assert data.truncated == Truncation(texts=4)
    assert data.word_count == 2001  # the heading's words and "fine"; a title is not visible text


def test_a_huge_attribute_costs_no_more_than_its_capped_text() -> None:
    description = "a " * 2_000_000
    data = extract(page_of(f"<meta name=description content='{description}'>"))

    assert data.description == ("a " * 500).strip()
    assert data.truncated == Truncation(texts=1)


def test_headings_stop_at_the_cap_per_level() -> None:
    html = "".join(f"<h1>one {n}</h1><h3>three {n}</h3>" for n in range(MAX_HEADINGS + 50))
    data = extract(page_of(html))

    assert (len(data.headings.h1), len(data.headings.h3)) == (MAX_HEADINGS, MAX_HEADINGS)
    assert data.headings.h1[-1] == f"one {MAX_HEADINGS - 1}"
    assert data.truncated == Truncation(headings=100)


def test_an_ordinary_page_says_nothing_was_truncated() -> None:
    data = extract(page_of("<title>t</title><h1>h</h1><a href=/a>a</a>"))

    assert data.truncated is None
    assert "truncated" in data.model_dump(mode="json")


def long_links_result(count: int, url_chars: int) -> ScrapeResult:
    links = [Link(url=f"https://s.example/{n:05d}/" + "u" * url_chars, nofollow=False) for n in range(count)]
    return result_of("<h1>kept</h1>").model_copy(update={"links": links, "truncated": Truncation(long_urls=3)})


def test_a_result_over_the_size_cap_keeps_the_links_that_fit_and_counts_the_rest() -> None:
    big = long_links_result(MAX_LINKS, 2000)
    assert len(to_json(big)) > 2_000_000

    fitted = fit_result(big, MAX_RESULT_BYTES)

    assert MAX_RESULT_BYTES - 2100 < len(to_json(fitted)) <= MAX_RESULT_BYTES
    assert fitted.links == big.links[:len(fitted.links)]
    assert fitted.truncated == Truncation(links=MAX_LINKS - len(fitted.links), long_urls=3)
    assert fitted.headings.h1 == ["kept"]


def test_links_give_way_before_headings() -> None:
    headings = {"h1": ["h" * 900] * 3, "h2": [], "h3": []}
    result = ScrapeResult.model_validate({**long_links_result(10, 100).model_dump(), "headings": headings})
    bare = result.model_copy(update={"links": [], "headings": {"h1": [], "h2": [], "h3": []},
                                     "truncated": Truncation(links=10, headings=3, long_urls=3)})

    fitted = fit_result(result, len(to_json(bare)) + 950)

    assert (fitted.links, len(fitted.headings.h1)) == ([], 1)
    assert fitted.truncated == Truncation(links=10, headings=2, long_urls=3)
    assert len(to_json(fitted)) <= len(to_json(bare)) + 950


def test_a_result_under_the_cap_is_kept_whole() -> None:
    result = long_links_result(10, 100)
    assert fit_result(result, MAX_RESULT_BYTES) is result


@pytest.fixture(scope="module")
def hostile_site() -> Iterator[str]:
    pages = {"/long-base": LONG_BASE_PAGE, "/long-urls": LONG_URLS_PAGE, "/short-links": SHORT_LINKS_PAGE}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("path", "least_links"), [("/long-base", MAX_LINKS), ("/long-urls", 101),
                                                   ("/short-links", MAX_LINKS)])
def test_scrape_stores_at_most_the_result_cap_for_each_hostile_page(hostile_site: str, path: str,
                                                                    least_links: int) -> None:
    port = int(hostile_site.rsplit(":", 1)[1])
    limits = FetchLimits(allowed_ports=frozenset({port}), allowed_networks=parse_networks("127.0.0.0/8"))

    result = scrape(hostile_site + path, limits)

    assert least_links <= len(result.links) <= MAX_LINKS and result.truncated is not None
    assert len(to_json(result)) <= MAX_RESULT_BYTES
