"""Times BeautifulSoup parsers on the fixture pages and a large generated page.

Run from the repository root: ``.venv/bin/python bench/parser_bench.py``. For each page
it reports the best CPU time of several runs of parsing alone and of the full ``extract``
for every installed parser, with the ratio to html.parser (the standard-library baseline).
The figures and the resulting choice are recorded in bench/README.md, "Parser choice".
"""

import argparse
import gc
import importlib.util
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bs4 import BeautifulSoup

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.extract import extract  # noqa: E402
from shared.fetch import FetchedPage  # noqa: E402
from shared.html_charset import decode_html  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "html"
BASELINE = "html.parser"


def installed_parsers() -> list[str]:
    """html.parser first (the baseline), then lxml and html5lib when importable."""
    optional = [name for name in ("lxml", "html5lib") if importlib.util.find_spec(name)]
    return [BASELINE, *optional]


def generated_page(sections: int) -> str:
    """A large, link- and heading-heavy page, similar in shape to a long blog archive."""
    parts = ["<!DOCTYPE html><html lang='en'><head><title>Archive</title></head><body>"]
    for i in range(sections):
        parts.append(
            f"<article><h2>Post {i}</h2><p class='meta'>By <a href='/authors/{i % 50}'>author</a>"
            f" on <time>2024-01-{i % 28 + 1:02d}</time></p>"
            f"<p>Paragraph {i} with <b>bold</b>, <i>italic</i> and <a href='/posts/{i}'>a link"
            f"</a>. Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>"
            f"<ul><li><a href='/tags/a{i % 30}' rel='tag'>tag a</a></li>"
            f"<li><a href='https://ext.example/{i}' rel='nofollow'>external</a></li></ul>"
            f"<table><tr><td>{i}</td><td>cell</td></tr></table></article>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def pages(sections: int) -> dict[str, FetchedPage]:
    """The fixture pages, decoded as fetch would, plus the generated page."""
    texts = {path.name: decode_html(path.read_bytes(), None)[0] for path in FIXTURES.glob("*.html")}
    texts[f"generated ({sections} posts)"] = generated_page(sections)
    return {name: as_page(text) for name, text in sorted(texts.items())}


def as_page(text: str) -> FetchedPage:
    """Wrap HTML text the way fetch() returns it."""
    return FetchedPage(
        url="https://bench.example/page",
        final_url="https://bench.example/page",
        status=200,
        content_type="text/html",
        charset="utf-8",
        text=text,
        content_language=None,
        elapsed_ms=0,
        redirects=0,
    )


def cpu_ms(run: Callable[[], object]) -> float:
    """CPU time of one run in milliseconds: less disturbed by other processes than wall time."""
    gc.collect()  # start every run with the same garbage to collect
    started = time.process_time()
    run()
    return (time.process_time() - started) * 1000


def measure(page: FetchedPage, parsers: list[str], repeat: int) -> dict[str, tuple[float, float]]:
    """Best (parse-only ms, full-extract ms) per parser, runs interleaved across parsers."""
    best = {parser: (float("inf"), float("inf")) for parser in parsers}
    for _ in range(repeat):
        for parser in parsers:
            parse = cpu_ms(partial(BeautifulSoup, page.text, parser))
            full = cpu_ms(partial(extract, page, parser=parser))
            best[parser] = (min(best[parser][0], parse), min(best[parser][1], full))
    return best


def report(sections: int, repeat: int) -> None:
    """Print one markdown table row per page and parser, then how each copes with broken.html."""
    parsers = installed_parsers()
    print(f"Python {sys.version.split()[0]}, CPU time, best of {repeat} interleaved runs")
    print("| page | size | parser | parse ms | extract ms | extract vs html.parser |")
    print("|---|---:|---|---:|---:|---:|")
    for name, page in pages(sections).items():
        results = measure(page, parsers, repeat)
        baseline = results[BASELINE][1]
        size = f"{len(page.text.encode()) / 1024:.0f} KiB"
        for parser, (parse, full) in results.items():
            ratio = f"{full / baseline:.2f}x"
            print(f"| {name} | {size} | {parser} | {parse:.2f} | {full:.2f} | {ratio} |")
    broken = pages(0)["broken.html"]
    for parser in parsers:
        print(f"broken.html h1 with {parser}: {extract(broken, parser=parser).headings.h1}")


def main() -> None:
    """Parse the command line and print the report."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--sections", type=int, default=2000, help="posts in the generated page")
    options.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    args = options.parse_args()
    report(args.sections, args.repeat)


if __name__ == "__main__":
    main()
