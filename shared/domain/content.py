"""What a job asks of each page beyond its metadata (`formats`), and the bodies a scrape produces for it.

Metadata (today's bounded fields: title, headings, links, ...) is always in an item's result: it is cheap and
small. `markdown`, `text` and `html` are bodies: stored apart from PostgreSQL (content-addressed blobs), named
in the result by hash and size. `links` keeps the result's link list; without it (and without `metadata`) the
list is left out.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID


class ContentFormat(StrEnum):
    METADATA = "metadata"
    MARKDOWN = "markdown"
    TEXT = "text"
    HTML = "html"
    LINKS = "links"


BODY_FORMATS = (ContentFormat.MARKDOWN, ContentFormat.TEXT, ContentFormat.HTML)
DEFAULT_FORMATS = (ContentFormat.METADATA, ContentFormat.MARKDOWN)

MEDIA_TYPES = {
    ContentFormat.MARKDOWN: "text/markdown; charset=utf-8",
    ContentFormat.TEXT: "text/plain; charset=utf-8",
    ContentFormat.HTML: "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class ContentRequest:
    """A job's `formats` and `main_content_only` options, as a worker applies them."""

    formats: frozenset[ContentFormat] = frozenset(DEFAULT_FORMATS)
    main_content_only: bool = True
    # Answer from the page store when the caller's page has a version seen within this many seconds.
    max_age_s: int | None = None

    @property
    def bodies(self) -> tuple[ContentFormat, ...]:
        """The body formats asked for, in a fixed order."""
        return tuple(kind for kind in BODY_FORMATS if kind in self.formats)

    @property
    def keeps_links(self) -> bool:
        return bool(self.formats & {ContentFormat.METADATA, ContentFormat.LINKS})


METADATA_ONLY = ContentRequest(frozenset({ContentFormat.METADATA}))


def content_request(formats: object, main_content_only: object, max_age_s: object = None) -> ContentRequest:
    """A job's stored options as a ContentRequest. Jobs from before `formats` existed kept metadata only."""
    if not isinstance(formats, list):
        return METADATA_ONLY
    return ContentRequest(frozenset(ContentFormat(kind) for kind in formats), main_content_only is not False,
                          max_age_s if isinstance(max_age_s, int) else None)


@dataclass(frozen=True)
class PageBodies:
    """A page's bodies as asked for (None where not asked), and the digest of its main text (`text_digest`),
    which decides whether the page changed: the main content only, so a new date in a footer is no change."""

    markdown: str | None
    text: str | None
    html: str | None
    main_text_digest: str
    # The main text's start, what search indexes (a tsvector is at most 1 MB): never stored as text.
    search_text: str = ""

    def of(self, kind: ContentFormat) -> str | None:
        return {ContentFormat.MARKDOWN: self.markdown, ContentFormat.TEXT: self.text,
                ContentFormat.HTML: self.html}.get(kind)


def text_digest(text: str) -> str:
    """The SHA-256 of a text with its whitespace runs collapsed: re-flowed lines are the same text."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


class PageChange(StrEnum):
    """How an item's main content compares with its page's latest version before it."""

    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class StoredBody:
    """A body in the content store: the SHA-256 of its bytes (its address) and its size."""

    sha256: str
    size: int


@dataclass(frozen=True)
class KeptContent:
    """What a succeeded item kept besides its result: its stored bodies, its page and how the page changed."""

    bodies: dict[ContentFormat, StoredBody] = field(default_factory=dict)
    page_id: UUID | None = None
    version_id: int | None = None
    change: PageChange | None = None
    cached: bool = False


NOTHING_KEPT = KeptContent()


# How much of a page's main text search indexes.
MAX_SEARCH_CHARS = 100_000

# PostgreSQL's built-in text-search configurations by ISO 639-1 language; any other language uses `simple`.
SEARCH_CONFIGS = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "da": "danish", "nl": "dutch",
    "en": "english", "fi": "finnish", "fr": "french", "de": "german", "el": "greek", "hi": "hindi",
    "hu": "hungarian", "id": "indonesian", "ga": "irish", "it": "italian", "lt": "lithuanian", "ne": "nepali",
    "no": "norwegian", "nb": "norwegian", "nn": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sr": "serbian", "es": "spanish", "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}


def search_config(language: str | None) -> str:
    """The text-search configuration for a page in `language` (a BCP 47 tag such as `en-GB`, or None)."""
    primary = (language or "").split("-")[0].split("_")[0].strip().lower()
    return SEARCH_CONFIGS.get(primary, "simple")


@dataclass(frozen=True)
class CachedPage:
    """A page's latest version young enough to answer an item without fetching: the result of the item that
    first saw it, and its bodies."""

    result: dict[str, object]
    http_status: int | None
    final_url: str | None
    kept: KeptContent


@dataclass(frozen=True)
class DeletedData:
    """What deleting a job's data removed: items cleared, page versions gone, bodies noted for deletion."""

    items: int
    versions: int
    bodies: int
