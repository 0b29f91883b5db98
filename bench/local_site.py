"""The benchmarks' website: deterministic, realistic HTML pages, served from a process of its own.

`/page/<n>` answers 200 with page n (about `--page-kib` KiB: head metadata, navigation, headings,
paragraphs with links, a table, a footer; the same bytes on every run) after holding the response
`--delay-ms`, as a latency-bound real site would. Any other path answers 404. Pages below `--pages`
are built before the port is printed, so that building them never competes with a measured run.

It runs apart from the benchmark so that the site's CPU never shares a GIL with the code measured:
`LocalSite` starts `python bench/local_site.py` and reads the port it prints. It is an asyncio server
speaking HTTP/1.1 with keep-alive, so holding 24 responses costs nothing and each request costs little.

    .venv/bin/python bench/local_site.py --page-kib 40 --delay-ms 200 --pages 1000  # prints the port, serves
"""
from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import psutil

PAGE_PATH = re.compile(r"/page/(\d+)")
SITE_NAME = "Bench Gazette"
WORDS = ["time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state", "family", "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company", "system", "program", "question", "work", "government", "number", "night", "point", "home", "water", "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game", "line", "end", "member", "law", "car", "city", "community", "name", "president", "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face", "others", "level", "office", "door", "health", "person", "art", "war", "history", "party", "result", "change", "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force", "education", "river", "harbour", "bridge", "market", "garden", "library", "winter", "summer", "station"]
SECTIONS = ["news", "sport", "culture", "science", "travel", "business", "opinion", "weather", "food",
            "technology", "health", "books"]


def page_html(n: int, kib: int) -> str:
    """Page n, about `kib` KiB of HTML (a head, navigation and one section at the least); deterministic."""
    rng = random.Random(n)
    title = _sentence(rng, 5, 9).rstrip(".")
    head = _head(n, rng, title)
    top = _header(rng) + _article_top(n, rng, title)
    bottom = _article_bottom(n, rng) + _footer()
    sections = [_first_section(n, rng)]
    size = len(head) + len(top) + len(sections[0]) + len(bottom)
    while size < kib * 1024:
        sections.append(_section(n, rng, with_table=rng.random() < 0.2))
        size += len(sections[-1])
    return head + top + "".join(sections) + bottom


def _sentence(rng: random.Random, shortest: int, longest: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(shortest, longest))
    return " ".join(words).capitalize() + "."


def _link(rng: random.Random, n: int) -> str:
    """An in-text link: mostly to another page of the site, sometimes out and nofollow."""
    words = " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))
    if rng.random() < 0.15:
        href = f"https://elsewhere.example/{rng.choice(WORDS)}/{rng.randint(1, 9999)}"
        return f'<a href="{href}" rel="nofollow">{words}</a>'
    return f'<a href="/page/{(n + rng.randint(1, 500)) % 100_000}">{words}</a>'


def _paragraph(rng: random.Random, n: int) -> str:
    parts = []
    for _ in range(rng.randint(3, 6)):
        sentence = _sentence(rng, 8, 20)
        roll = rng.random()
        if roll < 0.3:
            sentence = f"{sentence} {_link(rng, n)}"
        elif roll < 0.4:
            sentence = f"<em>{sentence}</em>"
        elif roll < 0.5:
            sentence = f"<strong>{sentence}</strong>"
        parts.append(sentence)
    return "<p>" + " ".join(parts) + "</p>\n"


def _head(n: int, rng: random.Random, title: str) -> str:
    description = _sentence(rng, 12, 20)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | {SITE_NAME}</title>
