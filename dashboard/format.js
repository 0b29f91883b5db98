// How values read on the page: statuses, instants, durations, progress.

export const JOB_STATUSES = ["pending", "running", "succeeded", "completed_with_errors", "failed", "cancelled", "timed_out"];
export const FINAL_STATUSES = new Set(["succeeded", "completed_with_errors", "failed", "cancelled", "timed_out"]);
export const ITEM_STATUSES = ["pending", "succeeded", "failed", "skipped"];

const LABELS = { completed_with_errors: "completed with errors", timed_out: "timed out" };

export function statusLabel(status) {
  return LABELS[status] ?? status;
}

export function statusBadge(h, status) {
  return h("span", { class: `badge badge-${status}` }, statusLabel(status));
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function instant(value) {
  return value ? dateTime.format(new Date(value)) : "—";
}

export function timeElement(h, value) {
  return value ? h("time", { datetime: value }, instant(value)) : "—";
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

// {total, succeeded, failed, skipped} -> the counts the page shows, pending included.
export function counts(progress) {
  const { total = 0, succeeded = 0, failed = 0, skipped = 0 } = progress;
  const done = succeeded + failed + skipped;
  return { total, succeeded, failed, skipped, done, pending: Math.max(total - done, 0),
           percent: total ? Math.floor((done * 100) / total) : 0 };
}

export function shortId(id) {
  return id.slice(0, 8);
}
