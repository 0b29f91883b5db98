"""One URL in, one storable result out: what the queue worker calls per item."""

from shared.extract import PageData, extract
from shared.fetch import FetchLimits, Resolver, fetch


class ScrapeResult(PageData):
    """PageData plus how the page was fetched; ``model_dump(mode="json")`` is JSONB-ready."""

    url: str
    charset: str
    redirects: int
    elapsed_ms: int


def scrape(url: str, limits: FetchLimits, *, resolver: Resolver | None = None) -> ScrapeResult:
    """Fetch ``url`` within ``limits`` and extract its data; raises FetchError on failure."""
    page = fetch(url, limits, resolver=resolver)
    data = extract(page)
    return ScrapeResult(
        **data.model_dump(),
        url=page.url,
        charset=page.charset,
        redirects=page.redirects,
        elapsed_ms=page.elapsed_ms,
    )
