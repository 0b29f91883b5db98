"""The dashboard as a person uses it, in Chromium, on the whole app: dev sign-in, submitting from the form and
watching the job finish live, cancelling, another user's jobs, API errors, the CSP, accessibility (axe-core) and
a phone-sized screen. Tests wait for what the page shows (Playwright's expect), never for a fixed time."""
from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import requests
from playwright.sync_api import FilePayload, Page, Route, expect

from tests.browser.conftest import PHONE, Dashboard
from tests.e2e.conftest import Trawl, session_for
from tests.e2e.site import TestSite

pytestmark = pytest.mark.e2e

JOB_URL = re.compile(r"#/jobs/[0-9a-f-]{36}$")
FINISH_SECONDS = 90
AXE_SCRIPT = (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")
BLOCKING_IMPACTS = ("serious", "critical")
# "fits" when nothing sticks out of the window sideways (a table scrolls inside its own region), else what does.
FITS = """(() => {
  const wide = [...document.querySelectorAll("body *")].find((e) => e.getBoundingClientRect().right > innerWidth + 1
    && !e.parentElement.closest(".table-scroll") && !e.closest(".visually-hidden"));
  if (wide) return `<${wide.tagName.toLowerCase()} class="${wide.className}"> ends at ${wide.getBoundingClientRect().right}px`;
  return document.documentElement.scrollWidth <= innerWidth ? "fits" : `the page is ${document.documentElement.scrollWidth}px wide`;
})()"""


@pytest.fixture(scope="module", autouse=True)
def release_held_pages(site: TestSite) -> Iterator[None]:
    """Pages under /held/ answer once the module is done, so devhost's workers are free to stop."""
    yield
    site.released.set()


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    page.evaluate(AXE_SCRIPT)
    results: dict[str, Any] = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes']]}"
            for v in results["violations"] if v["impact"] in BLOCKING_IMPACTS]


def test_a_job_submitted_from_the_form_is_followed_live_to_100_percent(dashboard: Dashboard, site: TestSite) -> None:
    page = dashboard.page
    dashboard.sign_in("submitter")
    page.get_by_role("link", name="New job").first.click()
    urls = [site.url(f"/page/{n}") for n in range(5)]
    page.get_by_label("URLs, one per line").fill("\n".join(urls[:2]))
    csv = "\n".join(f"{n},{url},note" for n, url in enumerate(urls[2:])).encode()
    upload: FilePayload = {"name": "urls.csv", "mimeType": "text/csv", "buffer": csv}
    page.get_by_label("Or read the URLs from a file").set_input_files(files=[upload])
    expect(page.get_by_label("URLs, one per line")).to_have_value("\n".join(urls))
    page.get_by_label("Deadline in seconds (optional)").fill("600")
    dashboard.screenshot("submit", readme=True)
    page.evaluate("window.__sameDocument = true")

    page.get_by_role("button", name="Submit job").click()

    expect(page).to_have_url(JOB_URL)
    expect(page.locator("#progress-text")).to_have_text("5 of 5 URLs done (100 %)", timeout=FINISH_SECONDS * 1000)
    expect(page.locator("#job-progress")).to_have_attribute("value", "5")
    expect(page.locator("#job-status .badge").first).to_have_text("succeeded")
    expect(page.locator("#count-succeeded")).to_have_text("5")
    expect(page.locator("#items-body tbody tr[data-status=succeeded]")).to_have_count(5)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    page.get_by_role("button", name="Preview item 0").click()
    expect(page.locator("#item-preview")).to_contain_text("Page 0")
    expect(page.get_by_role("table", name="Audit log, oldest first")).to_contain_text("finished")
    dashboard.screenshot("job", readme=True)
    assert dashboard.csp_violations() == []


def test_a_failed_item_shows_its_error_and_the_job_can_be_retried(dashboard: Dashboard, trawl: Trawl,
                                                                  site: TestSite) -> None:
    dashboard.sign_in("retrier")
    job = session_for("retrier").post(f"{trawl.api}/jobs", timeout=30, json={
        "urls": [site.url("/page/7"), site.url("/always500/retry")]}).json()
    page = dashboard.page
    dashboard.open(f"#/jobs/{job['id']}")

    expect(page.locator("#job-status .badge").first).to_have_text("completed with errors",
                                                                  timeout=FINISH_SECONDS * 1000)
    failed = page.locator("#items-body tbody tr[data-status=failed]")
    expect(failed).to_contain_text("http_error")
    expect(failed).to_contain_text("500")
    page.get_by_role("button", name="Retry 1 failed items in a new job").click()

    expect(page).to_have_url(re.compile(rf"#/jobs/(?!{job['id']})[0-9a-f-]{{36}}$"))
    expect(page.get_by_text("Retry of")).to_be_visible()
    expect(page.locator("main")).to_contain_text(job["id"][:8])
    assert dashboard.csp_violations() == []


