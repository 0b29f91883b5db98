// The submit form: URLs pasted one per line or read from a .txt or .csv file in the browser (nothing is
// uploaded but the URLs), plus the job's options (SubmitJobRequest: deadline_seconds, skip_invalid_urls).
import { jobs } from "./api.js";
import { announce, field, h, replace } from "./dom.js";
import { navigate, noticeOnNextPage, showAlert } from "./ui.js";

const URL_IN_TEXT = /https?:\/\/[^\s,;"'<>]+/gi;

export function submitPage(main) {
  document.title = "New job · Trawl";
  const urls = h("textarea", { id: "urls", name: "urls", rows: "10", spellcheck: "false", autocomplete: "off",
                               placeholder: "https://example.com/\nhttps://www.python.org/" });
  const file = h("input", { id: "urls-file", name: "file", type: "file", accept: ".txt,.csv,text/plain,text/csv" });
  const deadline = h("input", { id: "deadline", name: "deadline_seconds", type: "number", min: "10", step: "1", inputmode: "numeric" });
  const skip = h("input", { id: "skip-invalid", name: "skip_invalid_urls", type: "checkbox" });
  const button = h("button", { type: "submit", class: "button-primary" }, "Submit job");
  const form = h("form", { class: "panel form", novalidate: true, "aria-labelledby": "submit-heading" },
    field("URLs, one per line", urls, "Absolute http(s) URLs. A URL given twice is scraped once."),
    field("Or read the URLs from a file", file, "A .txt or .csv file; every http(s) URL in it is added to the list above."),
    field("Deadline in seconds (optional)", deadline, "The job ends timed out this long after it is submitted; empty for the service's default."),
    h("div", { class: "check" }, skip, h("label", { for: "skip-invalid" },
      "Skip URLs that cannot be scraped and submit the others (otherwise the whole job is refused)")),
    button);
  file.addEventListener("change", () => readFile(file, urls));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit({ urls, deadline, skip, button });
  });
  replace(main, h("h1", { id: "submit-heading", tabindex: "-1" }, "New job"), form);
}

async function readFile(input, textarea) {
  const [chosen] = input.files;
  if (!chosen) return;
  const found = (await chosen.text()).match(URL_IN_TEXT) ?? [];
  if (!found.length) {
    showAlert({ title: "No URLs found", detail: `${chosen.name} holds no http(s) URL.` });
    return;
  }
  const current = textarea.value.trim();
  textarea.value = [current, ...found].filter(Boolean).join("\n");
  announce(`Added ${found.length} URLs from ${chosen.name}.`);
}

async function submit({ urls, deadline, skip, button }) {
  const lines = urls.value.split("\n").map((line, index) => ({ url: line.trim(), line: index + 1 })).filter((l) => l.url);
  if (!lines.length) {
    showAlert({ title: "No URLs", detail: "Paste at least one URL, one per line." });
    urls.focus();
    return;
  }
  const body = { urls: lines.map((l) => l.url), skip_invalid_urls: skip.checked, options: {} };
  if (deadline.value) body.options.deadline_seconds = Number(deadline.value);
  button.disabled = true;
  try {
    const job = await jobs.submit(body, crypto.randomUUID());
    if (job.refused_urls?.length) {
      const refused = job.refused_urls.map((r) => `line ${lines[r.index].line} (${r.reason})`).join("; ");
      noticeOnNextPage(`${job.refused_urls.length} URLs were left out: ${refused}.`);
    }
    navigate(`#/jobs/${job.id}`);
  } catch (error) {
    showAlert(withLineNumbers(error, lines));
    button.disabled = false;
  }
}

// A validation error names a URL by its index (loc ["urls", 3]): say which line of the text box it is.
function withLineNumbers(error, lines) {
  const errors = (error.errors || []).map((e) => {
    const [where, index] = e.loc || [];
    return where === "urls" && Number.isInteger(index) && lines[index]
      ? { loc: [`line ${lines[index].line}`], msg: `${lines[index].url} ${e.msg}` }
      : e;
  });
  return { title: error.title, detail: error.detail || error.message, errors };
}
