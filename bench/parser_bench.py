"""Times BeautifulSoup parsers on the fixture pages and a large generated page.

Run from the repository root: ``.venv/bin/python bench/parser_bench.py``. For each page
it reports the best CPU time of several runs of parsing alone and of the full extraction
(``tree_extractors.bs4_extract``, shared.scraping.extract as it was while it used BeautifulSoup) for
every installed parser, with the ratio to html.parser (the standard-library baseline).
The figures and the resulting choice are recorded in bench/README.md, "Parser choice".

``--threaded`` measures extraction under threads instead, as the queue workers run it: 40 KiB
pages of the benchmarks' site (bench/local_site.py) extracted by 1, 6 and 24 threads with
BeautifulSoup + html.parser, BeautifulSoup + lxml, plain lxml.html (``tree_extractors.lxml_extract``:
the same fields from lxml's own tree with XPath) and the app's current ``shared.scraping.extract``, each with
the garbage collector as Python sets it, with ``gc.freeze()``, with raised thresholds, and both.
Recorded in bench/README.md, "Parsing under threads".
"""

import argparse
import gc
import importlib.util
import queue
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bs4 import BeautifulSoup

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.local_site import page_html  # noqa: E402
from bench.tree_extractors import bs4_extract, lxml_extract  # noqa: E402
from shared.domain.pages import PageData  # noqa: E402
from shared.scraping.extract import extract  # noqa: E402
from shared.scraping.fetch import FetchedPage  # noqa: E402
from shared.scraping.html_charset import decode_html  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "html"
BASELINE = "html.parser"
THREAD_COUNTS = (1, 6, 24)
THREADED_PAGE_KIB = 40
THREADED_PAGES = 96  # per measurement: four pages per thread at 24 threads
# Python 3.11's thresholds, and raised ones that make young collections 140x rarer.
DEFAULT_GC_THRESHOLDS = (700, 10, 10)
RAISED_GC_THRESHOLDS = (100_000, 50, 100)


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


