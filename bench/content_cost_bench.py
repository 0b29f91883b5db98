"""CPU per page of the page-content extractor (shared.scraping.content) next to today's metadata extraction, and
its time and memory on hostile pages.

Run from the repository root:

    .venv/bin/python bench/content_cost_bench.py [--runs 5] [--pages 40] [--hostile] [--data /tmp/aeb]

1. Per page: on 40 KiB and small (about 4 KiB) pages of the benchmarks' site (bench/local_site.py) and on the
   fixture pages (tests/fixtures/html/), the CPU time of ``shared.scraping.extract.extract`` alone (the
   baseline), of it followed by ``extract_content`` (Markdown and text of the main content), of it followed by
   ``extract_content(main_content_only=False)``, and of one lxml parse of the page (``lxml.html``; the most a
   tree shared between the two extractors could save); with ``--data``, also on the 181 real pages of the
   article-extraction benchmark (bench/content_quality_bench.py says how to get them). The contenders alternate
   within every run, in a rotated order, so they share the machine's load; the figures are medians over the
   runs, and the ratios are ratios of medians to the baseline. The pipeline estimate adds the content's extra CPU to the CPU devhost spends per
   page (bench/README.md, "Pipeline throughput": 13-16 ms on small pages, 32.4 ms on 40 KiB pages).
2. ``--hostile``: each hostile page (issue 10's, those of the e2e suite, and pages at the fetcher's 5 MiB cap)
   in a fresh child process, extracted by ``--threads`` (24) threads at once as the worker runs items, as
   bench/memory_bench.py does: CPU time and peak resident growth (VmHWM, reset just before) per item of
   ``extract_content``; and for comparison, alone (24 would need gigabytes), trafilatura on the whole page
   without the app's budgets.

Recorded in bench/README.md, "Page content: extractor choice".
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess  # nosec B404 - runs this same script as a child
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import lxml.html  # noqa: E402
import trafilatura  # noqa: E402

from bench.local_site import page_html  # noqa: E402
from bench.memory_bench import CASES as MEMORY_CASES  # noqa: E402
from bench.memory_bench import memory_kib, reset_peak  # noqa: E402
from bench.parser_bench import as_page  # noqa: E402
from shared.scraping.content import extract_content  # noqa: E402
from shared.scraping.extract import extract  # noqa: E402
from shared.scraping.fetch import FetchedPage  # noqa: E402
from shared.scraping.html_charset import decode_html  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "html"
MIB = 1024 * 1024
CAP = 5 * MIB  # the fetcher's byte cap (FetchLimits.max_bytes)
# CPU devhost spends per page in the pipeline with metadata only (bench/README.md, "Pipeline throughput").
PIPELINE_CPU_MS = {"small": (13.0, 16.0), "40 KiB": (32.4, 32.4)}
BASELINE = "metadata"


def metadata(page: FetchedPage) -> object:
    return extract(page)


def metadata_and_content(page: FetchedPage) -> object:
    return extract(page), extract_content(page.text, page.final_url)


def metadata_and_whole_body(page: FetchedPage) -> object:
    return extract(page), extract_content(page.text, page.final_url, main_content_only=False)


def lxml_parse(page: FetchedPage) -> object:
    return lxml.html.document_fromstring(page.text)


CONTENDERS: dict[str, Callable[[FetchedPage], object]] = {
    BASELINE: metadata,
    "metadata + content": metadata_and_content,
    "metadata + whole body": metadata_and_whole_body,
    "lxml parse alone": lxml_parse,
}


def page_sets(pages: int, data: Path | None) -> dict[str, list[FetchedPage]]:
    fixtures = [as_page(decode_html(path.read_bytes(), None)[0]) for path in sorted(FIXTURES.glob("*.html"))]
    sets = {
        "40 KiB": [as_page(page_html(n, 40)) for n in range(pages)],
        "small": [as_page(page_html(n, 0)) for n in range(pages)],
        f"fixtures ({len(fixtures)})": fixtures,
    }
    if data is not None:
        truth = json.loads((data / "ground-truth.json").read_text(encoding="utf8"))
        sets[f"article-extraction benchmark ({len(truth)})"] = [
            as_page(gzip.decompress((data / "html" / f"{key}.html.gz").read_bytes()).decode("utf8"),
                    truth[key].get("url") or "https://bench.example/page") for key in truth]
    return sets


def cpu_ms_per_page(contender: Callable[[FetchedPage], object], pages: list[FetchedPage]) -> float:
    started = time.process_time()
    for page in pages:
        contender(page)
    return (time.process_time() - started) * 1000 / len(pages)


def per_page(runs: int, pages: int, data: Path | None) -> None:
    print("| pages | metadata ms | + content ms | ratio | + whole body ms | ratio | lxml parse ms "
          "| pipeline ratio, est. |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    names = list(CONTENDERS)
    for set_name, pages_of_set in page_sets(pages, data).items():
        for contender in CONTENDERS.values():
            cpu_ms_per_page(contender, pages_of_set[:3])  # imports, first-call set-up (justext's stoplists)
        times: dict[str, list[float]] = {name: [] for name in names}
        for run in range(runs):
            for name in names[run % len(names):] + names[:run % len(names)]:
                times[name].append(cpu_ms_per_page(CONTENDERS[name], pages_of_set))
        median = {name: statistics.median(values) for name, values in times.items()}
        base = median[BASELINE]
        added = median["metadata + content"] - base
        low, high = PIPELINE_CPU_MS.get(set_name, (float("nan"), float("nan")))
        pipeline = (f"{(high + added) / high:.2f}-{(low + added) / low:.2f}" if low != high
                    else f"{(low + added) / low:.2f}")
        print(f"| {set_name} | {base:.1f} | {median['metadata + content']:.1f} "
              f"| {median['metadata + content'] / base:.2f} | {median['metadata + whole body']:.1f} "
              f"| {median['metadata + whole body'] / base:.2f} | {median['lxml parse alone']:.2f} "
              f"| {pipeline if set_name in PIPELINE_CPU_MS else '-'} |", flush=True)


def _nested_divs() -> str:
    return "<html><body>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000


def _big_table() -> str:
    row = "<tr>" + "<td>cell text</td>" * 50 + "</tr>"
    return "<html><body><table>" + row * (CAP // len(row)) + "</table></body></html>"


def _one_text_node() -> str:
    return "<html><body><p>" + "word " * (CAP // 5)


def _line_breaks() -> str:
    return "<html><body>" + "<br>" * (CAP // 4)


def _script_heavy_article() -> str:
    """A single-page-app article: 3 MiB of inline state before the article, as some news sites ship."""
    state = '<script id="__NEXT_DATA__" type="application/json">{"x": "' + "a<b " * (3 * MIB // 4) + '"}</script>'
    return page_html(3, 40).replace("<body>", "<body>" + state, 1)


HOSTILE: dict[str, Callable[[], str]] = {
    **{name: build for name, build in MEMORY_CASES.items() if name != "article 40 KiB"},
    "generated article at the 5 MiB cap": lambda: page_html(5, CAP // 1024),
    "3 MiB inline script, then a 40 KiB article": _script_heavy_article,
    "5 MiB table of 50 columns": _big_table,
    "5 MiB in one text node": _one_text_node,
    "5 MiB of <br>": _line_breaks,
    "100,000 nested <div>": _nested_divs,
    "5 MB of random bytes (as cp1252)": lambda: os.urandom(5_000_000).decode("cp1252", errors="replace"),
    "no <body>": lambda: "<html><head><title>Nothing</title></head></html>",
}


def hostile_child(case: str, uncapped: bool, threads: int) -> dict[str, object]:
    """One hostile page in this fresh process, extracted by ``threads`` threads at once: CPU and peak resident
    growth per item."""
    html = HOSTILE[case]()
    warm = page_html(1, 40)
    extract_content(warm, None)
    trafilatura.extract(warm, fast=True)
    outputs: list[tuple[str, bool]] = []
    barrier = threading.Barrier(threads)

    def one() -> None:
        barrier.wait()
        if uncapped:
            outputs.append((trafilatura.extract(html, fast=True, output_format="markdown", include_links=True,
                                                include_comments=False) or "", False))
        else:
            content = extract_content(html, "https://hostile.example/page")
            outputs.append((content.markdown, content.truncated))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    before = memory_kib("VmRSS")
    reset_peak()
    started = time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    cpu_ms = (time.process_time() - started) * 1000 / threads
    markdown, truncated = outputs[0]
    return {"kib": round(len(html) / 1024), "cpu_ms": round(cpu_ms), "markdown_chars": len(markdown),
            "truncated": truncated, "peak_mib": round((memory_kib("VmHWM") - before) / 1024 / threads, 1)}


def hostile(threads: int) -> None:
    print(f"| page | KiB | CPU ms | peak MiB per item ({threads} at once) | Markdown chars | truncated "
          "| uncapped trafilatura CPU ms | its peak MiB (alone) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for case in HOSTILE:
        rows = []
        for uncapped in (False, True):
            command = [sys.executable, __file__, "--child", case, "--threads", str(1 if uncapped else threads),
                       *(["--uncapped"] if uncapped else [])]
            done = subprocess.run(command, check=True, capture_output=True, text=True)  # nosec B603
            rows.append(json.loads(done.stdout.splitlines()[-1]))
        ours, theirs = rows
        print(f"| {case} | {ours['kib']:,} | {ours['cpu_ms']:,} | {ours['peak_mib']} | {ours['markdown_chars']:,} "
              f"| {'yes' if ours['truncated'] else 'no'} | {theirs['cpu_ms']:,} | {theirs['peak_mib']} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="alternating runs per page set; medians are reported")
    parser.add_argument("--pages", type=int, default=40, help="generated pages per set")
    parser.add_argument("--hostile", action="store_true", help="also measure the hostile pages")
    parser.add_argument("--data", type=Path, help="a checkout of the article-extraction benchmark: its 181 pages too")
    parser.add_argument("--threads", type=int, default=24, help="hostile items extracted at once, as the worker runs them")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--uncapped", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(hostile_child(args.child, args.uncapped, args.threads)))
        return
    print(f"Python {sys.version.split()[0]}, trafilatura {trafilatura.__version__}, lxml {version('lxml')}, "
          f"load {os.getloadavg()[0]:.1f}")
    per_page(args.runs, args.pages, args.data)
    if args.hostile:
        hostile(args.threads)


if __name__ == "__main__":
    main()
