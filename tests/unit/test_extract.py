"""Extraction (shared.scraping.extract) and body decoding (shared.scraping.html_charset) on fixture pages."""

import hashlib
import json
from pathlib import Path

import pytest

from shared.domain.pages import MAX_HEADINGS, MAX_LINKS, Link, Truncation
from shared.scraping.extract import EXCERPT_CHARS, extract
from shared.scraping.fetch import FetchedPage
from shared.scraping.html_charset import decode_html

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "html"


def page_of(
    text: str,
    final_url: str = "https://www.example.com/articles/fixture?ref=home",
    **overrides: object,
) -> FetchedPage:
    """A FetchedPage as fetch() would return it for ``text``."""
    fields: dict[str, object] = {
        "url": final_url,
        "final_url": final_url,
        "status": 200,
        "content_type": "text/html",
        "charset": "utf-8",
        "text": text,
        "content_language": None,
        "elapsed_ms": 12,
        "redirects": 0,
    }
    return FetchedPage(**{**fields, **overrides})  # type: ignore[arg-type]


def fixture_page(name: str, http_charset: str | None = None) -> FetchedPage:
    """A fixture file decoded the way fetch() decodes bodies."""
    text, charset = decode_html((FIXTURES / name).read_bytes(), http_charset)
    return page_of(text, charset=charset)


