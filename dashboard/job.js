// One job: its live progress (from the event stream, or polling where the server has none), what can be done
// with it (cancel with a reason, retry its failed items), its items with their errors and extracted pages,
// and its audit log.
import { jobs } from "./api.js";
import { h, replace, scrollingTable } from "./dom.js";
import { counts, duration, FINAL_STATUSES, ITEM_STATUSES, shortId, statusBadge, timeElement } from "./format.js";
import { followJob } from "./stream.js";
import { navigate, showAlert, showNotice } from "./ui.js";

const ITEMS_PER_PAGE = 50;
const ITEMS_REFRESH_MS = 2000;
const NUMERIC = new Set(["#", "HTTP", "Duration", "Attempts"]);

export function jobPage(main, { match }) {
  const jobId = match[1].toLowerCase();
  document.title = `Job ${shortId(jobId)} · Trawl`;
  const controller = new AbortController();
  replace(main, h("h1", { tabindex: "-1" }, `Job ${shortId(jobId)}`), h("p", {}, "Loading…"));
  load(main, jobId, controller.signal);
  return () => controller.abort();
}

async function load(main, jobId, signal) {
  let job;
  try {
    job = await jobs.get(jobId, signal);
  } catch (error) {
    if (signal.aborted) return;
    if (error.status === 404) renderNotFound(main, jobId);
    else showAlert(error);
    return;
  }
  const view = new JobView(main, job, signal);
  view.render();
  followJob(jobId, {
    signal,
    onUpdate: (state) => view.update(state),
    onItem: () => view.items.refreshSoon(),
    onError: (error) => showAlert(error, { heading: "Live progress stopped" }),
  });
}

function renderNotFound(main, jobId) {
  document.title = "Job not found · Trawl";
  replace(main, h("h1", { tabindex: "-1" }, "Job not found"),
    h("p", {}, "No job ", h("code", {}, jobId), " exists, or it is not yours to see."),
    h("p", {}, h("a", { href: "#/jobs" }, "Back to your jobs")));
}

class JobView {
  constructor(main, job, signal) {
    this.main = main;
    this.job = job;
    this.signal = signal;
    this.state = { status: job.status, cancel_requested: Boolean(job.cancellation), ...job.progress };
    this.badge = h("span", { id: "job-status" });
    this.progress = h("progress", { id: "job-progress", "aria-labelledby": "progress-heading" });
    this.progressText = h("p", { id: "progress-text", class: "progress-text" });
    this.countList = h("dl", { class: "counts", id: "job-counts" });
    this.actions = h("div", { class: "actions", id: "job-actions" });
    this.meta = h("dl", { class: "meta", id: "job-meta" });
    this.items = new ItemsSection(job.id, signal);
    this.log = new LogSection(job.id, signal);
  }

  render() {
    const job = this.job;
    replace(this.main,
      h("div", { class: "page-head" },
        h("h1", { tabindex: "-1" }, "Job ", h("span", { class: "mono" }, shortId(job.id))),
        this.badge),
      this.meta,
      h("section", { class: "panel", "aria-labelledby": "progress-heading" },
        h("h2", { id: "progress-heading" }, "Progress"),
        this.progress, this.progressText, this.countList, this.actions),
      this.items.element(),
      this.log.element());
    this.renderMeta();
    this.update(this.state);
    this.items.load();
    this.log.load();
  }

  update(state) {
    const previous = this.state.status;
    this.state = { ...this.state, ...state };
    const c = counts(this.state);
    this.progress.max = c.total || 1;
    this.progress.value = c.total ? c.done : 0;
    this.progressText.textContent = `${c.done} of ${c.total} URLs done (${c.percent} %)`;
    replace(this.badge, statusBadge(h, this.state.status),
      this.state.cancel_requested && !this.final ? h("span", { class: "badge badge-cancelled" }, "cancel requested") : null);
    replace(this.countList,
      ["succeeded", "failed", "skipped", "pending"].map((name) =>
        h("div", { class: `count count-${name}` }, h("dt", {}, name), h("dd", { id: `count-${name}` }, c[name]))));
    this.renderActions();
    if (previous !== this.state.status) {
      this.reloadMeta();
      this.log.load();
      if (this.final) this.items.refreshSoon(0);
    }
  }

  renderMeta() {
    const job = this.job;
    replace(this.meta,
      term("Id", h("code", {}, job.id)),
      term("Created", timeElement(h, job.created_at)),
      term("Started", timeElement(h, job.started_at)),
      term("Finished", timeElement(h, job.finished_at)),
      term("Deadline", timeElement(h, job.deadline_at)),
      job.merged_duplicates ? term("Duplicates merged", job.merged_duplicates) : null,
      job.parent_job_id ? term("Retry of", jobLink(job.parent_job_id)) : null,
      job.children.length ? term("Retried in", job.children.map((id) => [jobLink(id), " "])) : null);
  }