def as_page(text: str, url: str = "https://bench.example/page") -> FetchedPage:
    """Wrap HTML text the way fetch() returns it."""
    return FetchedPage(
        url=url,
        final_url=url,
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
            full = cpu_ms(partial(bs4_extract, page, parser))
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
        print(f"broken.html h1 with {parser}: {bs4_extract(broken, parser).headings.h1}")


EXTRACTORS: dict[str, Callable[[FetchedPage], PageData]] = {
    "bs4 html.parser": partial(bs4_extract, parser="html.parser"),
    "bs4 lxml": partial(bs4_extract, parser="lxml"),
    "lxml.html": lxml_extract,
    "shared.scraping.extract": extract,
}


@dataclass(frozen=True)
class ThreadedRun:
    """One batch of pages extracted by a number of threads, in milliseconds per page."""

    latency: float  # how long one extraction took, from its start to its end (mean)
    wall: float  # elapsed time over pages: the inverse of throughput
    cpu: float  # process CPU time over pages
    gc: float  # CPU time spent in garbage collections over pages


class GcClock:
    """Adds up the CPU time of garbage collections while it is in `gc.callbacks`.

    Thread CPU time, not wall time: other threads may run during a collection (finalizers and the callbacks
    are Python code, which hands the GIL on), and their work is not the collector's. One collection runs at a
    time, started and finished by the same thread.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started


GC_MODES = ("default", "freeze", "raised", "freeze+raised")


@contextmanager
def gc_mode(mode: str) -> Iterator[None]:
    """The collector as Python sets it, with everything alive frozen (`gc.freeze()`), raised thresholds, or both."""
    gc.collect()
    if "freeze" in mode:
        gc.freeze()
    if "raised" in mode:
        gc.set_threshold(*RAISED_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*DEFAULT_GC_THRESHOLDS)


def run_threaded(extractor: Callable[[FetchedPage], PageData], pages: list[FetchedPage], threads: int) -> ThreadedRun:
    """Extract every page once, `threads` threads taking pages from one queue."""
    work: queue.SimpleQueue[FetchedPage] = queue.SimpleQueue()
    for page in pages:
        work.put(page)
    latencies: list[float] = []
    start = threading.Barrier(threads + 1)

    def worker() -> None:
        start.wait()
        while True:
            try:
                page = work.get_nowait()
            except queue.Empty:
                return
            began = time.perf_counter()
            extractor(page)
            latencies.append(time.perf_counter() - began)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    gc_clock = GcClock()
    gc.callbacks.append(gc_clock)
    start.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gc.callbacks.remove(gc_clock)
    per_page = 1000 / len(pages)
    return ThreadedRun(statistics.mean(latencies) * 1000, wall * per_page, cpu * per_page, gc_clock.seconds * per_page)


def check_same_results(pages: list[FetchedPage]) -> None:
    """The extractors must give the same PageData, or their timings compare different work.

    Strict for the tree extractors (on the fixtures, html.parser is left out: it reads broken.html
    differently by design); the app's own extractor follows its own rules and may legitimately
    differ, so its differences are reported, not fatal.
    """
    trees = [name for name in EXTRACTORS if name != "shared.scraping.extract"]
    for page in pages[:8]:
        _compare(page, trees, strict=True)
        _compare(page, ["bs4 lxml", "shared.scraping.extract"], strict=False)
    for page in _fixture_pages():
        _compare(page, ["bs4 lxml", "lxml.html"], strict=True)


def _compare(page: FetchedPage, names: list[str], strict: bool) -> None:
    expected, *others = (EXTRACTORS[name](page).model_dump() for name in names)
    for name, got in zip(names[1:], others, strict=True):
        differing = sorted(key for key in expected if got.get(key) != expected[key])
        if differing and strict:
            raise AssertionError(f"{name} differs from {names[0]} on {page.url}: {differing}")
        if differing:
            print(f"note: {name} differs from {names[0]} on {page.url} in {differing}", file=sys.stderr)


def _fixture_pages() -> list[FetchedPage]:
    return [as_page(decode_html(path.read_bytes(), None)[0], url=f"https://bench.example/{path.name}")
            for path in sorted(FIXTURES.glob("*.html"))]


def report_threaded(repeat: int) -> None:
    """Print one markdown row per extractor, thread count and GC mode: medians of interleaved runs."""
    pages = [as_page(page_html(n, THREADED_PAGE_KIB)) for n in range(THREADED_PAGES)]
    check_same_results(pages)
    cells = [(name, threads, mode) for name in EXTRACTORS for threads in THREAD_COUNTS
             for mode in GC_MODES]
    runs: dict[tuple[str, int, str], list[ThreadedRun]] = {cell: [] for cell in cells}
    for _ in range(repeat):
        for name, threads, mode in cells:
            with gc_mode(mode):
                runs[name, threads, mode].append(run_threaded(EXTRACTORS[name], pages, threads))
    size = statistics.mean(len(page.text.encode()) for page in pages) / 1024
    print(f"Python {sys.version.split()[0]}, {THREADED_PAGES} pages of {size:.1f} KiB per run, "
          f"medians of {repeat} interleaved runs, ms per page")
    print("| extractor | threads | gc | latency | wall | wall range | CPU | in gc |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, threads, mode in cells:
        cell = runs[name, threads, mode]
        median = {field: statistics.median(getattr(run, field) for run in cell)
                  for field in ("latency", "wall", "cpu", "gc")}
        spread = f"{min(run.wall for run in cell):.1f}-{max(run.wall for run in cell):.1f}"
        print(f"| {name} | {threads} | {mode} | {median['latency']:.1f} | {median['wall']:.1f} | {spread} "
              f"| {median['cpu']:.1f} | {median['gc']:.1f} |")


def main() -> None:
    """Parse the command line and print the report."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--sections", type=int, default=2000, help="posts in the generated page")
    options.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    options.add_argument("--threaded", action="store_true", help="extraction under 1, 6 and 24 threads instead")
    args = options.parse_args()
    if args.threaded:
        report_threaded(args.repeat)
    else:
        report(args.sections, args.repeat)


if __name__ == "__main__":
    main()
