"""An owner's pages as the read side sees them: each page with its versions, search hits over the latest ones,
and the pure text work around them (snippet markers, Markdown read as text for a snippet, unified diffs)."""
from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from shared.domain.content import ContentFormat, StoredBody
from shared.domain.models import Owner

# ts_headline wraps each match in these: private-use characters, removed from the text before, so that a page
# cannot forge a match and the snippet needs no escaping.
MATCH_START, MATCH_END = "\ue000", "\ue001"
_MARKERS_AND_NUL = re.compile("[\ue000\ue001\x00]")


@dataclass(frozen=True)
class PageVersion:
    """A distinct main content of a page: when it was first and last seen, the item that first saw it, the
    bodies that item kept, and the text-search configuration of its language."""

    id: int
    page_id: UUID
    main_text_digest: str
    first_seen_at: datetime
    last_seen_at: datetime
    job_id: UUID
    seq: int
    search_config: str
    bodies: dict[ContentFormat, StoredBody] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """An owner's page (a normalised URL): when it was first and last scraped, when it last changed (its latest
    version was first seen), how many versions it has and some of them, newest first."""

    id: UUID
    owner: Owner
    url: str
    host: str
    first_seen_at: datetime
    last_seen_at: datetime
    changed_at: datetime | None
    version_count: int
    latest_version_id: int | None
    versions: list[PageVersion] = field(default_factory=list)


@dataclass(frozen=True)
class PageKey:
    """A page listing's keyset position: pages are listed by host, then URL, then id."""

    host: str
    url: str
    id: UUID


@dataclass(frozen=True)
class SearchKey:
    """A search's keyset position: hits are ranked by descending rank, then descending page id."""

    rank: float
    page_id: UUID


@dataclass(frozen=True)
class SearchHit:
    """A page whose latest version matches a query, its rank, the title its item extracted, and the snippet
    (filled in once the page of hits is known)."""

    page: Page
    version: PageVersion
    rank: float
    title: str | None

    @property
    def key(self) -> SearchKey:
        return SearchKey(self.rank, self.page.id)


@dataclass(frozen=True)
class SnippetPart:
    """A run of a snippet's text, and whether it is a match of the query."""

    text: str
    match: bool


def headline_input(body: str, kind: ContentFormat) -> str:
    """The text ts_headline cuts a snippet from: the body without NUL or match markers, Markdown read as text."""
    text = _MARKERS_AND_NUL.sub("", body)
    return markdown_as_text(text) if kind is ContentFormat.MARKDOWN else text


# No bracket inside a bracket and bounded repeats: a hostile page's runs of brackets cost linear time.
_MD_IMAGE = re.compile(r"!\[([^\[\]\n]{0,200})\]\([^()\s]{0,500}\)")
_MD_LINK = re.compile(r"\[([^\[\]\n]{0,200})\]\([^()\s]{0,500}\)")
_MD_LINE_MARKUP = re.compile(r"^[ \t]{0,3}(?:#{1,6}[ \t]+|>[ \t]?|[-*+][ \t]+|\d{1,9}[.)][ \t]+)", re.MULTILINE)
_MD_EMPHASIS = re.compile(r"\*{1,3}|_{2,3}|`+|~~")
_MD_RULES = re.compile(r"\||-{3,}|={3,}")


# A snippet is cut from windows of the text around the query's first matches, not from the whole text: ts_headline
# parses all it is given, at about 0.2 ms per KiB (bench/README.md, "Search").
SNIPPET_WINDOWS = 3
SNIPPET_BEFORE_CHARS, SNIPPET_AFTER_CHARS = 300, 900
# Where no lexeme of the query shows as a word prefix (a stem that is not one: `chevaux` for `cheval`), the snippet
# is looked for in the text's start.
SNIPPET_FALLBACK_CHARS = 16 * 1024
_LEXEME = re.compile(r"(!?)'((?:[^']|'')+)'")


def query_lexemes(form: str) -> list[str]:
    """The lexemes a tsquery (its text form, `'quick' <-> 'brown' & !'cat'`) looks for, without excluded ones."""
    return [lexeme.replace("''", "'") for negated, lexeme in _LEXEME.findall(form) if not negated]


def snippet_windows(text: str, lexemes: Sequence[str]) -> str:
    """The parts of `text` around the first occurrences of `lexemes` as word prefixes (a stem's start: `run`
    finds `running`), at most SNIPPET_WINDOWS windows that do not overlap, joined by ` … `; the text's first
    SNIPPET_FALLBACK_CHARS when none occurs."""
    stems = {lexeme[:max(3, len(lexeme) - 2)] for lexeme in lexemes if lexeme}
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(stem) for stem in sorted(stems)) + ")", re.IGNORECASE)
    spans: list[tuple[int, int]] = []
    for found in pattern.finditer(text) if stems else ():
        if spans and found.start() < spans[-1][1]:
            continue  # inside the last window
        if len(spans) == SNIPPET_WINDOWS:
            break
        start = max(0, found.start() - SNIPPET_BEFORE_CHARS, spans[-1][1] if spans else 0)
        spans.append((start, found.start() + SNIPPET_AFTER_CHARS))
    if not spans:
        return text[:SNIPPET_FALLBACK_CHARS]
    return " … ".join(_whole_words(text, start, end) for start, end in spans)


def _whole_words(text: str, start: int, end: int) -> str:
    """text[start:end] without the word cut at either end."""
    piece = text[start:end]
    if start > 0 and not text[start - 1].isspace():
        piece = piece.split(None, 1)[-1] if " " in piece else piece
    if end < len(text) and not text[end].isspace():
        piece = piece.rsplit(None, 1)[0]
    return piece


def markdown_as_text(markdown: str) -> str:
    """Markdown with its markup dropped (headings, quotes, list bullets, fences, table rules, emphasis, link
    and image targets), so a snippet shows words rather than URLs and asterisks. Approximate: for snippets only."""
    text = _MD_IMAGE.sub(r"\1", markdown)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_LINE_MARKUP.sub("", text)
    return _MD_RULES.sub(" ", _MD_EMPHASIS.sub("", text))


def snippet_parts(headline: str) -> list[SnippetPart]:
    """ts_headline's output (matches between MATCH_START and MATCH_END) as runs of text, matches marked."""
    parts: list[SnippetPart] = []
    for index, piece in enumerate(headline.split(MATCH_START)):
        match, _, rest = piece.partition(MATCH_END) if index else ("", "", piece)
        parts += [SnippetPart(text, flag) for text, flag in ((match, True), (rest, False)) if text]
    return parts


def unified_diff(before: str, after: str, before_label: str, after_label: str, context: int) -> str:
    """The unified diff from `before` to `after` (empty when equal); a last line without a newline gets one,
    so a change at the end reads as the line it is."""
    lines = difflib.unified_diff(_lines(before), _lines(after), before_label, after_label, n=context)
    return "".join(lines)


def _lines(text: str) -> Sequence[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    return lines