  // Start and finish times change with the status: read the job again when it does.
  async reloadMeta() {
    try {
      this.job = await jobs.get(this.job.id, this.signal);
      this.renderMeta();
    } catch (error) {
      if (!this.signal.aborted) showAlert(error);
    }
  }

  get final() {
    return FINAL_STATUSES.has(this.state.status);
  }

  renderActions() {
    if (this.actions.contains(document.activeElement) && this.actions.dataset.status === this.state.status) return;
    this.actions.dataset.status = this.state.status;
    const c = counts(this.state);
    if (!this.final && !this.state.cancel_requested) replace(this.actions, this.cancelForm());
    else if (this.final && c.failed + c.skipped > 0) replace(this.actions, this.retryForm(c));
    else this.actions.replaceChildren();
  }

  cancelForm() {
    const reason = h("input", { id: "cancel-reason", name: "reason", type: "text", maxlength: "500" });
    const form = h("form", { class: "inline-form", "aria-label": "Cancel this job" },
      h("div", { class: "field" }, h("label", { for: "cancel-reason" }, "Reason for cancelling (optional, kept in the audit log)"), reason),
      h("button", { type: "submit", class: "button-danger" }, "Cancel job"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelector("button").disabled = true;
      try {
        const job = await jobs.cancel(this.job.id, reason.value.trim());
        this.update({ status: job.status, cancel_requested: true, ...job.progress });
        showNotice("Cancellation requested: items not yet fetched will be skipped.");
      } catch (error) {
        showAlert(error);
        form.querySelector("button").disabled = false;
      }
    });
    return form;
  }

  retryForm(c) {
    const includeSkipped = h("input", { id: "retry-skipped", type: "checkbox" });
    const form = h("form", { class: "inline-form", "aria-label": "Retry this job" },
      c.skipped ? h("div", { class: "check" }, includeSkipped, h("label", { for: "retry-skipped" }, `Retry the ${c.skipped} skipped items too`)) : null,
      h("button", { type: "submit", class: "button-primary" }, `Retry ${c.failed} failed items in a new job`));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      form.querySelector("button").disabled = true;
      try {
        const retry = await jobs.retry(this.job.id, includeSkipped.checked);
        navigate(`#/jobs/${retry.id}`);
      } catch (error) {
        showAlert(error);
        form.querySelector("button").disabled = false;
      }
    });
    return form;
  }
}

class ItemsSection {
  constructor(jobId, signal) {
    this.jobId = jobId;
    this.signal = signal;
    this.status = "";
    this.cursors = [""];
    this.timer = null;
    this.body = h("div", { id: "items-body" }, h("p", {}, "Loading items…"));
    this.preview = h("div", { id: "item-preview", class: "preview", tabindex: "-1", hidden: true });
  }

  element() {
    const filter = h("select", { id: "items-filter" }, h("option", { value: "" }, "All outcomes"),
      ITEM_STATUSES.map((s) => h("option", { value: s }, s)));
    filter.addEventListener("change", () => {
      this.status = filter.value;
      this.cursors = [""];
      this.load();
    });
    return h("section", { class: "panel", "aria-labelledby": "items-heading" },
      h("h2", { id: "items-heading" }, "Items"),
      h("div", { class: "filters" }, h("label", { for: "items-filter" }, "Outcome"), filter),
      this.body, this.preview);
  }

  // After items finish, reload the first page at most every ITEMS_REFRESH_MS; later pages stay as they are.
  refreshSoon(delay = ITEMS_REFRESH_MS) {
    if (this.cursors.length > 1 || this.signal.aborted) return;
    if (delay === 0) {
      clearTimeout(this.timer);
      this.timer = null;
      this.load();
    } else if (this.timer === null) {
      this.timer = setTimeout(() => { this.timer = null; this.load(); }, delay);
    }
  }

  async load() {
    const cursor = this.cursors.at(-1);
    const ticket = (this.ticket = (this.ticket ?? 0) + 1);
    try {
      const page = await jobs.results(this.jobId, { status: this.status, cursor, limit: ITEMS_PER_PAGE }, this.signal);
      if (ticket === this.ticket) this.render(page);
    } catch (error) {
      if (!this.signal.aborted) showAlert(error);
    }
  }

