"""Extraction on a whole parsed tree, for the parser benchmark: BeautifulSoup and plain lxml.html.

`bs4_extract` is shared.scraping.extract as it was up to fb9f70c (BeautifulSoup with a choice of tree builder);
`lxml_extract` computes the same fields from lxml's own tree with XPath. Both give the same PageData on the
fixture pages and the benchmark site's pages (parser_bench checks it before it measures), so their timings
compare the same work. The app's extractor now streams the page through an lxml parser target instead.
"""

import hashlib
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from bs4 import BeautifulSoup, CData, Tag
from bs4.element import NavigableString, PageElement

from shared.domain.pages import Headings, Link, OpenGraph, PageData
from shared.scraping.fetch import FetchedPage
from shared.scraping.html_charset import strip_nul

EXCERPT_CHARS = 300
HIDDEN_TAGS = frozenset({"title", "script", "style", "noscript", "template"})
INDEXED_TAGS = frozenset({"html", "title", "base", "meta", "link", "a", "h1", "h2", "h3"})
# Exact types, as in bs4's get_text: subclasses are comments, doctypes, script text, etc.
VISIBLE_STRING_TYPES = (NavigableString, CData)
BLOCK_TAGS = frozenset(
    ["address", "article", "aside", "blockquote", "br", "caption", "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "li", "main", "nav", "ol", "option", "p", "pre", "section", "select", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"]
)
LINK_SCHEMES = frozenset({"http", "https"})


def bs4_extract(page: FetchedPage, parser: str) -> PageData:
    """Parse a fetched page with BeautifulSoup and `parser` and extract what shared.scraping.extract extracts."""
    soup = BeautifulSoup(strip_nul(page.text), parser)
    tags = _index_tags(soup)
    base = _base_url(tags, page.final_url)
    meta = _meta_values(tags)
    text = _visible_text(soup)
    return PageData(
        final_url=page.final_url,
        status=page.status,
        content_type=page.content_type,
        title=_title(tags),
        description=meta.get("description"),
        canonical=_canonical(tags, base),
        lang=_lang(tags, meta, page.content_language),
        open_graph=_open_graph(meta, base),
        published_time=meta.get("article:published_time"),
        headings=Headings(h1=_texts(tags, "h1"), h2=_texts(tags, "h2"), h3=_texts(tags, "h3")),
        links=_links(tags, base, _robots_nofollow(meta)),
        word_count=len(text.split()),
        excerpt=_excerpt(text),
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        truncated=None,
    )


def _index_tags(soup: BeautifulSoup) -> dict[str, list[Tag]]:
    """The tags extraction looks at, by name, in document order.

    One pass over the tree: each bs4 find_all is a full traversal, and several of them
    cost more than the parse itself on large pages.
    """
    tags: dict[str, list[Tag]] = {name: [] for name in INDEXED_TAGS}
    for element in soup.descendants:
        if isinstance(element, Tag) and element.name in tags:
            tags[element.name].append(element)
    return tags


def _attr(tag: Tag, name: str) -> str | None:
    value = tag.get(name)
    if isinstance(value, list):
        return " ".join(value)
    return value


def _clean(text: str | None) -> str | None:
    """Whitespace-collapsed text, or None when nothing is left."""
    if text is None:
        return None
    return " ".join(strip_nul(text).split()) or None


def _absolute(base: str, href: str | None) -> str | None:
    """Absolute http(s) URL without fragment, or None for other schemes and broken URLs."""
    if not href or not href.strip():
        return None
    try:
        url = urldefrag(urljoin(base, href.strip())).url
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in LINK_SCHEMES and parts.hostname else None


def _base_url(tags: dict[str, list[Tag]], final_url: str) -> str:
    for base in tags["base"]:
        href = _attr(base, "href")
        if href is not None:
            return _absolute(final_url, href) or final_url
    return final_url


