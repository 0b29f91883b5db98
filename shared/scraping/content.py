"""A page's content as Markdown and as plain text: its main content by default, or its whole body.

trafilatura finds the main content (navigation, ads, footers, share buttons and comments dropped) and writes it
as Markdown; the ScrapingHub article-extraction benchmark puts it ahead of readability-lxml (bench/README.md, "Page
content: extractor choice"). trafilatura has no switch that keeps a page's boilerplate (favor_recall still drops
`<nav>`, `<aside>`, `<footer>` and link-dense blocks), so the whole-body mode runs its element converters and its
Markdown writer over every element of `<body>` instead.

Unlike shared.scraping.extract this builds a tree, and trafilatura copies it several times: on pages at the
fetcher's 5 MiB cap it took up to 22 s of CPU and 850 MiB. So the page is read only up to MAX_CONTENT_TAGS "<" and
MAX_CONTENT_MARKUP_CHARS characters outside scripts and styles (the benchmark's real pages have at most 3,229 and
252 KB), which bounds an item to about 0.4 s of CPU and 14 MiB; the output is capped, and `truncated` says when
anything was left out. Binary data, a page without a body, or one that breaks the extractor gives empty content,
never an exception.
"""

import logging
import re
from urllib.parse import urljoin

import lxml.html
from lxml import etree
from trafilatura import bare_extraction
from trafilatura.htmlprocessing import convert_tags
from trafilatura.main_extractor import handle_textelem
from trafilatura.settings import TAG_CATALOG, Document, Extractor
from trafilatura.xml import xmltotxt

from shared.domain.pages import MAX_CONTENT_TEXT_CHARS, MAX_MARKDOWN_CHARS, MAX_URL_CHARS, PageContent

log = logging.getLogger(f"trawl.{__name__}")
# trafilatura warns "discarding data: None" for every page without main content: noise in the host's log, which
# this module reports itself (empty content, `truncated`) where it matters.
logging.getLogger("trafilatura").setLevel(logging.ERROR)

# bench/README.md, "Page content: extractor choice": trafilatura's time and memory grow with the elements it walks;
# 20,000 "<" let an item reach 28 MiB, 10,000 keep it under 15 MiB, as the rest of an item (24 at once).
MAX_CONTENT_TAGS = 10_000
MAX_CONTENT_MARKUP_CHARS = 512 * 1024
_COUNT_CHARS = 4096
# Script and style contents are raw text to the parser: their "<" open no element, and they are dropped unread.
_RAW_TEXT_START = re.compile(r"<(script|style)\b", re.IGNORECASE)
_RAW_TEXT_END = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in ("script", "style")}
# What the whole-body mode leaves out: never text a reader sees.
_INVISIBLE_TAGS = ("head", "noscript", "template", "svg", "math", "iframe", "object", "embed", "canvas", "select",
                   "button", "input", "textarea")
# Characters lxml refuses in a text or attribute value; a page may carry any of them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPACE_RUN = re.compile(r"[ \t\n\r\f]{2,}|[\t\n\r\f]")
_HAS_SPACE_RUN = re.compile(r"[\t\n\r\f]|  ").search
_BINARY = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd]")
_SNIFF_CHARS = 8192
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")
# Link targets a reader of the Markdown may follow; javascript:, data: and the like become plain text.
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
# trafilatura's internal XML: these start a line of their own in the plain text.
_LINE_TAGS = frozenset({"head", "p", "item", "quote", "list", "table", "row", "lb"})
_PLAIN = "trawl-plain"  # a link made plain text: its tag is stripped, its text kept
_FENCE = re.compile(r"^(`{3,}|~{3,})")
_FENCE_ROOM = 32  # kept free at the end of cut Markdown to close a code block left open


def extract_content(html: str, url: str | None, *, main_content_only: bool = True) -> PageContent:
    """The page's main content (or, with ``main_content_only=False``, its whole body) as capped Markdown and plain
    text; empty content when it has none, or when the page breaks the extractor."""
    try:
        root, cut = _parse(html)
        if root is None:
            return PageContent(markdown="", text="", truncated=cut)
        base = _base_url(root, url)
        body = _main_content(root) if main_content_only else _whole_body(root)
        markdown, text, cut_output = _render(body, base) if body is not None else ("", "", False)
    except Exception:  # a heuristic library's bug on one page must not fail the item: logged, and no content
        log.warning("content extraction failed on a page; returning no content", exc_info=True)
        return PageContent(markdown="", text="")
    return PageContent(markdown=markdown, text=text, truncated=cut or cut_output)