<meta name="description" content="{description}">
<link rel="canonical" href="/page/{n}">
<meta property="og:title" content="{title}">
<meta property="og:description" content="{description}">
<meta property="og:site_name" content="{SITE_NAME}">
<meta property="og:image" content="/images/{n}.jpg">
<meta property="article:published_time" content="2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}T08:00:00Z">
<link rel="stylesheet" href="/static/site.css">
<style>body{{font-family:Georgia,serif;margin:0}}.site-nav a{{padding:0 .5em}}table.data td{{padding:.2em}}</style>
<script>window.dataLayer=window.dataLayer||[];function gtag(){{dataLayer.push(arguments)}}gtag('js',new Date())</script>
</head>
"""


def _header(rng: random.Random) -> str:
    items = "".join(f'<li><a href="/section/{name}">{name.capitalize()}</a></li>' for name in SECTIONS)
    return (f'<body>\n<header class="site-header"><a class="logo" href="/">{SITE_NAME}</a>\n'
            f'<nav class="site-nav"><ul>{items}</ul></nav>\n'
            f'<form action="/search" role="search"><input name="q" placeholder="Search"></form></header>\n')


def _article_top(n: int, rng: random.Random, title: str) -> str:
    section = SECTIONS[n % len(SECTIONS)]
    return (f'<main><article>\n<nav class="breadcrumbs"><a href="/">Home</a> &rsaquo; '
            f'<a href="/section/{section}">{section.capitalize()}</a></nav>\n<h1>{title}</h1>\n'
            f'<p class="byline">By <a href="/authors/{rng.choice(WORDS)}">{rng.choice(WORDS).capitalize()} '
            f'{rng.choice(WORDS).capitalize()}</a> &middot; <time>{n % 28 + 1} March 2024</time></p>\n')


def _first_section(n: int, rng: random.Random) -> str:
    """The one section every page has, kept short so that small pages stay small: a paragraph and a table."""
    return f"<section>\n<h2>{_sentence(rng, 3, 7).rstrip('.')}</h2>\n{_paragraph(rng, n)}{_table(rng)}</section>\n"


def _section(n: int, rng: random.Random, with_table: bool) -> str:
    parts = [f"<section>\n<h2>{_sentence(rng, 3, 7).rstrip('.')}</h2>\n"]
    parts += [_paragraph(rng, n) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.5:
        parts.append(f"<h3>{_sentence(rng, 2, 5).rstrip('.')}</h3>\n{_paragraph(rng, n)}")
    if rng.random() < 0.3:
        items = "".join(f"<li>{_sentence(rng, 4, 10)}</li>" for _ in range(rng.randint(3, 6)))
        parts.append(f"<ul>{items}</ul>\n")
    if with_table:
        parts.append(_table(rng))
    parts.append("</section>\n")
    return "".join(parts)


def _table(rng: random.Random) -> str:
    columns = rng.sample(WORDS, 4)
    header = "".join(f"<th>{word.capitalize()}</th>" for word in columns)
    rows = "".join(
        f"<tr><td>{rng.choice(WORDS)}</td>" + "".join(f"<td>{rng.randint(0, 9999)}</td>" for _ in range(3)) + "</tr>"
        for _ in range(rng.randint(4, 8))
    )
    return f'<table class="data"><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>\n'


def _article_bottom(n: int, rng: random.Random) -> str:
    related = "".join(f"<li>{_link(rng, n)}</li>" for _ in range(6))
    return f'</article>\n<aside class="related"><h2>Related</h2><ul>{related}</ul></aside></main>\n'


def _footer() -> str:
    links = "".join(f'<a href="/{path}">{path.capitalize()}</a> ' for path in ("about", "contact", "privacy", "terms"))
    return (f'<footer><nav>{links}</nav><p>&copy; 2024 {SITE_NAME}. '
            f'<a href="https://social.example/benchgazette" rel="nofollow">Follow us</a></p></footer>\n'
            '<script src="/static/app.js" defer></script>\n</body>\n</html>\n')


class LocalSite:
    """The site in a subprocess: `start()` returns once it listens; `process` is for CPU accounting."""

    def __init__(self, page_kib: int, delay_ms: int, pages: int) -> None:
        self.page_kib = page_kib
        self.delay_ms = delay_ms
        self.pages = pages
        self.port = 0
        self._popen: subprocess.Popen[str] | None = None

    def start(self) -> LocalSite:
        self._popen = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--page-kib", str(self.page_kib), "--delay-ms", str(self.delay_ms),
             "--pages", str(self.pages)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self._popen.stdout is not None
        line = self._popen.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the bench site did not start (printed {line!r})")
        self.port = int(line)
        return self

    @property
    def process(self) -> psutil.Process:
        assert self._popen is not None, "not started"
        return psutil.Process(self._popen.pid)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            self._popen.wait(timeout=10)


async def _serve(page_kib: int, delay_ms: int, pages: int) -> None:
    page = lru_cache(maxsize=None)(lambda n: page_html(n, page_kib).encode())
    for n in range(pages):
        page(n)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.readuntil(b"\r\n\r\n"):
                first, *header_lines = request.decode("latin-1").split("\r\n")
                target = first.split(" ")[1].split("?", 1)[0]
                close = first.endswith("HTTP/1.0") or any(
                    line.lower().replace(" ", "") == "connection:close" for line in header_lines)
                await asyncio.sleep(delay_ms / 1000)
                match = PAGE_PATH.fullmatch(target)
                status, body = ("200 OK", page(int(match[1]))) if match else ("404 Not Found", b"not found")
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}"
                             "\r\n\r\n".encode() + body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection: the normal end of a keep-alive session
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse the command line, print the port, serve until terminated."""
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--page-kib", type=int, default=1, help="about how large each page is")
    options.add_argument("--delay-ms", type=int, default=0, help="how long each response is held")
    options.add_argument("--pages", type=int, default=0, help="how many pages to build before serving")
    args = options.parse_args()
    asyncio.run(_serve(args.page_kib, args.delay_ms, args.pages))


if __name__ == "__main__":
    main()
