"""What the scraper keeps from an HTML page: metadata, headings, links and a text digest, all bounded.

lxml's HTML parser (libxml2, which closes unclosed elements as browsers do) streams the page into
a parser target that keeps only what the result holds and never builds a tree: on issue 10's
hostile pages a BeautifulSoup tree cost 270-410 MiB per item, the stream at most about 3x the fetch
byte cap (bench/memory_bench.py, bench/README.md "Memory per item"). Whatever the page, the result
is bounded: at most MAX_LINKS links and MAX_HEADINGS headings per level, texts cut to
MAX_TEXT_CHARS, URLs longer than the submit limit left out (an overlong `<base href>` too), and
`truncated` counts what was left out.
"""

import hashlib
import re
from urllib.parse import urldefrag, urljoin, urlsplit

from lxml import etree

from shared.domain.pages import (
    MAX_HEADINGS,
    MAX_LINKS,
    MAX_TEXT_CHARS,
    MAX_URL_CHARS,
    Headings,
    Link,
    OpenGraph,
    PageData,
    Truncation,
)
from shared.scraping.fetch import FetchedPage
from shared.scraping.html_charset import strip_nul

EXCERPT_CHARS = 300
# Text is collapsed a slice at a time so that one huge text node never becomes a list of millions of words.
_SLICE_CHARS = 64 * 1024
_FEED_CHARS = 64 * 1024
# Meta names the result uses; a page's other meta tags are not kept.
_WANTED_META = frozenset({
    "description", "robots", "content-language", "article:published_time",
    "og:title", "og:description", "og:site_name", "og:image",
})
_MAX_META_KEY_CHARS = 64
HIDDEN_TAGS = frozenset({"title", "script", "style", "noscript", "template"})
HEADING_TAGS = ("h1", "h2", "h3")
BLOCK_TAGS = frozenset(
    ["address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "li", "main", "nav", "ol", "option", "p", "pre", "section", "select", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"]
)
LINK_SCHEMES = frozenset({"http", "https"})
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")
_NOFOLLOW = re.compile(r"(?<!\S)nofollow(?!\S)", re.IGNORECASE)
_ROBOTS_NOFOLLOW = re.compile("nofollow", re.IGNORECASE)
_CANONICAL = re.compile(r"(?<!\S)canonical(?!\S)", re.IGNORECASE)


def extract(page: FetchedPage, *, max_url_chars: int = MAX_URL_CHARS) -> PageData:
    """Parse a fetched page and extract its metadata, headings, links and visible text, within the caps."""
    collector = _PageCollector(max_url_chars)
    _parse(strip_nul(page.text), collector)
    urls = _UrlResolver(page.final_url, collector.base_href, max_url_chars)
    meta = collector.meta
    texts = _Texts()
    return PageData(
        final_url=page.final_url,
        status=page.status,
        content_type=page.content_type,
        title=texts.kept(collector.title),
        description=texts.clean(meta.get("description")),
        canonical=urls.absolute(collector.canonical_href),
        lang=_lang(collector.html_lang, meta.get("content-language"), page.content_language),
        open_graph=OpenGraph(
            title=texts.clean(meta.get("og:title")),
            description=texts.clean(meta.get("og:description")),
            site_name=texts.clean(meta.get("og:site_name")),
            image=urls.absolute(meta.get("og:image")),
        ),
        published_time=texts.clean(meta.get("article:published_time")),
        headings=Headings(**{level: texts.all_kept(collector.headings[level]) for level in HEADING_TAGS}),
        links=urls.links(collector.hrefs, _robots_nofollow(meta.get("robots"))),
        word_count=collector.text.words,
        excerpt=collector.text.excerpt(),
        text_sha256=collector.text.sha256.hexdigest(),
        # Last: `urls` and `texts` count what they leave out while the fields above are built.
        truncated=Truncation(links=collector.dropped_links, long_urls=collector.long_hrefs + urls.long_urls,
                             headings=collector.dropped_headings, texts=texts.cut).or_none(),
    )


def _parse(text: str, collector: "_PageCollector") -> None:
    if not text:
        return  # lxml refuses to close a parser that was fed nothing
    parser = etree.HTMLParser(target=collector, no_network=True)  # type: ignore[call-overload]  # types-lxml's ParserTarget wants every callback; lxml calls only those a target has
    for start in range(0, len(text), _FEED_CHARS):
        parser.feed(text[start:start + _FEED_CHARS])
    parser.close()