def _parse(html: str) -> tuple[lxml.html.HtmlElement | None, bool]:
    """The page's tree within the markup budgets, without its scripts and styles, and whether some of the page
    was left out; no tree for binary data."""
    if _looks_binary(html):
        return None, False
    end = _budget_end(html)
    text = _NOT_XML.sub("", html[:end])
    if not text or text.isspace():
        return None, end < len(html)
    parser = etree.HTMLParser(remove_comments=True, remove_pis=True, no_network=True, collect_ids=False,
                              default_doctype=False)
    parser.set_element_class_lookup(lxml.html.HtmlElementClassLookup())
    parser.feed(text)
    try:
        root = parser.close()
    except etree.XMLSyntaxError:  # libxml2 found no element at all: text that is not HTML
        return None, end < len(html)
    if not isinstance(root, lxml.html.HtmlElement):
        return None, end < len(html)
    _drop_scripts(root)
    return root, end < len(html)


def _looks_binary(html: str) -> bool:
    """True when the page's start is more than a tenth control or replacement characters: binary data served as
    HTML decodes to such characters, where text in any language has almost none."""
    sample = html[:_SNIFF_CHARS]
    return len(_BINARY.findall(sample)) > len(sample) // 10


def _budget_end(html: str) -> int:
    """Where the page stops being read: before MAX_CONTENT_TAGS "<" (an upper bound on the elements opened) or
    MAX_CONTENT_MARKUP_CHARS characters outside scripts and styles, which the extractor drops first. One pass,
    no tree."""
    tags = chars = position = 0
    while position < len(html):
        raw = _RAW_TEXT_START.search(html, position)
        stretch_end = raw.start() if raw else len(html)
        for start in range(position, stretch_end, _COUNT_CHARS):
            stop = min(start + _COUNT_CHARS, stretch_end)
            tags += html.count("<", start, stop)
            chars += stop - start
            if tags > MAX_CONTENT_TAGS or chars > MAX_CONTENT_MARKUP_CHARS:
                return start
        if raw is None:
            break
        closing = _RAW_TEXT_END[raw[1].lower()].search(html, raw.end())
        tags += 1
        position = closing.end() if closing else len(html)
    return len(html)


def _drop_scripts(root: lxml.html.HtmlElement) -> None:
    """Scripts and styles go before trafilatura copies the tree (it would drop them after several copies), except
    JSON-LD, which it reads."""
    for element in root.xpath("//style|//script[not(@type='application/ld+json')]"):
        element.drop_tree()


def _resolve_links(body: etree._Element, base: str | None) -> None:
    """The content's links made absolute as a browser would (trafilatura resolves against the site's root, not
    the page, so it is given none), and those a reader should not follow (javascript:, data:, none, overlong)
    made plain text. Done on the extracted content: a page's other links never reach it."""
    for link in body.iter("ref"):
        target = link.get("target")
        absolute = _absolute(base, target) if target is not None and _followable(target) else None
        if absolute is None:
            link.tag = _PLAIN
        else:
            link.set("target", absolute)
    etree.strip_tags(body, _PLAIN)


def _followable(href: str | None) -> bool:
    if href is None or len(href) > MAX_URL_CHARS:
        return False
    scheme = _SCHEME.match(href)
    return scheme is None or scheme[1].lower() in _LINK_SCHEMES


def _absolute(base: str | None, href: str) -> str | None:
    if base is None:
        return href.strip()
    try:
        url = urljoin(base, href.strip())
    except ValueError:  # a malformed URL, such as an invalid IPv6 host
        return None
    return url if len(url) <= MAX_URL_CHARS else None


def _main_content(root: lxml.html.HtmlElement) -> etree._Element | None:
    """trafilatura's main content, in its internal XML, or None when it finds none."""
    document = bare_extraction(root, options=_options())
    return document.body if isinstance(document, Document) else None


def _whole_body(root: lxml.html.HtmlElement) -> etree._Element | None:
    """Every element of `<body>` through trafilatura's converters, as its main-content pass does for the one
    container it picks, without the pruning of boilerplate."""
    body = root.find("body")
    if body is None:
        return None
    options = _options()
    etree.strip_elements(body, *_INVISIBLE_TAGS, with_tail=False)
    convert_tags(body, options)
    wanted = set(TAG_CATALOG) | {"table", "td", "th", "tr", "ref", "div"}
    converted = etree.Element("body")
    for element in list(body.iter("*"))[1:]:  # listed first: converting moves elements
        if element.getroottree().getroot() is converted:
            continue  # moved into the result whole with an ancestor already
        new = handle_textelem(element, wanted, options)
        if new is not None:
            converted.append(new)
            if element.getroottree().getroot() is not converted:
                element.tag = "done"  # a copy was kept: its source must not be converted again
    etree.strip_elements(converted, "done")
    etree.strip_tags(converted, "div")
    return converted


