// The jobs list: newest first, filtered by status, paged with the API's keyset cursors, refreshed every few
// seconds while the tab is visible (one small request; none while the previous one is still out).
import { jobs } from "./api.js";
import { isAdmin } from "./auth.js";
import { h, replace, scrollingTable } from "./dom.js";
import { counts, JOB_STATUSES, shortId, statusBadge, statusLabel, timeElement } from "./format.js";
import { sleep } from "./stream.js";
import { navigate, showAlert } from "./ui.js";

const PAGE_SIZE = 20;
const REFRESH_MS = 4000;
const NUMERIC = new Set(["Succeeded", "Failed", "Skipped"]);

export function jobsPage(main, { params }) {
  document.title = "Jobs · Trawl";
  const status = params.get("status") || "";
  const cursor = params.get("cursor") || "";
  const previous = params.getAll("back");
  const controller = new AbortController();
  const body = h("div", { class: "jobs-body" }, h("p", {}, "Loading jobs…"));
  replace(main,
    h("div", { class: "page-head" },
      h("h1", { tabindex: "-1" }, "Jobs"),
      h("a", { class: "button-primary", href: "#/submit" }, "New job")),
    statusFilter(status),
    body);
  refreshLoop({ status, cursor, previous, body, signal: controller.signal });
  return () => controller.abort();
}

function statusFilter(current) {
  const select = h("select", { id: "status-filter", name: "status" },
    h("option", { value: "" }, "All statuses"),
    JOB_STATUSES.map((s) => h("option", { value: s, selected: s === current }, statusLabel(s))));
  select.addEventListener("change", () => navigate(select.value ? `#/jobs?status=${select.value}` : "#/jobs"));
  return h("div", { class: "filters" }, h("label", { for: "status-filter" }, "Status"), select);
}

async function refreshLoop({ status, cursor, previous, body, signal }) {
  let announcedError = false;
  let shown = null;
  while (!signal.aborted) {
    if (!document.hidden) {
      try {
        const page = await jobs.list({ status, cursor, limit: PAGE_SIZE }, signal);
        const fingerprint = JSON.stringify(page);
        if (fingerprint !== shown) renderPage(body, page, { status, cursor, previous });
        shown = fingerprint;
        announcedError = false;
      } catch (error) {
        if (signal.aborted) return;
        if (!announcedError) showAlert(error);
        announcedError = true;
      }
    }
    await sleep(REFRESH_MS, signal);
  }
}

function renderPage(body, page, { status, cursor, previous }) {
  const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.id : null;
  const admin = isAdmin() && page.items.some((job) => "owner" in job);
  if (!page.items.length) {
    replace(body, h("p", { class: "empty" }, status ? `No ${statusLabel(status)} jobs.` : "No jobs yet. ",
      status ? null : h("a", { href: "#/submit" }, "Submit your first job")));
  } else {
    replace(body, scrollingTable("Jobs table", jobsTable(page.items, admin)), pager(page, { status, cursor, previous }));
  }
  if (focused) document.getElementById(focused)?.focus();
}

function jobsTable(items, admin) {
  return h("table", { class: "data jobs-table" },
    h("caption", { class: "visually-hidden" }, "Your jobs, newest first"),
    h("thead", {}, h("tr", {},
      ["Job", "Status", "Progress", "Succeeded", "Failed", "Skipped", "Created", admin ? "Owner" : null]
        .filter(Boolean).map((title) => h("th", { scope: "col", class: NUMERIC.has(title) ? "num" : null }, title)))),
    h("tbody", {}, items.map((job) => jobRow(job, admin))));
}

function jobRow(job, admin) {
  const c = counts(job.progress);
  const label = `Progress of job ${shortId(job.id)}`;
  return h("tr", { "data-job-id": job.id },
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.id}`, id: `job-link-${job.id}`, class: "mono" }, shortId(job.id))),
    h("td", {}, statusBadge(h, job.status)),
    h("td", { class: "progress-cell" },
      h("progress", { max: String(c.total || 1), value: String(c.done), "aria-label": label }),
      h("span", { class: "progress-text" }, `${c.done} / ${c.total}`)),
    h("td", { class: "num" }, c.succeeded),
    h("td", { class: "num" }, c.failed),
    h("td", { class: "num" }, c.skipped),
    h("td", {}, timeElement(h, job.created_at)),
    admin ? h("td", { class: "mono" }, job.owner ?? "—") : null);
}

function pager(page, { status, cursor, previous }) {
  const base = status ? [["status", status]] : [];
  const links = [];
  if (cursor) {
    const back = previous.slice(0, -1);
    const prior = previous.at(-1);
    const query = new URLSearchParams([...base, ...(prior ? [["cursor", prior]] : []), ...back.map((b) => ["back", b])]);
    links.push(h("a", { href: `#/jobs?${query}`, id: "page-newer", class: "button-secondary" }, "Newer jobs"));
  }
  if (page.next_cursor) {
    const query = new URLSearchParams([...base, ["cursor", page.next_cursor], ...previous.map((b) => ["back", b]),
                                       ...(cursor ? [["back", cursor]] : [["back", ""]])]);
    links.push(h("a", { href: `#/jobs?${query}`, id: "page-older", class: "button-secondary" }, "Older jobs"));
  }
  return links.length ? h("nav", { class: "pager", "aria-label": "Pages of jobs" }, links) : null;
}