class _Capped:
    """Whitespace-collapsed text fed in pieces, keeping at most `limit` characters; `cut` once it lost some."""

    def __init__(self, limit: int = MAX_TEXT_CHARS) -> None:
        self.limit = limit
        self.length = 0
        self.cut = False
        self.words = 0
        self._parts: list[str] = []
        self._in_word = False

    def add(self, text: str) -> None:
        """Append raw text; words split across pieces stay one word, as in "<b>W</b>ord"."""
        for start in range(0, len(text), _SLICE_CHARS):
            if self.cut:
                return  # nothing more is kept; stop reading what would be dropped
            self._add_slice(text[start:start + _SLICE_CHARS])

    def value(self) -> tuple[str | None, bool]:
        """The kept text (None if empty) and whether some was cut."""
        return "".join(self._parts).rstrip() or None, self.cut

    def _add_slice(self, text: str) -> None:
        words = text.split()
        if not words:
            self._in_word = self._in_word and not text
            return
        joins = self._in_word and not text[0].isspace()
        piece = ("" if joins or not self.words else " ") + " ".join(words)
        self.words += len(words) - joins
        self._in_word = not text[-1].isspace()
        self._keep(piece)

    def _keep(self, piece: str) -> None:
        room = self.limit - self.length
        if len(piece) > room:
            piece, self.cut = piece[:room], True
        self._parts.append(piece)
        self.length += len(piece)


class _DocumentText(_Capped):
    """The page's whole visible text, kept only as a digest, a word count and the excerpt."""

    def __init__(self) -> None:
        super().__init__(limit=EXCERPT_CHARS + 1)  # one past the excerpt, to know where a word ends
        self.sha256 = hashlib.sha256()

    def add(self, text: str) -> None:
        """Feed the digest and word count with every piece; only the excerpt's prefix is kept."""
        for start in range(0, len(text), _SLICE_CHARS):
            self._add_slice(text[start:start + _SLICE_CHARS])

    def excerpt(self) -> str:
        """The first EXCERPT_CHARS characters, cut at a word boundary unless the first word is longer."""
        text = "".join(self._parts)
        if len(text) <= EXCERPT_CHARS:
            return text
        head = text[:EXCERPT_CHARS]
        if text[EXCERPT_CHARS] != " " and " " in head:
            head = head.rsplit(" ", 1)[0]
        return head

    def _keep(self, piece: str) -> None:
        self.sha256.update(piece.encode("utf-8"))
        if self.length < self.limit:
            super()._keep(piece)


class _PageCollector:
    """An lxml parser target that keeps, as the page streams by, what PageData needs: never a tree.

    Visible text follows the browser's reading: nothing inside HIDDEN_TAGS, a space around block
    elements and none around inline ones. A heading's text is its own visible text, so text sinks
    are kept with the hidden-element depth they read at.
    """

    def __init__(self, max_url_chars: int) -> None:
        self.max_url_chars = max_url_chars
        self.text = _DocumentText()
        self.title: tuple[str | None, bool] | None = None
        self.html_lang: str | None = None
        self.base_href: str | None = None
        self.canonical_href: str | None = None
        self.meta: dict[str, str] = {}  # raw content of the first non-empty meta tag per name used
        self.hrefs: dict[str, bool] = {}  # raw href -> nofollow on every occurrence so far
        self.headings: dict[str, list[tuple[str | None, bool]]] = {level: [] for level in HEADING_TAGS}
        self.dropped_links = self.dropped_headings = self.long_hrefs = 0
        self._hidden_depth = 0
        self._sinks: list[tuple[_Capped, int]] = [(self.text, 0)]
        self._open_headings: list[tuple[_Capped, int]] = []
        self._open_title: _Capped | None = None
        self._seen_html = self._seen_canonical = False

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        """An element opens."""
        if tag in HIDDEN_TAGS:
            self._hidden_depth += 1
        elif tag in BLOCK_TAGS:
            self._space()
        if tag in HEADING_TAGS:
            self._open_heading()
        elif tag == "a":
            self._link(attrib)
        elif tag == "title" and self.title is None and self._open_title is None:
            self._open_title = _Capped()
        else:
            self._head_element(tag, attrib)

    def end(self, tag: str) -> None:
        """An element closes (libxml2 closes every element it opened, implied ones included)."""
        if tag in HIDDEN_TAGS:
            self._hidden_depth -= 1
        elif tag in BLOCK_TAGS:
            self._space()
        if tag in HEADING_TAGS:
            self._close_heading(tag)
        elif tag == "title" and self._open_title is not None:
            title = self._open_title.value()
            self._open_title = None
            if title[0] is not None:
                self.title = title

    def data(self, text: str) -> None:
        """Text: visible to each sink reading at the current hidden depth; all of it for the title."""
        if self._open_title is not None:
            self._open_title.add(text)
        for sink, depth in self._sinks:
            if depth == self._hidden_depth:
                sink.add(text)

    def close(self) -> None:
        """The end of the page: everything is already kept."""

    def _space(self) -> None:
        for sink, depth in self._sinks:
            if depth == self._hidden_depth:
                sink.add(" ")

    def _open_heading(self) -> None:
        sink = (_Capped(), self._hidden_depth)
        self._open_headings.append(sink)
        self._sinks.append(sink)

    def _close_heading(self, level: str) -> None:
        sink = self._open_headings.pop()
        self._sinks.remove(sink)
        text = sink[0].value()
        if text[0] is None:
            return
        if len(self.headings[level]) < MAX_HEADINGS:
            self.headings[level].append(text)
        else:
            self.dropped_headings += 1

    def _link(self, attrib: dict[str, str]) -> None:
        href = (attrib.get("href") or "").strip()
        if not href or href.startswith("#") or _foreign_scheme(href):
            return  # same-page anchors and mailto:, javascript: etc. are not links to another page
        if len(href) > self.max_url_chars:
            self.long_hrefs += 1  # left out before it takes one of the MAX_LINKS places
            return
        nofollow = _NOFOLLOW.search(attrib.get("rel") or "") is not None
        if href in self.hrefs:
            self.hrefs[href] = self.hrefs[href] and nofollow  # followable if any occurrence is
        elif len(self.hrefs) < MAX_LINKS:
            self.hrefs[href] = nofollow
        else:
            self.dropped_links += 1

    def _head_element(self, tag: str, attrib: dict[str, str]) -> None:
        if tag == "meta":
            self._meta(attrib)
        elif tag == "html" and not self._seen_html:
            self._seen_html = True
            self.html_lang = attrib.get("lang") or attrib.get("xml:lang")
        elif tag == "base" and self.base_href is None:
            self.base_href = attrib.get("href")
        elif tag == "link" and not self._seen_canonical and _CANONICAL.search(attrib.get("rel") or ""):
            self._seen_canonical = True
            self.canonical_href = attrib.get("href")

    def _meta(self, attrib: dict[str, str]) -> None:
        """First non-empty content per lower-cased name, property or http-equiv, for the names used."""
        content = attrib.get("content") or ""
        if not content or content.isspace():
            return
        for key_attr in ("name", "property", "http-equiv"):
            key = attrib.get(key_attr) or ""
            if len(key) <= _MAX_META_KEY_CHARS:
                name = " ".join(key.split()).lower()
                if name in _WANTED_META:
                    self.meta.setdefault(name, content)


