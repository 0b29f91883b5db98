"""Page content (shared.scraping.content): the main content as Markdown and plain text, the whole body on request,
and bounded results without exceptions whatever the page."""

import logging
import os
import random
import re
import time
from pathlib import Path

import pytest

from shared.domain.pages import MAX_CONTENT_TEXT_CHARS, MAX_MARKDOWN_CHARS, PageContent
from shared.scraping import content
from shared.scraping.content import MAX_CONTENT_MARKUP_CHARS, MAX_CONTENT_TAGS, extract_content
from shared.scraping.html_charset import decode_html
from tests.unit.test_extract_bounds import LONG_BASE_PAGE, LONG_URLS_PAGE, SHORT_LINKS_PAGE

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "html"
URL = "https://blog.harbour.example/posts/connection-pools"
FETCH_CAP = 5 * 1024 * 1024
EMPTY = PageContent(markdown="", text="")
# Every piece of the fixture's chrome: cookie banner, header and its navigation, search, breadcrumbs, ads, share
# buttons, comments, sidebar, footer, scripts and styles.
CHROME = ["cookies", "Careers at Harbour", "Subscribe to the newsletter", "Search the blog", "Advertisement",
          "CloudDB Pro", "Share on Twitter", "Great write-up", "PgBouncer", "Related posts", "HarbourDB Enterprise",
          "every Friday", "Privacy policy", "All rights reserved", "SCRIPT TEXT", "min-height"]