# The visible text of article.html, whitespace-collapsed: what word_count and the digest see.
ARTICLE_TEXT = " ".join(
    ["Home", "Posts", "Latest", "posts", "Skip", "to", "content", "The", "fixture", "article", "This", "article", "exists", "so", "that", "the", "extraction", "tests", "have", "something", "realistic", "to", "chew", "on.", "It", "links", "to", "the", "about", "page,", "to", "a", "sponsor", "and", "to", "the", "same", "sponsor", "again.", "First", "section", "Relative", "links", "resolve", "against", "the", "base", "element,", "not", "the", "page", "URL:", "python,", "scraping.", "A", "detail", "Some", "links", "must", "be", "skipped:", "script,", "mail,", "phone,", "ftp,", "no", "href.", "Second", "section", "User", "generated", "link:", "a", "profile.", "©", "2024", "Trawl", "&", "friends"]
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TestArticle:
    """A well-formed page with every field the extractor reports."""

    data = extract(fixture_page("article.html"))

    def test_fetch_fields_are_carried_over(self) -> None:
        assert (self.data.final_url, self.data.status, self.data.content_type) == (
            "https://www.example.com/articles/fixture?ref=home",
            200,
            "text/html",
        )

    def test_metadata(self) -> None:
        assert self.data.title == "Trawl fixture: an article"
        assert self.data.description == "A fixture article used by the extraction tests."
        assert self.data.canonical == "https://www.example.com/articles/fixture"
        assert self.data.lang == "en-GB"
        assert self.data.published_time == "2024-05-06T07:08:09+00:00"

    def test_open_graph_with_image_resolved_against_base(self) -> None:
        og = self.data.open_graph
        assert (og.title, og.description, og.site_name) == (
            "Fixture article (OG)",
            "Open Graph description.",
            "Trawl Fixtures",
        )
        assert og.image == "https://cdn.example.com/images/cover.png"

    def test_headings_by_level_in_order(self) -> None:
        headings = self.data.headings
        assert headings.h1 == ["The fixture article"]  # not the one written by the script
        assert headings.h2 == ["First section", "Second section"]
        assert headings.h3 == ["A detail"]

    def test_links_are_absolute_against_base_deduplicated_and_http_only(self) -> None:
        assert self.data.links == [
            Link(url="https://cdn.example.com/", nofollow=False),
            Link(url="https://cdn.example.com/blog/posts/", nofollow=False),
            Link(url="https://cdn.example.com/about.html", nofollow=False),
            # nofollow once, followable once: a crawler may still follow it
            Link(url="https://partner.example.org/deal?id=7", nofollow=False),
            Link(url="https://cdn.example.com/blog/tags/python", nofollow=False),
            Link(url="https://cdn.example.com/blog/tags/scraping", nofollow=False),
            Link(url="http://ugc.example.net/profile", nofollow=True),
        ]

    def test_visible_text_excludes_hidden_elements(self) -> None:
        text = self.data.excerpt
        assert text.startswith("Home Posts Latest posts Skip to content The fixture article This")
        for hidden in (
            "SCRIPT TEXT",
            "STYLE TEXT",
            "NOSCRIPT",
            "TEMPLATE",
            "comment",
            "Trawl fixture:",
        ):
            assert hidden not in text

    def test_counts_and_digest_are_of_the_normalised_text(self) -> None:
        assert len(self.data.excerpt) <= EXCERPT_CHARS
        assert ARTICLE_TEXT.startswith(self.data.excerpt)
        assert self.data.word_count == len(ARTICLE_TEXT.split()) == 79
        assert self.data.text_sha256 == sha256(ARTICLE_TEXT)


def test_broken_markup_still_yields_structure() -> None:
    data = extract(
        fixture_page("broken.html"),
    )
    assert data.title == "Broken markup page"
    assert data.description == "unquoted-description"
    assert data.headings.h1 == ["Unclosed heading"]
    assert data.headings.h2 == ["Heading inside an unclosed div"]
    assert data.headings.h3 == ["Last heading"]
    assert [link.url for link in data.links] == [
        "https://www.example.com/one",
        "https://www.example.com/two",
        "https://www.example.com/three",
    ]
    assert "Trailing text & an entity © and a bare & ampersand" in data.excerpt


@pytest.mark.parametrize(
    ("name", "http_charset", "codec", "title"),
    [
        ("cp1252_meta.html", None, "cp1252", "Café crème à 5 €"),  # meta says ISO-8859-1
        ("utf8_header_only.html", "utf-8", "utf-8", "Grüße aus Köln – 日本語 – Ελληνικά"),
        ("utf8_header_only.html", None, "utf-8", "Grüße aus Köln – 日本語 – Ελληνικά"),
        ("undeclared_cp1252.html", None, "cp1252", "Les élèves et leurs écoles"),
    ],
)
def test_charsets(name: str, http_charset: str | None, codec: str, title: str) -> None:
    page = fixture_page(name, http_charset)
    assert page.charset == codec
    assert extract(page).title == title


def test_meta_windows_1252_page_keeps_smart_quotes_and_euro() -> None:
    data = extract(fixture_page("cp1252_meta.html"))
    assert "Le \u201cpain au chocolat\u201d coûte 2 € ; l\u2019élève" in data.excerpt


@pytest.mark.parametrize(
    ("body", "http_charset", "expected"),
    [
        # The HTTP header beats a contradicting meta tag.
        ('<meta charset="iso-8859-1"><p>Köln</p>'.encode(), "utf-8", "Köln"),
        # A byte-order mark beats everything.
        (b"\xef\xbb\xbf<p>K\xc3\xb6ln</p>", "iso-8859-1", "Köln"),
        # Unknown or non-web charset labels are ignored rather than trusted.
        ("<p>Köln</p>".encode(), "x-no-such-charset", "Köln"),
        ('<meta charset="undefined"><p>Köln</p>'.encode(), None, "Köln"),
        (b'<meta charset="unicode_escape"><p>K\\u00f6ln</p>', None, "K\\u00f6ln"),
        # A meta tag readable as ASCII cannot really be UTF-16.
        ('<meta charset="utf-16"><p>Köln</p>'.encode(), None, "Köln"),
    ],
)
def test_charset_precedence(body: bytes, http_charset: str | None, expected: str) -> None:
    text, _ = decode_html(body, http_charset)
    assert expected in text


def test_undecodable_bytes_are_replaced_not_fatal() -> None:
    text, codec = decode_html(b"<p>ok \xff\xfe\xfa</p>", "utf-8")
    assert (codec, text) == ("utf-8", "<p>ok \ufffd\ufffd\ufffd</p>")


def test_nul_bytes_are_stripped_everywhere() -> None:
    body = b'<html lang="e\x00n"><title>Ti\x00tle</title><a href="/a\x00b">x</a><p>te\x00xt</p>'
    text, _ = decode_html(body, "utf-8")
    assert "\x00" not in text
    data = extract(page_of(body.decode()))  # a page built without decode_html
    assert "\x00" not in data.model_dump_json()
    assert "\\u0000" not in data.model_dump_json()
    assert (data.title, data.lang, data.excerpt) == ("Title", "en", "x text")


@pytest.mark.parametrize(
    ("html", "final_url", "expected"),
    [
        ('<a href="b">x</a>', "https://s.example/dir/page", "https://s.example/dir/b"),
        ('<a href="../b">x</a>', "https://s.example/dir/page", "https://s.example/b"),
        ('<a href="//cdn.example/x">x</a>', "https://s.example/", "https://cdn.example/x"),
        ('<a href="?q=1">x</a>', "https://s.example/p", "https://s.example/p?q=1"),
        (
            '<base href="/root/"><a href="b">x</a>',
            "https://s.example/dir/page",
            "https://s.example/root/b",
        ),
        (
            '<base href="https://other.example/x/"><a href="b">x</a>',
            "https://s.example/",
            "https://other.example/x/b",
        ),
        (
            '<base href="javascript:alert(1)"><a href="b">x</a>',
            "https://s.example/d/p",
            "https://s.example/d/b",
        ),
        (
            '<a href=" https://s.example/sp ace ">x</a>',
            "https://s.example/",
            "https://s.example/sp ace",
        ),
        ('<a href="page#section">x</a>', "https://s.example/", "https://s.example/page"),
    ],
)
def test_relative_links_and_base(html: str, final_url: str, expected: str) -> None:
    data = extract(page_of(html, final_url=final_url))
    assert [link.url for link in data.links] == [expected]


@pytest.mark.parametrize(
    "href",
    [
        "javascript:void(0)",
        "mailto:a@b.example",
        "tel:123",
        "ftp://f.example/",
        "data:text/html,x",
        "#top",
        "",
        "http://[broken",
    ],
)
def test_non_http_and_broken_links_are_skipped(href: str) -> None:
    assert extract(page_of(f'<a href="{href}">x</a>')).links == []


def test_robots_meta_nofollow_applies_to_every_link() -> None:
    html = '<meta name="robots" content="noindex, NOFOLLOW"><a href="/a">a</a><a href="/b">b</a>'
    assert all(link.nofollow for link in extract(page_of(html)).links)


def test_lang_falls_back_to_meta_then_content_language_header() -> None:
    meta = '<meta http-equiv="Content-Language" content="fr"><p>x</p>'
    assert extract(page_of(meta, content_language="de")).lang == "fr"
    assert extract(page_of("<p>x</p>", content_language="de-AT, en")).lang == "de-AT"
    assert extract(page_of("<p>x</p>")).lang is None


def test_excerpt_is_cut_at_a_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    data = extract(page_of(f"<p>{words}</p>"))
    assert len(data.excerpt) <= EXCERPT_CHARS
    assert words.startswith(data.excerpt + " ")
    assert data.word_count == 200


def test_empty_document() -> None:
    data = extract(page_of(""))
    assert (data.title, data.links, data.word_count, data.excerpt) == (None, [], 0, "")
    assert data.text_sha256 == sha256("")


def test_huge_page_under_the_cap_is_extracted_up_to_the_caps() -> None:
    # The largest page fetch() lets through (5 MiB): every word counts, lists stop at their caps.
    sections = "".join(
        f'<h2>Part {i}</h2><p>{"lorem " * 80}<a href="/p/{i}">more</a></p>' for i in range(9000)
    )
    assert len(sections) > 4 * 1024 * 1024
    data = extract(page_of(f"<title>Huge</title><body>{sections}</body>"))
    assert (len(data.headings.h2), len(data.links), data.word_count) == (MAX_HEADINGS, MAX_LINKS, 9000 * 83)
    assert data.truncated == Truncation(links=9000 - MAX_LINKS, headings=9000 - MAX_HEADINGS)


def test_deeply_nested_markup_does_not_overflow_the_stack() -> None:
    data = extract(page_of("<div>" * 20000 + "deep" + "</div>" * 20000))
    assert "deep" in data.excerpt


def test_result_is_json_serialisable() -> None:
    dumped = extract(fixture_page("article.html")).model_dump(mode="json")
    assert json.loads(json.dumps(dumped))["links"][0] == {
        "url": "https://cdn.example.com/",
        "nofollow": False,
    }