def _options() -> Extractor:
    """Markdown with links and tables; no comments, images or metadata (shared.scraping.extract has that). Fast:
    the readability and jusText fallbacks cost half as much again and scored no better on the benchmark. No URL:
    the links are resolved afterwards, and trafilatura would log it with every page it finds empty."""
    return Extractor(output_format="markdown", fast=True, links=True, tables=True, comments=False, images=False)


def _base_url(root: lxml.html.HtmlElement, url: str | None) -> str | None:
    """The URL relative links resolve against: `<base href>` when there is one of reasonable length, as in
    shared.scraping.extract; None, and links left relative, when the page's URL is unknown."""
    base = root.find("head/base[@href]")
    href = base.get("href", "") if base is not None else ""
    return (_absolute(url, href) if url is not None and _followable(href) else None) or url


def _render(body: etree._Element, base: str | None) -> tuple[str, str, bool]:
    """Capped Markdown and plain text of trafilatura's XML, and whether either was cut."""
    _resolve_links(body, base)
    _collapse_spaces(body)
    markdown, markdown_cut = _cap_markdown(xmltotxt(body, include_formatting=True).strip())
    text, text_cut = _cap(_plain_text(body), MAX_CONTENT_TEXT_CHARS)  # last: it marks the tree up
    return markdown, text, markdown_cut or text_cut


def _collapse_spaces(body: etree._Element) -> None:
    """Collapse white space as a browser shows it, outside code blocks: trafilatura keeps the source's line
    breaks and indentation in a paragraph that holds a link, and the Markdown would show them."""
    verbatim_text: set[etree._Element] = set()
    verbatim_tail: set[etree._Element] = set()
    for code in body.iter("code"):
        if code not in verbatim_text:
            inside = list(code.iter())
            verbatim_text.update(inside)
            verbatim_tail.update(inside[1:])
    for element in body.iter():
        if element.text and element not in verbatim_text and _HAS_SPACE_RUN(element.text):
            element.text = _SPACE_RUN.sub(" ", element.text)
        if element.tail and element not in verbatim_tail and _HAS_SPACE_RUN(element.tail):
            element.tail = _SPACE_RUN.sub(" ", element.tail)


def _plain_text(body: etree._Element) -> str:
    """The text of trafilatura's XML with no markup: a line per heading, paragraph, list item and table row (cells
    separated by tabs), code blocks as they are. Takes white space already collapsed outside code, and marks
    ``body`` up with the line breaks, so that lxml joins the text at C speed."""
    in_cells = {inner for cell in body.iter("cell") for inner in cell.iterdescendants()}
    for element in body.iter(*_LINE_TAGS, "code", "cell"):
        if element in in_cells:
            continue  # a paragraph or list in a table cell stays on its row's line
        if element.tag == "cell":
            if element.getprevious() is not None:
                element.text = "\t" + (element.text or "").lstrip()
            continue
        if element.tag == "code":
            if "\n" in (element.text or ""):
                element.text, element.tail = "\n" + (element.text or ""), "\n" + (element.tail or "").lstrip(" ")
            continue  # inline code stays in its line
        element.text = "\n" + (element.text or "").lstrip(" ")
        element.tail = "\n" + (element.tail or "").lstrip(" ")
    text = etree.tostring(body, method="text", encoding="unicode")
    return "\n".join(line.rstrip() for line in text.split("\n") if line.strip())


def _cap(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` characters at the last paragraph, line or word boundary in its second
    half (else anywhere), and whether it was cut."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    for boundary in ("\n\n", "\n", " "):
        at = head.rfind(boundary)
        if at >= limit // 2:
            return head[:at].rstrip(), True
    return head, True


def _cap_markdown(markdown: str) -> tuple[str, bool]:
    """Markdown capped as ``_cap`` does, with a code block left open by the cut closed again."""
    if len(markdown) <= MAX_MARKDOWN_CHARS:
        return markdown, False
    head, _ = _cap(markdown, MAX_MARKDOWN_CHARS - _FENCE_ROOM)
    fence = _open_fence(head)
    return (f"{head}\n{fence}" if fence and len(fence) < _FENCE_ROOM else head), True


def _open_fence(markdown: str) -> str | None:
    """The fence of the code block still open at the end of ``markdown``, if any."""
    fence: str | None = None
    for line in markdown.splitlines():
        match = _FENCE.match(line)
        if match is None:
            continue
        if fence is None:
            fence = match[1]
        elif line.strip() == fence[0] * len(line.strip()) and len(line.strip()) >= len(fence):
            fence = None
    return fence
