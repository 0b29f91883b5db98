"""One URL in, one storable result out (and the page's bodies, when the job asked for them): what the queue
worker calls per item."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic_core import to_json

from shared.domain.content import (
    MAX_SEARCH_CHARS,
    METADATA_ONLY,
    ContentFormat,
    ContentRequest,
    PageBodies,
    text_digest,
)
from shared.domain.pages import MAX_RESULT_BYTES, Headings, ScrapeResult, Truncation
from shared.scraping.content import extract_content
from shared.scraping.extract import HEADING_TAGS, extract
from shared.scraping.fetch import FetchedPage, FetchLimits, Resolver, fetch

T = TypeVar("T")


@dataclass(frozen=True)
class ScrapedPage:
    """A scraped page: its bounded result, and its bodies when the job asked for some."""

    result: ScrapeResult
    bodies: PageBodies | None = None


def scrape_page(url: str, limits: FetchLimits, request: ContentRequest = METADATA_ONLY, *,
                resolver: Resolver | None = None) -> ScrapedPage:
    """Fetch ``url`` within ``limits``; its result, and the bodies ``request`` asks for (Markdown and text of the
    main content, the decoded HTML). Raises FetchError on failure."""
    page = fetch(url, limits, resolver=resolver)
    result = _result(page, limits)
    if not request.keeps_links:
        result = result.model_copy(update={"links": []})
    return ScrapedPage(result, _bodies(page, request) if request.bodies else None)


def scrape(url: str, limits: FetchLimits, *, resolver: Resolver | None = None) -> ScrapeResult:
    """Fetch ``url`` within ``limits`` and extract its data, at most MAX_RESULT_BYTES of JSON; raises
    FetchError on failure."""
    return _result(fetch(url, limits, resolver=resolver), limits)


def _bodies(page: FetchedPage, request: ContentRequest) -> PageBodies:
    content = extract_content(page.text, page.final_url, main_content_only=request.main_content_only)
    wants = request.formats
    return PageBodies(
        markdown=content.markdown if ContentFormat.MARKDOWN in wants else None,
        text=content.text if ContentFormat.TEXT in wants else None,
        html=page.text if ContentFormat.HTML in wants else None,
        main_text_digest=text_digest(content.text),
        search_text=content.text[:MAX_SEARCH_CHARS],
    )


def _result(page: FetchedPage, limits: FetchLimits) -> ScrapeResult:
    data = extract(page, max_url_chars=limits.max_url_length)
    result = ScrapeResult(
        **data.model_dump(),
        url=page.url,
        charset=page.charset,
        redirects=page.redirects,
        elapsed_ms=page.elapsed_ms,
    )
    return fit_result(result, MAX_RESULT_BYTES)


def fit_result(result: ScrapeResult, max_bytes: int) -> ScrapeResult:
    """``result`` if its JSON fits in ``max_bytes``; else with headings (h1 first) and then links kept
    only as far as they fit, the rest left out and counted in ``truncated``."""
    if len(to_json(result)) <= max_bytes:
        return result
    before = result.truncated or Truncation()
    heading_count = sum(len(getattr(result.headings, level)) for level in HEADING_TAGS)
    # The counts at their largest, so that the room left for the lists is never overestimated.
    widest = before.model_copy(update={"links": before.links + len(result.links),
                                       "headings": before.headings + heading_count})
    bare = result.model_copy(update={"links": [], "headings": Headings(h1=[], h2=[], h3=[]), "truncated": widest})
    room = max_bytes - len(to_json(bare))
    kept_headings: dict[str, list[str]] = {}
    for level in HEADING_TAGS:
        kept_headings[level], room = _prefix_that_fits(getattr(result.headings, level), room)
    links, room = _prefix_that_fits(result.links, room)
    truncated = before.model_copy(update={
        "links": before.links + len(result.links) - len(links),
        "headings": before.headings + heading_count - sum(map(len, kept_headings.values())),
    })
    return result.model_copy(update={"links": links, "headings": Headings(**kept_headings), "truncated": truncated})


def _prefix_that_fits(items: Sequence[T], room: int) -> tuple[list[T], int]:
    """The longest prefix of ``items`` whose JSON array elements fit in ``room`` bytes, and the room left."""
    kept: list[T] = []
    for item in items:
        size = len(to_json(item)) + 1  # and its comma
        if size > room:
            break
        kept.append(item)
        room -= size
    return kept, room
