// System: role, database and broker health from /healthz and /readyz; load from /metrics.

import { get } from "../api.js";
import { chip, errorBox, every, h, mount } from "../dom.js";

/** Prometheus text format samples: [{name, labels, value}]. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[3] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (samples, re) => {
  const hits = samples.filter((x) => re.test(x.name));
  return hits.length ? hits.reduce((a, x) => a + x.value, 0) : null;
};
const ROLE_CHECKS = { database: "Database", transport: "Broker", broker: "Broker" };

async function readiness() {
  try { return await get("/readyz"); } catch (err) {
    if (err.problem && err.problem.checks) return err.problem; // 503 still says which check failed
    throw err;
  }
}

export function render(root) {
  const box = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  mount(root, h("div", { class: "page-head" }, h("h1", {}, "System"), h("span", { class: "live" }, "live")), box);

  async function load() {
    const [live, ready, metricsText] = await Promise.all([
      get("/healthz").then(() => "ok").catch((err) => err.message),
      readiness().catch((err) => ({ status: "unreachable", checks: {}, error: err })),
      get("/metrics", { text: true }).catch(() => ""),
    ]);
    const samples = parseMetrics(metricsText);
    const treadle = samples.filter((x) => x.name.startsWith("treadle_"));
    // The worker's own gauges (app/observability/_metrics.py), summed over its label sets.
    const inUse = sum(treadle, /^treadle_worker_inflight_tasks$/);
    const limit = sum(treadle, /^treadle_worker_concurrency_limit$/);
    const backlog = sum(treadle, /^treadle_outbox_backlog$/);
    const cards = [
      ["API", live],
      ...Object.entries(ready.checks || {}).map(([k, v]) => [ROLE_CHECKS[k] ? `${ROLE_CHECKS[k]} (${k})` : k, v]),
    ];
    mount(box,
      ready.error ? errorBox(ready.error) : null,
      h("p", {}, "Readiness: ", chip(ready.status === "ok" ? "ok" : "unavailable")),
      h("div", { class: "cards" }, cards.map(([name, state]) => h("div", { class: "card health", "data-check": name },
        h("h3", {}, name), chip(state === "ok" ? "ok" : "unavailable"), state === "ok" ? null : h("p", { class: "muted" }, state)))),
      h("div", { class: "cards" },
        h("div", { class: "card stat", "data-stat": "concurrency" }, h("h3", {}, "Worker concurrency in use"),
          h("p", { class: "big" }, inUse === null ? "not reported" : limit ? `${inUse} / ${limit}` : String(inUse))),
        h("div", { class: "card stat", "data-stat": "outbox" }, h("h3", {}, "Outbox backlog"),
          h("p", { class: "big" }, backlog === null ? "not reported" : String(backlog)))),
      h("details", { class: "card" }, h("summary", {}, `Treadle metrics (${treadle.length} samples)`),
        treadle.length ? h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Metric"), h("th", {}, "Labels"), h("th", {}, "Value"))),
          h("tbody", {}, treadle.slice(0, 300).map((x) => h("tr", {},
            h("td", { class: "mono" }, x.name),
            h("td", { class: "mono" }, Object.entries(x.labels).map(([k, v]) => `${k}=${v}`).join(" ")),
            h("td", {}, String(x.value)))))))
          : h("p", { class: "muted" }, "/metrics has no treadle_* samples yet.")));
  }
  return every(5000, () => load().catch((err) => mount(box, errorBox(err))));
}