class _UrlResolver:
    """Absolute http(s) URLs against the page's base, leaving out (and counting) those over the limit."""

    def __init__(self, final_url: str, base_href: str | None, max_url_chars: int) -> None:
        self.max_url_chars = max_url_chars
        self.long_urls = 0
        self.base = final_url
        if base_href is not None:
            # An overlong base is ignored: resolving thousands of links against it is what blew memory up.
            self.base = self.absolute(base_href) or final_url

    def absolute(self, href: str | None) -> str | None:
        """Absolute http(s) URL without fragment, or None for other schemes, broken or overlong URLs."""
        if href is None or not href.strip():
            return None
        url = None if len(href) > self.max_url_chars else _absolute(self.base, href.strip())
        if len(href) > self.max_url_chars or (url is not None and len(url) > self.max_url_chars):
            self.long_urls += 1
            return None
        return url

    def links(self, hrefs: dict[str, bool], nofollow_all: bool) -> list[Link]:
        """The page's links, resolved and de-duplicated in document order."""
        nofollow_by_url: dict[str, bool] = {}
        for href, nofollow in hrefs.items():
            url = self.absolute(href)
            if url is not None:
                nofollow_by_url[url] = nofollow_by_url.get(url, True) and (nofollow or nofollow_all)
        return [Link(url=url, nofollow=nofollow) for url, nofollow in nofollow_by_url.items()]


class _Texts:
    """Cleans and unwraps the result's texts, counting those cut to MAX_TEXT_CHARS."""

    def __init__(self) -> None:
        self.cut = 0

    def clean(self, raw: str | None) -> str | None:
        """Whitespace-collapsed and capped text, or None when nothing is left."""
        return None if raw is None else self.kept(_clean(raw))

    def kept(self, text: tuple[str | None, bool] | None) -> str | None:
        """The text of a (text, was cut) pair, counting it when it was cut."""
        if text is None:
            return None
        self.cut += text[1]
        return text[0]

    def all_kept(self, texts: list[tuple[str | None, bool]]) -> list[str]:
        """Every non-empty text of a list, counting cut ones."""
        return [text for text in map(self.kept, texts) if text is not None]


def _clean(text: str | None) -> tuple[str | None, bool]:
    """Whitespace-collapsed text cut to MAX_TEXT_CHARS (None when nothing is left), and whether it was cut."""
    sink = _Capped()
    sink.add(strip_nul(text or ""))
    return sink.value()


def _foreign_scheme(href: str) -> bool:
    """True for a scheme other than http(s): such a link is skipped before it counts against MAX_LINKS."""
    match = _SCHEME.match(href)
    return match is not None and match[1].lower() not in LINK_SCHEMES


def _absolute(base: str, href: str) -> str | None:
    try:
        url = urldefrag(urljoin(base, href)).url
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in LINK_SCHEMES and parts.hostname else None


def _robots_nofollow(robots: str | None) -> bool:
    """True if the page asks robots not to follow any of its links."""
    return _ROBOTS_NOFOLLOW.search(robots or "") is not None


def _lang(declared: str | None, meta: str | None, header: str | None) -> str | None:
    for candidate in (declared, meta, header):
        # Content-Language may list several languages; the first is the primary one.
        first = _clean((candidate or "").partition(",")[0])[0]
        if first:
            return first
    return None