def _meta_values(tags: dict[str, list[Tag]]) -> dict[str, str]:
    """First non-empty content per lower-cased meta name, property or http-equiv."""
    values: dict[str, str] = {}
    for tag in tags["meta"]:
        content = _clean(_attr(tag, "content"))
        if content is None:
            continue
        for key_attr in ("name", "property", "http-equiv"):
            key = _clean(_attr(tag, key_attr))
            if key:
                values.setdefault(key.lower(), content)
    return values


def _robots_nofollow(meta: dict[str, str]) -> bool:
    """True if the page asks robots not to follow any of its links."""
    return "nofollow" in (meta.get("robots") or "").lower()


def _texts(tags: dict[str, list[Tag]], name: str) -> list[str]:
    texts = (_visible_text(tag) for tag in tags[name])
    return [text for text in texts if text]


def _title(tags: dict[str, list[Tag]]) -> str | None:
    # Not _visible_text: that skips <title>, and its content is plain text anyway.
    texts = (_clean(tag.get_text()) for tag in tags["title"])
    return next((text for text in texts if text), None)


def _rel(tag: Tag) -> list[str]:
    return (_attr(tag, "rel") or "").lower().split()


def _canonical(tags: dict[str, list[Tag]], base: str) -> str | None:
    for tag in tags["link"]:
        if "canonical" in _rel(tag):
            return _absolute(base, _attr(tag, "href"))
    return None


def _lang(tags: dict[str, list[Tag]], meta: dict[str, str], header: str | None) -> str | None:
    html = tags["html"][0] if tags["html"] else None
    declared = (_attr(html, "lang") or _attr(html, "xml:lang")) if html else None
    for candidate in (declared, meta.get("content-language"), header):
        # Content-Language may list several languages; the first is the primary one.
        first = _clean((candidate or "").split(",")[0])
        if first:
            return first
    return None


def _open_graph(meta: dict[str, str], base: str) -> OpenGraph:
    return OpenGraph(
        title=meta.get("og:title"),
        description=meta.get("og:description"),
        site_name=meta.get("og:site_name"),
        image=_absolute(base, meta.get("og:image")),
    )


def _links(tags: dict[str, list[Tag]], base: str, nofollow_all: bool) -> list[Link]:
    nofollow_by_url: dict[str, bool] = {}
    for tag in tags["a"]:
        href = _attr(tag, "href")
        if href is None or href.strip().startswith("#"):
            continue  # same-page anchors are not links to another resource
        url = _absolute(base, href)
        if url is None:
            continue
        nofollow = nofollow_all or "nofollow" in _rel(tag)
        # A URL stays followable if any occurrence of it is.
        nofollow_by_url[url] = nofollow_by_url.get(url, True) and nofollow
    return [Link(url=url, nofollow=nofollow) for url, nofollow in nofollow_by_url.items()]


def _visible_text(root: Tag) -> str:
    """Whitespace-collapsed text a reader would see: no hidden elements, comments or doctype.

    Block elements are separated by a space and inline ones are not, so "<p>a</p><p>b</p>"
    reads "a b" while "<b>W</b>ord" stays one word. An explicit stack rather than
    recursion, because broken pages can nest thousands of elements deep.
    """
    strings: list[str] = []
    stack: list[PageElement | None] = [root]  # None marks the end of a block element
    while stack:
        node = stack.pop()
        if node is None:
            strings.append(" ")
        elif isinstance(node, Tag):
            if node.name in HIDDEN_TAGS:
                continue
            if node.name in BLOCK_TAGS:
                strings.append(" ")
                stack.append(None)
            stack.extend(reversed(node.contents))
        elif type(node) in VISIBLE_STRING_TYPES:
            strings.append(str(node))
    return " ".join("".join(strings).split())


def _excerpt(text: str) -> str:
    if len(text) <= EXCERPT_CHARS:
        return text
    head = text[:EXCERPT_CHARS]
    # Cut at a word boundary unless the first word alone is longer than the excerpt.
    if text[EXCERPT_CHARS] != " " and " " in head:
        head = head.rsplit(" ", 1)[0]
    return head