def test_a_running_job_is_cancelled_with_a_reason(dashboard: Dashboard, trawl: Trawl, site: TestSite) -> None:
    dashboard.sign_in("canceller")
    job = session_for("canceller").post(f"{trawl.api}/jobs", timeout=30, json={
        "urls": [site.url(f"/held/cancel-{n}") for n in range(3)]}).json()
    page = dashboard.page
    dashboard.open(f"#/jobs/{job['id']}")
    expect(page.locator("#job-status .badge").first).to_have_text("running")

    page.get_by_label("Reason for cancelling (optional, kept in the audit log)").fill("wrong list")
    page.get_by_role("button", name="Cancel job").click()

    expect(page.locator("#job-status .badge").first).to_have_text("cancelled", timeout=FINISH_SECONDS * 1000)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    cancelled = session_for("canceller").get(f"{trawl.api}/jobs/{job['id']}", timeout=30).json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancellation"]["reason"] == "wrong list"
    expect(page.get_by_role("table", name="Audit log, oldest first")).to_contain_text("wrong list")


def test_another_users_job_is_not_listed_and_its_page_says_not_found(dashboard: Dashboard, trawl: Trawl,
                                                                    site: TestSite) -> None:
    theirs = session_for("bob").post(f"{trawl.api}/jobs", json={"urls": [site.url("/page/1")]}, timeout=30).json()
    mine = session_for("carol").post(f"{trawl.api}/jobs", json={"urls": [site.url("/page/2")]}, timeout=30).json()
    page = dashboard.page
    dashboard.sign_in("carol")

    expect(page.locator(f"#job-link-{mine['id']}")).to_be_visible()
    expect(page.locator(f"#job-link-{theirs['id']}")).to_have_count(0)
    dashboard.open(f"#/jobs/{theirs['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Job not found")
    expect(page.locator("main")).to_contain_text(theirs["id"])

    page.get_by_role("button", name="Sign out").click()
    dashboard.sign_in("operator", roles=("Jobs.Read", "Jobs.Admin"))
    expect(page.locator(f"#job-link-{theirs['id']}")).to_be_visible()


def test_api_problems_are_shown_in_the_alert_region(dashboard: Dashboard, site: TestSite) -> None:
    page = dashboard.page
    dashboard.sign_in("typo")
    dashboard.open("#/submit")
    page.get_by_label("URLs, one per line").fill(f"{site.url('/page/1')}\n\nftp://example.com/file")

    page.get_by_role("button", name="Submit job").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not valid")
    expect(alert).to_contain_text("line 3: ftp://example.com/file is not an absolute http(s) URL")
    expect(page).to_have_url(re.compile(r"#/submit$"))


def test_a_reader_without_submit_rights_sees_the_apis_403(dashboard: Dashboard, site: TestSite) -> None:
    page = dashboard.page
    dashboard.sign_in("reader", roles=("Jobs.Read",))
    dashboard.open("#/submit")
    page.get_by_label("URLs, one per line").fill(site.url("/page/1"))
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_role("alert")).to_contain_text("Jobs.Submit")


def test_the_dashboard_is_served_with_its_security_headers(trawl: Trawl) -> None:
    index = requests.get(f"{trawl.host.base_url}/api/app/", timeout=30)
    csp = index.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert index.headers["Cache-Control"] == "no-cache"
    script = re.search(r'src="\./(app\.[0-9a-f]{12}\.js)"', index.text)
    assert script, index.text
    asset = requests.get(f"{trawl.host.base_url}/api/app/{script[1]}", timeout=30)
    assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert asset.headers["Content-Security-Policy"] == csp
    assert requests.get(f"{trawl.host.base_url}/api/app/config.json", timeout=30).json()["sign_in"] == "dev"


def test_every_page_passes_axe_and_runs_under_the_csp(dashboard: Dashboard, trawl: Trawl, site: TestSite) -> None:
    page = dashboard.page
    dashboard.open("#/signin")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    found = {"sign-in": serious_violations(page)}
    dashboard.sign_in("auditor")
    job = session_for("auditor").post(f"{trawl.api}/jobs", timeout=30, json={
        "urls": [site.url("/page/3"), site.url("/always500/axe"), site.url("/page/4")]}).json()
    expect(page.locator(f"#job-link-{job['id']}")).to_be_visible()
    found["jobs"] = serious_violations(page)
    dashboard.open(f"#/jobs/{job['id']}")
    expect(page.locator("#job-status .badge").first).to_have_text("completed with errors",
                                                                  timeout=FINISH_SECONDS * 1000)
    expect(page.locator("#items-body tbody tr")).to_have_count(3)
    found["job"] = serious_violations(page)
    dashboard.open("#/submit")
    expect(page.get_by_role("button", name="Submit job")).to_be_visible()
    found["submit"] = serious_violations(page)

    assert found == {"sign-in": [], "jobs": [], "job": [], "submit": []}
    assert dashboard.csp_violations() == []


