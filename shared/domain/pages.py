"""What a scraped page becomes: the result stored per item and served by the results API. Plain
models, so the HTTP contract and the services can name them without loading the scraper."""

from pydantic import BaseModel, ConfigDict, Field

MAX_LINKS = 1000
MAX_HEADINGS = 100
MAX_TEXT_CHARS = 1000
# The submit limit's default (Settings.max_url_length): a longer link could not be submitted either.
MAX_URL_CHARS = 2048
# The most one stored result may take as JSON: 1,000 links of 2,048 characters would be 2 MB, and
# the results API pages by bytes, so a result must be a small fraction of a page.
MAX_RESULT_BYTES = 256 * 1024


class OpenGraph(BaseModel):
    """The Open Graph fields the service reports."""

    model_config = ConfigDict(frozen=True)

    title: str | None = None
    description: str | None = None
    site_name: str | None = None
    image: str | None = None


class Headings(BaseModel):
    """Heading texts per level, in document order."""

    model_config = ConfigDict(frozen=True)

    h1: list[str]
    h2: list[str]
    h3: list[str]


class Link(BaseModel):
    """An absolute http(s) link; ``nofollow`` if every occurrence on the page is nofollow."""

    model_config = ConfigDict(frozen=True)

    url: str
    nofollow: bool


class Truncation(BaseModel):
    """What was left out of a result to keep it bounded."""

    model_config = ConfigDict(frozen=True)

    links: int = Field(default=0, description=f"Links left out: past the first {MAX_LINKS:,} distinct ones, or "
                                              "to keep the stored result under its size cap.")
    long_urls: int = Field(default=0, description=f"URLs left out because they are longer than {MAX_URL_CHARS:,} "
                                                  "characters: links, the canonical URL, og:image, `<base href>`.")
    headings: int = Field(default=0, description=f"Headings left out: past {MAX_HEADINGS} per level, or to keep "
                                                 "the stored result under its size cap.")
    texts: int = Field(default=0, description=f"Texts cut to {MAX_TEXT_CHARS:,} characters: title, description, "
                                              "headings, Open Graph fields.")

    def or_none(self) -> "Truncation | None":
        """None when nothing was left out, so a result names truncation only when there was some."""
        return self if self != Truncation() else None


class PageData(BaseModel):
    """Everything extracted from one fetched page; JSON-serialisable for JSONB storage."""

    model_config = ConfigDict(frozen=True)

    final_url: str
    status: int
    content_type: str
    title: str | None
    description: str | None
    canonical: str | None
    lang: str | None
    open_graph: OpenGraph
    published_time: str | None
    headings: Headings
    links: list[Link]
    word_count: int
    excerpt: str
    text_sha256: str
    truncated: Truncation | None = Field(None, description="Present when something was left out to keep "
                                                           "the result bounded; absent when nothing was.")


class ScrapeResult(PageData):
    """PageData plus how the page was fetched; ``model_dump(mode="json")`` is JSONB-ready."""

    url: str
    charset: str
    redirects: int
    elapsed_ms: int


# A page's main content, as Markdown and as plain text, is capped separately from the rest of the result. 100,000
# characters is some 15,000 words of prose, its links included: the longest article of the ScrapingHub
# article-extraction benchmark is 53,372 characters of text (bench/README.md, "Page content: extractor choice").
MAX_MARKDOWN_CHARS = 100_000
MAX_CONTENT_TEXT_CHARS = 100_000


class PageContent(BaseModel):
    """A page's content as Markdown (headings, lists, links, tables, code) and as plain text, each capped."""

    model_config = ConfigDict(frozen=True)

    markdown: str
    text: str
    truncated: bool = Field(False, description="True when content was left out: the page was larger than the "
                                               "content extractor reads, or the Markdown (text) was longer than "
                                               f"{MAX_MARKDOWN_CHARS:,} ({MAX_CONTENT_TEXT_CHARS:,}) characters "
                                               "and was cut at a paragraph, line or word boundary.")
