// Workers and queues: the worker processes that report themselves (GET /v1/workers), and
// per queue the dispatches waiting for one, with the oldest's wait.

import { get } from "../api.js";
import { chip, errorBox, every, fmtDuration, fmtTime, h, mount, span } from "../dom.js";

const REFRESH_MS = 3000;

function workerRows(workers) {
  return workers.map((w) => h("tr", { "data-worker": w.id, class: w.silent ? "silent" : null },
    h("td", { class: "mono" }, w.id),
    h("td", { class: "worker-state" }, chip(w.silent ? "silent" : "alive")),
    h("td", {}, `${w.host} · pid ${w.pid}`),
    h("td", { class: "worker-queues" }, w.queues.join(", ")),
    h("td", { class: "worker-handlers" }, w.handlers.length ? w.handlers.join(", ") : h("span", { class: "muted" }, "none")),
    h("td", { class: "worker-load" }, `${w.inflight} / ${w.concurrency}`),
    h("td", { class: "worker-seen", title: fmtTime(w.last_seen) }, `${fmtDuration(span(w.last_seen))} ago`),
    h("td", {}, fmtTime(w.started_at))));
}

function queueRows(queues) {
  return queues.map((q) => h("tr", { "data-queue": q.queue },
    h("td", { class: "mono" }, q.queue),
    h("td", { class: "queue-workers" }, q.workers ? String(q.workers) : chip("no worker")),
    h("td", { class: "queue-waiting" }, String(q.waiting)),
    h("td", { class: "queue-oldest", title: fmtTime(q.oldest_waiting_since) },
      q.oldest_waiting_since ? `${fmtDuration(span(q.oldest_waiting_since))} (since ${fmtTime(q.oldest_waiting_since)})` : "—")));
}

const table = (cls, heads, rows) => h("div", { class: "table-wrap" }, h("table", { class: cls },
  h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))), h("tbody", {}, rows)));

export function render(root) {
  const box = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  mount(root, h("div", { class: "page-head" }, h("h1", {}, "Workers"), h("span", { class: "live" }, "live")), box);

  async function load() {
    const body = await get("/v1/workers");
    const alive = body.workers.filter((w) => !w.silent).length;
    mount(box,
      h("section", { class: "card" }, h("h2", {}, `Worker processes (${alive} alive)`),
        h("p", { class: "muted" }, `Each reports every ${body.report_interval_seconds} s; one silent for three reports shows as silent.`),
        body.workers.length
          ? table("workers", ["Worker", "State", "Process", "Queues", "Handlers", "In flight", "Last seen", "Started"], workerRows(body.workers))
          : h("p", { class: "muted empty" }, "No worker has reported in the last day.")),
      h("section", { class: "card" }, h("h2", {}, "Queues"),
        h("p", { class: "muted" }, "Waiting: dispatches written but not started yet (tasks and map items)."),
        body.queues.length
          ? table("queues", ["Queue", "Live workers", "Waiting", "Oldest waiting"], queueRows(body.queues))
          : h("p", { class: "muted empty" }, "No queue yet.")));
  }
  return every(REFRESH_MS, () => load().catch((err) => mount(box, errorBox(err))));
}