# Plain lxml: the same fields from lxml's own tree and XPath.
def lxml_extract(page: FetchedPage) -> PageData:
    """bs4_extract's result, computed from lxml.html's own tree with XPath."""
    root = lxml.html.document_fromstring(strip_nul(page.text))
    base = _lxml_base(root, page.final_url)
    meta = _lxml_meta(root)
    text = _lxml_visible_text(root)
    return PageData(
        final_url=page.final_url,
        status=page.status,
        content_type=page.content_type,
        title=next(filter(None, (_clean(t.text_content()) for t in root.xpath("//title"))), None),
        description=meta.get("description"),
        canonical=next((_absolute(base, link.get("href")) for link in root.xpath("//link")
                        if "canonical" in (link.get("rel") or "").lower().split()), None),
        lang=_lxml_lang(root, meta, page.content_language),
        open_graph=OpenGraph(title=meta.get("og:title"), description=meta.get("og:description"),
                             site_name=meta.get("og:site_name"), image=_absolute(base, meta.get("og:image"))),
        published_time=meta.get("article:published_time"),
        headings=Headings(**{level: [t for t in map(_lxml_visible_text, root.xpath(f"//{level}")) if t]
                             for level in ("h1", "h2", "h3")}),
        links=_lxml_links(root, base, "nofollow" in (meta.get("robots") or "").lower()),
        word_count=len(text.split()),
        excerpt=_excerpt(text),
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        truncated=None,
    )


def _lxml_base(root: lxml.html.HtmlElement, final_url: str) -> str:
    hrefs = root.xpath("//base/@href")
    return (_absolute(final_url, hrefs[0]) or final_url) if hrefs else final_url


def _lxml_meta(root: lxml.html.HtmlElement) -> dict[str, str]:
    values: dict[str, str] = {}
    for tag in root.xpath("//meta[@content]"):
        content = _clean(tag.get("content"))
        for key in filter(None, (_clean(tag.get(attr)) for attr in ("name", "property", "http-equiv"))):
            if content is not None:
                values.setdefault(key.lower(), content)
    return values


def _lxml_lang(root: lxml.html.HtmlElement, meta: dict[str, str], header: str | None) -> str | None:
    declared = root.get("lang") or root.get("xml:lang")
    for candidate in (declared, meta.get("content-language"), header):
        first = _clean((candidate or "").split(",")[0])
        if first:
            return first
    return None


def _lxml_links(root: lxml.html.HtmlElement, base: str, nofollow_all: bool) -> list[Link]:
    nofollow_by_url: dict[str, bool] = {}
    for tag in root.xpath("//a[@href]"):
        href = tag.get("href")
        url = None if href.strip().startswith("#") else _absolute(base, href)
        if url is not None:
            nofollow = nofollow_all or "nofollow" in (tag.get("rel") or "").lower().split()
            nofollow_by_url[url] = nofollow_by_url.get(url, True) and nofollow
    return [Link(url=url, nofollow=nofollow) for url, nofollow in nofollow_by_url.items()]


def _lxml_visible_text(root: lxml.html.HtmlElement) -> str:
    """bs4_extract's visible text: hidden elements and comments skipped, blocks separated by a space."""
    strings: list[str] = []
    stack: list[lxml.html.HtmlElement | str | None] = [root]  # str: a tail; None: the end of a block
    while stack:
        node = stack.pop()
        if node is None:
            strings.append(" ")
        elif isinstance(node, str):
            strings.append(node)
        elif isinstance(node.tag, str) and node.tag not in HIDDEN_TAGS:  # comments have a function as tag
            if node.tag in BLOCK_TAGS:
                strings.append(" ")
                stack.append(None)
            strings.append(node.text or "")
            for child in reversed(node):
                stack += [child.tail or "", child]
    return " ".join("".join(strings).split())
