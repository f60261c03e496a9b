// A timeline of task attempts from a run's history: queue wait, then run time.

import { fmtDuration, h } from "./dom.js";

const END = { "task.completed": "completed", "task.failed": "failed", "task.timed_out": "timed_out",
  "task.cancelled": "cancelled", "task.skipped": "skipped" };

/** One row per (task, attempt): {task_id, attempt, scheduled, started, finished, outcome, error}. */
export function attemptsFrom(events) {
  const rows = new Map();
  const row = (e) => {
    const key = `${e.task_id}\u0000${e.attempt ?? 0}`;
    if (!rows.has(key)) rows.set(key, { task_id: e.task_id, attempt: e.attempt ?? 0, scheduled: null, started: null, finished: null, outcome: null, error: null, data: {} });
    return rows.get(key);
  };
  for (const e of events) {
    if (!e.task_id) continue;
    if (e.type === "task.retry_scheduled" || e.type === "task.skipped" && !e.attempt) continue;
    const r = row(e);
    Object.assign(r.data, e.data && typeof e.data === "object" ? e.data : {});
    if (e.type === "task.scheduled") r.scheduled = r.scheduled || e.at;
    else if (e.type === "task.started") r.started = e.at;
    else if (END[e.type]) {
      r.finished = e.at; r.outcome = END[e.type];
      if (e.data && e.data.error) r.error = e.data.error;
    }
  }
  return [...rows.values()].filter((r) => r.scheduled || r.started || r.finished);
}

/** The Gantt chart: `rows` from `attemptsFrom`, `page` of `size` rows; `waiting`: the ids
 * of tasks that wait (for a signal, a sleep's end), drawn as waiting while unfinished. */
export function drawGantt(rows, { page = 0, size = 100, now = Date.now(), onSelect = null, waiting = new Set() } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, "No attempts yet.");
  const t = (iso) => (iso ? Date.parse(iso) : null);
  let lo = Infinity, hi = -Infinity;
  for (const r of rows) {
    for (const v of [t(r.scheduled), t(r.started), t(r.finished)]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!r.finished) hi = Math.max(hi, now);
  }
  const total = Math.max(1, hi - lo);
  const pct = (v) => `${((v - lo) / total) * 100}%`;
  const width = (a, b) => `${Math.max(0.4, ((b - a) / total) * 100)}%`;
  const shown = rows.slice(page * size, page * size + size);
  return h("div", { class: "gantt", role: "table", "aria-label": "Timeline of task attempts" },
    h("div", { class: "gantt-axis", role: "row" }, h("span", { role: "columnheader" }, "task #attempt"),
      h("span", { role: "columnheader", class: "gantt-scale" }, h("span", {}, "0"), h("span", {}, fmtDuration(total)))),
    shown.map((r) => {
      const s0 = t(r.scheduled) ?? t(r.started) ?? t(r.finished);
      const s1 = t(r.started);
      const end = t(r.finished) ?? now;
      // A started signal or sleep task waits rather than runs (`waiting` holds such tasks).
      const outcome = r.outcome || (r.started ? (waiting.has(r.task_id) ? "waiting" : "running") : "scheduled");
      const wait = s1 !== null ? s1 - s0 : end - s0;
      const ran = s1 !== null ? end - s1 : null;
      return h("div", { class: "gantt-row", role: "row", "data-task": r.task_id, "data-attempt": r.attempt,
        onclick: onSelect ? () => onSelect(r.task_id, r.attempt) : null },
      h("span", { class: "gantt-label", role: "cell", title: r.task_id }, r.task_id, h("span", { class: "muted" }, ` #${r.attempt}`)),
      h("span", { class: "gantt-track", role: "cell" },
        h("span", { class: "bar wait", style: null, title: `queued ${fmtDuration(wait)}`, "data-left": pct(s0), "data-width": width(s0, s1 ?? end) }),
        s1 !== null ? h("span", { class: `bar run st-${outcome}`, title: `${outcome}: ran ${fmtDuration(ran)}`, "data-left": pct(s1), "data-width": width(s1, end) }) : null));
    }));
}

/** CSP forbids inline style attributes set from markup, so place bars through the CSSOM. */
export function placeBars(root) {
  for (const bar of root.querySelectorAll(".bar[data-left]")) {
    bar.style.left = bar.dataset.left;
    bar.style.width = bar.dataset.width;
  }
}
