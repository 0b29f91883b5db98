"""Peak memory per concurrent item when the scrape worker meets issue 10's hostile pages.

Run from the repository root: ``.venv/bin/python bench/memory_bench.py``. Each case runs in a fresh
child process: a server process serves the case's page, and the child calls ``shared.scraping.scrape.scrape``
(fetch, decode, extract, fit the result) from ``--threads`` threads at once, 24 by default as the
worker runs them. The server holds every response until all the threads' requests have arrived, so
the items are fetched and parsed together, as on a loaded instance. The figure is the growth of the
child's peak resident set (VmHWM, reset just before the threads start) over its resident set at
that moment, divided by the number of threads: the memory one concurrent item costs. It is compared
with the fetcher's byte cap (``FetchLimits.max_bytes``, 5 MiB), which bounds what one page can be.

``--baseline`` measures the extractor this replaced, in the same way but with at most
BASELINE_THREADS threads (24 of its items would need well over 10 GB for these pages): a
BeautifulSoup (lxml) tree of the page and every link resolved against ``<base href>`` and kept,
whatever its length. Results are recorded in bench/README.md, "Memory per item".
"""

import argparse
import ipaddress
import json
import multiprocessing
import subprocess  # nosec B404 - runs this same script as a child
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pydantic_core import to_json  # noqa: E402

from shared.scraping.fetch import FetchedPage, FetchLimits, fetch  # noqa: E402
from shared.scraping.scrape import scrape  # noqa: E402

MIB = 1024 * 1024
BARRIER_TIMEOUT_S = 120
BASELINE_THREADS = 4


def links_page(count: int, href: str = "{n}", head: str = "") -> str:
    return f"<html><head>{head}</head><body>" + "".join(f"<a href={href.format(n=n)}>x</a>" for n in range(count))


def article_page(kib: int) -> str:
    """A realistic page for reference: head metadata, headings, paragraphs with a few links."""
    parts = [("<!doctype html><html lang=en><head><title>Article</title>"
              "<meta name=description content='An article'></head><body><h1>Article</h1>")]
    section = 0
    while sum(map(len, parts)) < kib * 1024:
        parts.append(f"<h2>Section {section}</h2><p>{'Lorem ipsum dolor sit amet. ' * 20}"
                     f"<a href='/related/{section}'>related</a> <a href='https://other.example/{section}'>out</a></p>")
        section += 1
    return "".join(parts) + "</body></html>"


# The pages of issue 10, as the tests build them (tests/unit/test_extract_bounds.py), and a reference page.
CASES: dict[str, Callable[[], str]] = {
    "article 40 KiB": lambda: article_page(40),
    "138 KB, 100 KB <base href>, 3,000 links": lambda: links_page(
        3000, head=f'<base href="https://s.example/{"b" * 100_000}/">'),
    "35 KB, 1,800 links of 1.9 KB": lambda: links_page(1800, head=f'<base href="https://s.example/{"p" * 1900}/">'),
    "5 MB of short links": lambda: links_page(250_000, href="/{n}"),
}


def serve(page: bytes, parties: int, ready: Any, port: Any) -> None:
    """Serve `page` at every path, answering only once `parties` requests are waiting (/warm at once)."""
    barrier = threading.Barrier(parties)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/warm":
                barrier.wait(BARRIER_TIMEOUT_S)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port.value = server.server_address[1]
    ready.set()
    server.serve_forever()


def tree_extract(url: str, limits: FetchLimits) -> bytes:
    """The extractor before issue 10, as far as memory goes: a BeautifulSoup tree and every link kept."""
    from bs4 import BeautifulSoup

    page: FetchedPage = fetch(url, limits)
    soup = BeautifulSoup(page.text, "lxml")
    base_tag = soup.find("base", href=True)
    base = urljoin(page.final_url, str(base_tag["href"])) if base_tag else page.final_url
    links = {urljoin(base, str(a["href"])): False for a in soup.find_all("a", href=True)}
    return json.dumps({"links": [{"url": url, "nofollow": no} for url, no in links.items()]}).encode()


def memory_kib(field: str) -> int:
    """A field of /proc/self/status, in KiB (VmRSS: resident now; VmHWM: peak since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set (Linux)


def child(case: str, threads: int, rounds: int, baseline: bool) -> dict[str, Any]:
    """Run one case in this process; returns its figures."""
    page = CASES[case]().encode()
    ready, port = multiprocessing.Event(), multiprocessing.Value("i", 0)
    server = multiprocessing.Process(target=serve, args=(page, threads, ready, port), daemon=True)
    server.start()
    ready.wait()
    base = f"http://127.0.0.1:{port.value}"
    limits = FetchLimits(allowed_ports=frozenset({port.value}),
                         allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    work: Callable[[str], bytes] = ((lambda url: tree_extract(url, limits)) if baseline
                                    else (lambda url: to_json(scrape(url, limits))))
    stored = len(work(f"{base}/warm"))  # imports, parser set-up and first allocations happen outside the figure
    growth = max(_round(work, base, threads) for _ in range(rounds))
    server.terminate()
    return {"case": case, "extractor": "bs4 tree (before)" if baseline else "streaming (now)",
            "page_kib": round(len(page) / 1024), "threads": threads, "peak_growth_mib": round(growth / MIB, 1),
            "per_item_mib": round(growth / threads / MIB, 2),
            "per_item_vs_cap": round(growth / threads / FetchLimits().max_bytes, 2), "stored_kib": round(stored / 1024)}


def _round(work: Callable[[str], bytes], base: str, threads: int) -> int:
    """Bytes the resident set peaked above its level before `threads` concurrent items."""
    errors: list[Exception] = []

    def one(n: int) -> None:
        try:
            work(f"{base}/item/{n}")
        except Exception as exc:  # raised below: a failed item would make the figure meaningless
            errors.append(exc)

    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
    reset_peak()
    before = memory_kib("VmRSS")
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise RuntimeError(f"{len(errors)} items failed, first: {errors[0]!r}")
    return (memory_kib("VmHWM") - before) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per case; the largest growth is reported")
    parser.add_argument("--baseline", action="store_true", help="also measure the extractor this replaced")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.threads, args.rounds, args.baseline)))
        return
    print("| page | extractor | page KiB | stored KiB | threads | peak growth MiB | per item MiB "
          "| per item / 5 MiB cap |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for baseline in ([False, True] if args.baseline else [False]):
        for case in CASES:
            threads = min(args.threads, BASELINE_THREADS) if baseline else args.threads
            command = [sys.executable, __file__, "--child", case, "--threads", str(threads),
                       "--rounds", str(args.rounds), *(["--baseline"] if baseline else [])]
            row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)  # nosec B603
            print(f"| {row['case']} | {row['extractor']} | {row['page_kib']} | {row['stored_kib']} | {row['threads']} "
                  f"| {row['peak_growth_mib']} | {row['per_item_mib']} | {row['per_item_vs_cap']} |", flush=True)


if __name__ == "__main__":
    main()
