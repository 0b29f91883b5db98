"""The pure text work of pages and search: a tsquery's lexemes, the windows a snippet is cut from, Markdown read as
text, ts_headline's marked output as runs, and unified diffs."""
from __future__ import annotations

import time

from shared.domain.content import ContentFormat
from shared.domain.page_history import (
    MATCH_END,
    MATCH_START,
    SNIPPET_AFTER_CHARS,
    SNIPPET_BEFORE_CHARS,
    SNIPPET_FALLBACK_CHARS,
    SNIPPET_WINDOWS,
    SnippetPart,
    headline_input,
    markdown_as_text,
    query_lexemes,
    snippet_parts,
    snippet_windows,
    unified_diff,
)


def test_query_lexemes_leave_out_excluded_words_and_unquote() -> None:
    form = "'quick' <-> 'brown' & 'fox' | 'dog' & !'cat' & 'o''neil':*"

    assert query_lexemes(form) == ["quick", "brown", "fox", "dog", "o'neil"]


def test_snippet_windows_surround_the_first_matches_of_a_stem() -> None:
    text = "filler " * 3000 + "She was running home. " + "filler " * 3000 + "A run again."

    windows = snippet_windows(text, ["run"])

    assert "She was running home." in windows and "A run again." in windows and " … " in windows
    assert len(windows) < 3000, "two windows, not the 40,000 characters around them"
    assert not windows.startswith("iller") and not windows.endswith("fill"), "no word cut at either end"


def test_snippet_windows_fall_back_to_the_start_and_stay_bounded() -> None:
    text = "Les chevaux " + "x" * 100_000

    assert snippet_windows(text, ["zebra"]) == text[:SNIPPET_FALLBACK_CHARS]
    assert snippet_windows("Les chevaux courent.", ["cheval"]) == "Les chevaux courent.", "stem `chev` found"
    many = " ".join(f"run{n}" for n in range(20_000))
    assert len(snippet_windows(many, ["run"])) <= SNIPPET_WINDOWS * (SNIPPET_BEFORE_CHARS + SNIPPET_AFTER_CHARS + 3)


def test_markdown_reads_as_text_without_markup_or_link_targets() -> None:
    markdown = ("# Title\n\nSome **bold** text with [a link](https://x.test/z) and ![img](a.png).\n\n- item\n"
                "1. first\n> quote\n\n| a | b |\n| --- | --- |\n```\ncode\n```\n")

    text = markdown_as_text(markdown)

    assert "Some bold text with a link and img." in text
    assert not any(mark in text for mark in ("#", "**", "https", "[", "](", "```", "---", "|", "> "))
    assert headline_input(f"a{MATCH_START}b{MATCH_END}\x00c", ContentFormat.TEXT) == "abc"


def test_markdown_is_read_in_linear_time_whatever_its_brackets() -> None:
    for hostile in ("[" * 262_144, "[a](" * 65_536, "](" * 131_072, ("[" + "a" * 150 + "]") * 1_500):
        started = time.perf_counter()
        markdown_as_text(hostile)
        assert time.perf_counter() - started < 0.5, hostile[:10]


def test_snippet_parts_mark_the_matches() -> None:
    headline = f"the {MATCH_START}pilot{MATCH_END} and the {MATCH_START}harbour{MATCH_END}"

    assert snippet_parts(headline) == [SnippetPart("the ", False), SnippetPart("pilot", True),
                                       SnippetPart(" and the ", False), SnippetPart("harbour", True)]
    assert snippet_parts("no match") == [SnippetPart("no match", False)]


def test_unified_diff_of_an_added_line_and_of_equal_texts() -> None:
    diff = unified_diff("a\nb", "a\nb\nc\n", "old", "new", 3)

    assert diff == "--- old\n+++ new\n@@ -1,2 +1,3 @@\n a\n b\n+c\n"
    assert unified_diff("same\n", "same", "old", "new", 3) == ""