def test_the_dashboard_is_keyboard_usable(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("#/signin")
    expect(page.get_by_label("User name")).to_be_visible()
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "dev-user":
            break
    page.keyboard.press("Control+A")
    page.keyboard.type("keyboard")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1, name="Jobs")).to_be_focused()
    expect(page.locator("#user")).to_contain_text("keyboard")
    page.reload()
    expect(page.get_by_role("heading", level=1, name="Jobs")).to_be_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_the_job_page_fits_a_phone_screen(dashboard: Dashboard, trawl: Trawl, site: TestSite) -> None:
    page = dashboard.page
    page.set_viewport_size(PHONE)
    dashboard.sign_in("phone")
    job = session_for("phone").post(f"{trawl.api}/jobs", timeout=30, json={
        "urls": [site.url(f"/page/{n}?a-rather-long-query-string-that-does-not-wrap={n}") for n in range(3)]}).json()
    expect(page.locator(f"#job-link-{job['id']}")).to_be_visible()
    assert page.evaluate(FITS) == "fits"
    dashboard.screenshot("jobs-phone")
    dashboard.open(f"#/jobs/{job['id']}")
    expect(page.locator("#progress-text")).to_have_text("3 of 3 URLs done (100 %)", timeout=FINISH_SECONDS * 1000)
    expect(page.locator("#items-body tbody tr")).to_have_count(3)

    assert page.evaluate(FITS) == "fits"
    items = page.get_by_role("region", name="Items table")
    assert items.evaluate("(region) => region.scrollWidth > region.clientWidth"), "the items table should scroll"
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    dashboard.screenshot("job-phone", readme=True)


def test_the_jobs_list_filters_by_status_and_pages(dashboard: Dashboard, trawl: Trawl, site: TestSite) -> None:
    http = session_for("pager")
    ids = [http.post(f"{trawl.api}/jobs", json={"urls": [site.url(f"/page/{n}")]}, timeout=30).json()["id"]
           for n in range(23)]
    page = dashboard.page
    dashboard.sign_in("pager")
    expect(page.locator("tbody tr")).to_have_count(20)
    expect(page.locator(f"#job-link-{ids[-1]}")).to_be_visible()
    dashboard.screenshot("jobs", readme=True)
    page.get_by_role("link", name="Older jobs").click()
    expect(page.locator("tbody tr")).to_have_count(3)
    expect(page.locator(f"#job-link-{ids[0]}")).to_be_visible()
    page.get_by_role("link", name="Newer jobs").click()
    expect(page.locator(f"#job-link-{ids[-1]}")).to_be_visible()

    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_text("No failed jobs.")).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    expect(page.locator("tbody tr")).to_have_count(20, timeout=FINISH_SECONDS * 1000)


def test_without_the_event_stream_the_job_page_polls(dashboard: Dashboard, trawl: Trawl, site: TestSite) -> None:
    asked: list[str] = []

    def no_stream(route: Route) -> None:  # as a server without the route answers: 404, not a problem document
        asked.append(route.request.url)
        route.fulfill(status=404, body="")

    dashboard.page.route("**/api/jobs/*/events*", no_stream)
    dashboard.sign_in("poller")
    job = session_for("poller").post(f"{trawl.api}/jobs", timeout=30, json={
        "urls": [site.url(f"/slow/poll-{n}") for n in range(3)]}).json()
    dashboard.open(f"#/jobs/{job['id']}")

    expect(dashboard.page.locator("#progress-text")).to_have_text("3 of 3 URLs done (100 %)",
                                                                  timeout=FINISH_SECONDS * 1000)
    expect(dashboard.page.locator("#job-status .badge").first).to_have_text("succeeded")
    assert len(asked) == 1


def test_the_stream_is_resumed_after_a_503_with_the_last_event_id(dashboard: Dashboard, trawl: Trawl,
                                                                  site: TestSite) -> None:
    cursors: list[str | None] = []

    def unavailable_once(route: Route) -> None:
        cursors.append(route.request.headers.get("last-event-id"))
        if len(cursors) == 2:
            route.fulfill(status=503, headers={"Retry-After": "1", "Content-Type": "application/problem+json"},
                          body='{"title": "Service unavailable", "status": 503, "detail": "try again"}')
        else:
            route.continue_()

    dashboard.page.route("**/api/jobs/*/events*", unavailable_once)
    dashboard.sign_in("resumer")
    job = session_for("resumer").post(f"{trawl.api}/jobs", timeout=30, json={
        "urls": [site.url(f"/hang/resume-{n}") for n in range(2)]}).json()  # 8 s: time for three requests
    dashboard.open(f"#/jobs/{job['id']}")

    expect(dashboard.page.locator("#job-status .badge").first).to_have_text("succeeded", timeout=FINISH_SECONDS * 1000)
    expect(dashboard.page.locator("#progress-text")).to_have_text("2 of 2 URLs done (100 %)")
    assert cursors[0] is None
    assert len(cursors) >= 3 and cursors[1] is not None and cursors[2] == cursors[1], cursors