  render(page) {
    if (!page.items.length) {
      replace(this.body, h("p", { class: "empty" }, this.status ? `No ${this.status} items.` : "No items."));
      return;
    }
    const table = h("table", { class: "data items-table" },
      h("caption", { class: "visually-hidden" }, "Items of this job in submission order"),
      h("thead", {}, h("tr", {}, ["#", "URL", "Outcome", "HTTP", "Duration", "Attempts", "Error", "Result"]
        .map((title) => h("th", { scope: "col", class: NUMERIC.has(title) ? "num" : null }, title)))),
      h("tbody", {}, page.items.map((item) => this.row(item))));
    const pager = [];
    if (this.cursors.length > 1) pager.push(this.pageButton("Previous items", () => this.cursors.pop()));
    if (page.next_cursor) pager.push(this.pageButton("Next items", () => this.cursors.push(page.next_cursor)));
    replace(this.body, scrollingTable("Items table", table),
      pager.length ? h("div", { class: "pager" }, pager) : null);
  }

  row(item) {
    const error = item.error ? [h("code", {}, item.error.code ?? "error"), item.error.message ? ` ${item.error.message}` : ""] : "—";
    const preview = item.result
      ? h("button", { type: "button", class: "button-link", onclick: () => this.showPreview(item) },
        "Preview", h("span", { class: "visually-hidden" }, ` item ${item.seq}`))
      : "—";
    return h("tr", { "data-seq": item.seq, "data-status": item.status },
      h("td", { class: "num" }, item.seq),
      h("td", { class: "url" }, item.url),
      h("td", {}, h("span", { class: `badge badge-${item.status}` }, item.status)),
      h("td", { class: "num" }, item.http_status ?? "—"),
      h("td", { class: "num" }, duration(item.duration_ms)),
      h("td", { class: "num" }, item.attempts),
      h("td", { class: "error" }, error),
      h("td", {}, preview));
  }

  pageButton(label, move) {
    return h("button", { type: "button", class: "button-secondary", onclick: () => { move(); this.load(); } }, label);
  }

  showPreview(item) {
    const r = item.result;
    replace(this.preview,
      h("h3", {}, `Item ${item.seq}: `, r.title || "(no title)"),
      h("dl", { class: "meta" },
        term("Final URL", r.final_url),
        term("Description", r.description || "—"),
        term("Language", r.lang || "—"),
        term("Canonical", r.canonical || "—"),
        term("Words", r.word_count),
        term("Links", r.links.length),
        term("Headings", [...r.headings.h1, ...r.headings.h2].slice(0, 6).join(" · ") || "—"),
        term("Fetched in", duration(r.elapsed_ms))),
      h("p", { class: "excerpt" }, r.excerpt || ""),
      h("button", { type: "button", class: "button-secondary", onclick: () => { this.preview.hidden = true; } }, "Close preview"));
    this.preview.hidden = false;
    this.preview.focus();
  }
}

class LogSection {
  constructor(jobId, signal) {
    this.jobId = jobId;
    this.signal = signal;
    this.after = 0;
    this.loading = false;
    this.rows = h("tbody", {});
    this.more = h("div", {});
  }

  element() {
    const table = h("table", { class: "data log-table" },
      h("caption", { class: "visually-hidden" }, "Audit log, oldest first"),
      h("thead", {}, h("tr", {}, ["When", "Event", "By", "Reason", "Details"].map((t) => h("th", { scope: "col" }, t)))),
      this.rows);
    return h("section", { class: "panel", "aria-labelledby": "log-heading" },
      h("h2", { id: "log-heading" }, "Audit log"), scrollingTable("Audit log table", table), this.more);
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.again = false;
    try {
      const page = await jobs.logs(this.jobId, { after: this.after, limit: 100 }, this.signal);
      this.after = page.next_after;
      this.rows.append(...page.items.map((e) => h("tr", {},
        h("td", {}, timeElement(h, e.at)), h("td", {}, e.event.replaceAll("_", " ")),
        h("td", { class: "mono" }, e.actor), h("td", {}, e.reason ?? ""), h("td", {}, details(e.data)))));
      replace(this.more, page.has_more
        ? h("button", { type: "button", class: "button-secondary", onclick: () => this.load() }, "Load more events") : null);
    } catch (error) {
      if (!this.signal.aborted) showAlert(error);
    } finally {
      this.loading = false;
      if (this.again && !this.signal.aborted) this.load();
    }
  }
}

// An event's data as "name: value" pairs (nested values as JSON).
function details(data) {
  return Object.entries(data ?? {})
    .map(([name, value]) => `${name.replaceAll("_", " ")}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
    .join(", ");
}

function term(name, ...value) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, value));
}

function jobLink(id) {
  return h("a", { href: `#/jobs/${id}`, class: "mono" }, shortId(id));
}
