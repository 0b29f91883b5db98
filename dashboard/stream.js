// Following a job live. GET /api/jobs/{id}/events answers long-poll server-sent events: each 200 is a complete
// text/event-stream body. EventSource cannot send a bearer token, so this loop does what it does by hand:
// send Last-Event-ID, honour `retry:`, stop after the final status or on 204, wait Retry-After on 429/503.
// A server without the stream (its route answers a 404 that is not a job-not-found problem) is followed by
// polling GET /api/jobs/{id} instead.
import { ApiError, apiError, apiUrl, authorizedFetch, jobs } from "./api.js";
import { FINAL_STATUSES } from "./format.js";

const DEFAULT_RETRY_MS = 1000;
const POLL_MS = 2000;
const MAX_BACKOFF_MS = 30000;

// Calls `onUpdate({status, final, cancel_requested, total, succeeded, failed, skipped})` on every change and
// `onItem(item)` per finished item, until the job is final or `signal` aborts. Resolves once the job is final.
export async function followJob(jobId, { onUpdate, onItem, onError, signal }) {
  const stream = new EventStream(jobId, signal);
  const outcome = await stream.run({ onUpdate, onItem, onError });
  if (outcome === "unsupported") await pollJob(jobId, { onUpdate, onError, signal });
}

class EventStream {
  constructor(jobId, signal) {
    this.jobId = jobId;
    this.signal = signal;
    this.lastEventId = null;
    this.retryMs = DEFAULT_RETRY_MS;
    this.failures = 0;
    this.state = {};
  }

  async run(handlers) {
    while (!this.signal.aborted) {
      let response;
      try {
        response = await this.request();
      } catch (error) {
        if (this.signal.aborted) return "aborted";
        await this.backOff(null, error, handlers);
        continue;
      }
      if (response.status === 204) return "final";
      if (response.ok) {
        this.failures = 0;
        if (this.dispatch(parseEventStream(await response.text()), handlers)) return "final";
        await sleep(this.retryMs, this.signal);
        continue;
      }
      const error = await apiError(response);
      if (response.status === 404 && !error.isNotFound) return "unsupported";
      if (![429, 503].includes(response.status) && response.status < 500) {
        handlers.onError?.(error);
        return "failed";
      }
      await this.backOff(error.retryAfter, error, handlers);
    }
    return "aborted";
  }

  request() {
    const headers = { Accept: "text/event-stream" };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
    return authorizedFetch(apiUrl(`jobs/${this.jobId}/events`, { items: "all" }), { headers, signal: this.signal });
  }

  // Applies the events of one response; true once the final status has arrived.
  dispatch(parsed, { onUpdate, onItem }) {
    if (parsed.retry !== null) this.retryMs = parsed.retry;
    let final = false;
    for (const event of parsed.events) {
      if (event.id !== null) this.lastEventId = event.id;
      const data = JSON.parse(event.data || "null");
      if (event.type === "status") {
        this.state = { ...this.state, ...data };
        final = final || Boolean(data.final);
      } else if (event.type === "progress") {
        this.state = { ...this.state, ...data };
      } else if (event.type === "item") {
        onItem?.(data);
        continue;
      } else {
        continue;
      }
      onUpdate(this.state);
    }
    return final;
  }

  async backOff(retryAfterSeconds, error, { onError }) {
    this.failures += 1;
    if (this.failures === 3) onError?.(error);
    const exponential = Math.min(DEFAULT_RETRY_MS * 2 ** this.failures, MAX_BACKOFF_MS);
    await sleep(retryAfterSeconds !== null ? retryAfterSeconds * 1000 : exponential, this.signal);
  }
}

// The server-sent events of one complete body: {retry, events: [{id, type, data}]}. Comments (": heartbeat")
// and fields this client does not use are skipped; an event without `event:` is a "message".
export function parseEventStream(text) {
  const result = { retry: null, events: [] };
  let event = { id: null, type: "message", data: [] };
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === "") {
      if (event.data.length) result.events.push({ id: event.id, type: event.type, data: event.data.join("\n") });
      event = { id: null, type: "message", data: [] };
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "id") event.id = value;
    else if (name === "event") event.type = value;
    else if (name === "data") event.data.push(value);
    else if (name === "retry" && /^\d+$/.test(value)) result.retry = Number(value);
  }
  if (event.data.length) result.events.push({ id: event.id, type: event.type, data: event.data.join("\n") });
  return result;
}

async function pollJob(jobId, { onUpdate, onError, signal }) {
  let failures = 0;
  while (!signal.aborted) {
    try {
      const job = await jobs.get(jobId, signal);
      failures = 0;
      const final = FINAL_STATUSES.has(job.status);
      onUpdate({ status: job.status, final, cancel_requested: Boolean(job.cancellation), ...job.progress });
      if (final) return;
      await sleep(POLL_MS, signal);
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500 && ![429, 503].includes(error.status)) {
        onError?.(error);
        return;
      }
      failures += 1;
      if (failures === 3) onError?.(error);
      await sleep(error.retryAfter ? error.retryAfter * 1000 : Math.min(POLL_MS * 2 ** failures, MAX_BACKOFF_MS), signal);
    }
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}