@pytest.fixture(scope="module")
def article() -> str:
    return (FIXTURES / "article_with_chrome.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def main_content(article: str) -> PageContent:
    return extract_content(article, URL)


def paragraphs(count: int, words: int = 12) -> str:
    """`count` distinct paragraphs of `words` words each."""
    rng = random.Random(count)
    vocabulary = ["harbour", "bridge", "queue", "worker", "page", "river", "market", "station", "library", "garden"]
    return "".join(f"<p>Paragraph {n}: {' '.join(rng.choices(vocabulary, k=words))}.</p>\n" for n in range(count))


def test_an_article_keeps_its_structure_as_markdown(main_content: PageContent) -> None:
    markdown = main_content.markdown

    assert markdown.startswith("# Tuning a connection pool for serverless workers\n")
    assert "\n## What a worker actually holds\n" in markdown and "\n### The three rules we settled on\n" in markdown
    assert "\n1. Borrow a connection for one statement" in markdown and "\n3. Size the pool from" in markdown
    assert "\n- `TRAWL_DATABASE_POOL_SIZE` sets the number of connections each instance keeps." in markdown
    assert ("[the cumulative statistics views](https://www.postgresql.org/docs/current/monitoring-stats.html)"
            in markdown)
    assert "[post about queue workers](https://blog.harbour.example/posts/queue-workers)" in markdown
    assert re.search(r"\| Pool size \| Pages per second \| Median latency \(ms\) \|\s*\n\|---\|---\|---\|\n"
                     r"\| 1 \| 41 \| 212 \|", markdown)
    assert "```\npool = ThreadedConnectionPool(\n    minconn=1,\n" in markdown
    assert main_content.truncated is False


def test_boilerplate_around_the_article_is_dropped(main_content: PageContent) -> None:
    for chrome in CHROME:
        assert chrome not in main_content.markdown
        assert chrome not in main_content.text


def test_source_line_breaks_inside_a_paragraph_do_not_reach_the_markdown(main_content: PageContent) -> None:
    assert "it reads the item, it records the outcome" in main_content.markdown  # a line break and indent in the source
    assert not re.search(r"\n {5,}\S", main_content.markdown)


def test_text_is_the_same_content_without_markup(main_content: PageContent) -> None:
    lines = main_content.text.split("\n")

    assert lines[:2] == ["Tuning a connection pool for serverless workers",
                         "Every serverless instance that talks to PostgreSQL opens its own connections, and the "
                         "database admits only a fixed number of sessions. When the platform scales out to eighty "
                         "instances, a pool that looked modest on one machine becomes the reason new sessions are "
                         "refused. This post measures how small the pool can be before throughput suffers, and "
                         "explains the arithmetic we now use to size it."]
    assert "Pool size\tPages per second\tMedian latency (ms)" in lines and "3\t58\t171" in lines
    assert "Borrow a connection for one statement or one short transaction, never for a whole invocation." in lines
    assert "    minconn=1," in lines
    assert "We instrumented the workers with the cumulative statistics views and found" in main_content.text
    assert not re.search(r"[#*`|<>\[\]]|\]\(|---", main_content.text)


def test_the_whole_body_keeps_navigation_ads_and_footer(article: str) -> None:
    whole = extract_content(article, URL, main_content_only=False)

    assert "- [Careers at Harbour](https://blog.harbour.example/careers)" in whole.markdown
    assert "[Try CloudDB Pro free for 30 days. No credit card needed!](https://ads.example.net/click?id=991)" in whole.markdown
    assert "© 2024 Harbour Software Ltd. All rights reserved." in whole.markdown
    assert "# Tuning a connection pool for serverless workers" in whole.markdown
    assert "| 3 | 58 | 171 |" in whole.markdown
    assert "Careers at Harbour" in whole.text.split("\n")
    assert "SCRIPT TEXT" not in whole.markdown and "min-height" not in whole.markdown
    assert not re.search(r"\]\(|\|---", whole.text)


def test_links_resolve_against_the_base_element_and_unsafe_targets_become_text() -> None:
    page = ('<html><head><base href="https://cdn.example/blog/"></head><body><p>Read <a href="posts/1">the post</a>,'
            ' <a href="javascript:alert(1)">click me</a>, <a href="data:text/html,x">data</a> and '
            '<a href="mailto:team@example.com">mail us</a>.</p></body></html>')

    markdown = extract_content(page, "https://www.example/a/b", main_content_only=False).markdown

    assert markdown == ("Read [the post](https://cdn.example/blog/posts/1), click me, data and "
                        "[mail us](mailto:team@example.com).")


def test_long_content_is_cut_at_a_paragraph_and_says_so() -> None:
    page = f"<html><body><article><h1>A long read</h1>{paragraphs(2_000)}</article></body></html>"

    result = extract_content(page, URL)

    assert result.truncated is True
    assert MAX_MARKDOWN_CHARS - 200 < len(result.markdown) <= MAX_MARKDOWN_CHARS
    assert MAX_CONTENT_TEXT_CHARS - 200 < len(result.text) <= MAX_CONTENT_TEXT_CHARS
    last = result.markdown.rsplit("\n\n", 1)[-1]
    assert re.fullmatch(r"Paragraph \d+: [a-z ]+\.", last), last  # a whole paragraph, not a cut one
    assert re.fullmatch(r"Paragraph \d+: [a-z ]+\.", result.text.rsplit("\n", 1)[-1])


def test_a_code_block_cut_by_the_cap_is_closed() -> None:
    code = "\n".join(f"    step_{n} = run({n})" for n in range(8_000))
    page = f"<html><body><article><h1>Listing</h1>{paragraphs(3)}<pre><code>{code}</code></pre></article></body></html>"

    markdown = extract_content(page, URL).markdown

    assert len(markdown) <= MAX_MARKDOWN_CHARS
    assert markdown.endswith("\n```") and markdown.count("```") == 2
    assert "    step_1 = run(1)" in markdown


def test_a_page_past_the_markup_budget_is_read_up_to_it_and_flagged() -> None:
    tags = "<i>x</i> " * (MAX_CONTENT_TAGS // 2 + 1_000)
    page = f"<html><body><article><h1>Many tags</h1>{paragraphs(5)}<p>{tags}</p><p>The end is unread.</p>"

    result = extract_content(page, URL)

    assert result.truncated is True
    assert "Paragraph 4:" in result.text and "The end is unread" not in result.text


def test_scripts_do_not_count_against_the_markup_budget() -> None:
    state = "<script>window.state = '" + "a<b " * (MAX_CONTENT_MARKUP_CHARS // 2) + "';</script>"
    page = f"<html><head>{state}<style>{'p{x:y}' * 200_000}</style></head><body><article>{paragraphs(8)}</article>"

    result = extract_content(page, URL)

    assert result.truncated is False
    assert "Paragraph 7:" in result.text and "window.state" not in result.text


def test_a_legacy_encoding_decoded_by_the_fetcher_comes_through() -> None:
    text, charset = decode_html((FIXTURES / "undeclared_cp1252.html").read_bytes(), None)

    result = extract_content(text, "https://ecole.example/")
    whole = extract_content(text, "https://ecole.example/", main_content_only=False)

    assert charset == "cp1252"
    assert "L’école française accueille des élèves de tous âges." in result.text
    assert whole.markdown.startswith("# Éducation en France\n\nL’école française")


def _nested(depth: int) -> str:
    return "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth


def _table(rows: int) -> str:
    return "<html><body><table>" + ("<tr>" + "<td>cell text</td>" * 50 + "</tr>") * rows + "</table>"


HOSTILE = {
    "issue 10: 100 KB base href": LONG_BASE_PAGE,
    "issue 10: long links": LONG_URLS_PAGE,
    "issue 10: 5 MB of short links": SHORT_LINKS_PAGE,
    "100,000 nested divs": _nested(100_000),
    "5 MiB table": _table(FETCH_CAP // 900),
    "5 MiB text node": "<html><body><p>" + "word " * (FETCH_CAP // 5),
    "5 MiB of line breaks": "<html><body>" + "<br>" * (FETCH_CAP // 4),
    "5 MiB of open tags": "<b>" * (FETCH_CAP // 3),
    "unclosed script": "<html><body><p>text</p><script>" + "x<y " * 100_000,
    "control characters and lone surrogates": "<p>a\x01b\x0bc\ud800d\ufffe" * 1_000 + "</p>",
    "XML declaration with an encoding": '<?xml version="1.0" encoding="iso-8859-1"?><html><body><p>declared</p>',
    "no tags": "just some words, no markup at all",
    "invalid IPv6 hosts in base and links": ('<html><head><base href="http://[oops/"></head><body><p>'
                                             + '<a href="http://[bad/x">bad</a> text ' * 100),
}


@pytest.mark.parametrize("html", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_pages_give_bounded_results_quickly(html: str, caplog: pytest.LogCaptureFixture) -> None:
    started = time.process_time()
    with caplog.at_level(logging.WARNING, logger=content.log.name):
        for main_content_only in (True, False):
            result = extract_content(html, URL, main_content_only=main_content_only)
            assert len(result.markdown) <= MAX_MARKDOWN_CHARS and len(result.text) <= MAX_CONTENT_TEXT_CHARS
    # Both modes take 0.4 s at most on this machine; trafilatura without the budgets takes 7-22 s on the 5 MiB
    # pages (bench/README.md, "Page content: extractor choice"), so this fails if a budget stops working.
    assert time.process_time() - started < 4
    assert not [record for record in caplog.records if record.name == content.log.name]  # nothing failed inside


@pytest.mark.parametrize("html", ["", "   \n\t ", "<html><head><title>Only a head</title></head></html>",
                                  "<!-- a comment -->", "\x00\x00\x00"])
def test_a_page_without_content_gives_empty_content(html: str) -> None:
    assert extract_content(html, URL) == EMPTY
    assert extract_content(html, None, main_content_only=False) == EMPTY


def test_binary_data_gives_empty_content() -> None:
    garbage = os.urandom(200_000)

    for text in (garbage.decode("cp1252", errors="replace"), garbage.decode("utf-8", errors="replace")):
        assert extract_content(text, URL) == EMPTY


def test_an_extractor_failure_gives_empty_content_and_is_logged(
    article: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise IndexError("a heuristic's bug")

    monkeypatch.setattr(content, "bare_extraction", broken)

    with caplog.at_level(logging.WARNING, logger=content.log.name):
        assert extract_content(article, URL) == EMPTY
    assert [record.exc_info[0] for record in caplog.records if record.exc_info] == [IndexError]
