"""Hostile pages through the whole app on devhost: results stay bounded, every page error ends its item on the first
delivery with a precise code, and a succeeded item's results tell the truth (no stale error, nothing hidden)."""
from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from shared.domain.pages import MAX_LINKS, MAX_RESULT_BYTES
from shared.services.exports import UTF8_BOM
from tests.e2e.conftest import Trawl
from tests.e2e.site import TestSite
from tests.unit.test_extract_bounds import LONG_BASE_PAGE, LONG_URLS_PAGE, SHORT_LINKS_PAGE

pytestmark = pytest.mark.e2e

HOSTILE = {"/hostile/long-base": LONG_BASE_PAGE, "/hostile/long-urls": LONG_URLS_PAGE,
           "/hostile/short-links": SHORT_LINKS_PAGE}
BROKEN = {"/latin1-location/e2e": ("invalid_redirect", 302), "/encodings/6/e2e": ("unsupported_encoding", 200)}


@pytest.fixture(scope="module")
def finished(trawl: Trawl, site: TestSite) -> dict[str, Any]:
    """One job of the hostile and broken pages and a flaky one, run to its end."""
    site.pages.update({path: (200, html, {}) for path, html in HOSTILE.items()})
    urls = [site.url(path) for path in [*HOSTILE, *BROKEN, "/flaky/hostile-e2e"]]
    return trawl.wait_final(trawl.submit(urls)["id"], seconds=120)


def results(trawl: Trawl, job_id: str, **params: Any) -> Any:
    response = trawl.http.get(f"{trawl.api}/jobs/{job_id}/results", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_hostile_pages_are_stored_bounded_and_say_what_was_left_out(trawl: Trawl, finished: dict[str, Any]) -> None:
    stored = trawl.rows("SELECT seq, status, result_bytes, octet_length(result::text) AS text_bytes, result "
                        "FROM job_items WHERE job_id = %s AND seq < 3 ORDER BY seq", finished["id"])

    assert [row["status"] for row in stored] == ["succeeded"] * 3
    assert all(row["result_bytes"] <= MAX_RESULT_BYTES for row in stored)
    assert all(len(row["result"]["links"]) <= MAX_LINKS and row["result"]["truncated"]["links"] > 0 for row in stored)
    assert stored[0]["result"]["truncated"]["long_urls"] == 1  # the 100 KB <base href>


def test_a_small_results_page_of_hostile_items_is_a_small_body(trawl: Trawl, finished: dict[str, Any]) -> None:
    response = results(trawl, finished["id"], limit=4)

    assert len(response.content) < 4 * MAX_RESULT_BYTES + 16_384
    assert [item["seq"] for item in response.json()["items"]] == [0, 1, 2, 3]


def test_pages_that_can_never_work_fail_on_the_first_delivery_with_a_precise_code(
    trawl: Trawl, finished: dict[str, Any], site: TestSite,
) -> None:
    items = results(trawl, finished["id"], status="failed").json()["items"]

    assert [(item["error"]["code"], item["attempts"], item["http_status"]) for item in items] == [
        (code, 1, status) for code, status in BROKEN.values()]
    assert [item["final_url"] for item in items] == [site.url(path) for path in BROKEN]
    assert all(item["duration_ms"] is not None for item in items)
    assert all("gave up" not in item["error"]["message"] for item in items)


def test_a_succeeded_retry_shows_no_error_and_its_attempt_is_in_the_log(trawl: Trawl,
                                                                       finished: dict[str, Any]) -> None:
    flaky = results(trawl, finished["id"], status="succeeded").json()["items"][-1]
    rows = list(csv.DictReader(io.StringIO(results(trawl, finished["id"], format="csv").text)))
    log = trawl.http.get(f"{trawl.api}/jobs/{finished['id']}/logs", timeout=30).json()["items"]

    assert (flaky["seq"], flaky["attempts"], flaky["error"]) == (5, 3, None)
    assert (rows[5]["status"], rows[5]["error_code"], rows[5]["error_message"]) == ("succeeded", "", "")
    assert [e["data"]["attempt"] for e in log if e["event"] == "item_retried" and e["data"]["seq"] == 5] == [1, 2]


def test_csv_with_bom_opens_as_utf8_in_excel(trawl: Trawl, finished: dict[str, Any]) -> None:
    body = results(trawl, finished["id"], format="csv", bom="true").content

    assert body.startswith(UTF8_BOM.encode()) and body[3:4] == b'"'
    refused = trawl.http.get(f"{trawl.api}/jobs/{finished['id']}/results", params={"bom": "true"}, timeout=30)
    assert refused.status_code == 400
