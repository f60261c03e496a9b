// Runs: newest first, filters, search, cursor pagination, bounded counts, live refresh.

import { enc, get, qs } from "../api.js";
import { chip, errorBox, every, fmtDuration, fmtTime, h, mount, span } from "../dom.js";

export const STATUSES = ["pending", "running", "completed", "failed", "cancelled", "timed_out"];
const PAGE = 50;
const RANGES = { "": "Any time", "15m": "Last 15 minutes", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days" };
const RANGE_MS = { "15m": 9e5, "1h": 36e5, "24h": 864e5, "7d": 6048e5 };

function hashFor(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `#/runs?${s}` : "#/runs";
}

export function render(root, query) {
  const filters = {
    workflow: query.get("workflow") || "",
    status: query.get("status") || "",
    range: query.get("range") || "",
    cursor: query.get("cursor") || "",
  };
  const back = (query.get("back") || "").split(",").filter(Boolean);
  const go = (changes) => { location.hash = hashFor({ ...filters, back: back.join(","), ...changes }); };

  const counts = h("div", { class: "counts", "aria-label": "Runs by status" });
  const body = h("tbody");
  const status = h("div", { class: "table-status" });
  const pager = h("div", { class: "pager" });
  const workflowSelect = h("select", { id: "f-workflow", name: "workflow", onchange: (e) => go({ workflow: e.target.value, cursor: "", back: "" }) },
    h("option", { value: "" }, "All workflows"));
  const search = h("input", { id: "run-search", type: "search", placeholder: "Run id or idempotency key", autocomplete: "off" });
  const searchMsg = h("div");

  mount(root,
    h("div", { class: "page-head" }, h("h1", {}, "Runs"), h("span", { class: "live", title: "Refreshes every 2 seconds" }, "live")),
    counts,
    h("div", { class: "toolbar" },
      h("label", { class: "sr", for: "f-workflow" }, "Workflow"), workflowSelect,
      h("label", { class: "sr", for: "f-status" }, "Status"),
      h("select", { id: "f-status", name: "status", onchange: (e) => go({ status: e.target.value, cursor: "", back: "" }) },
        h("option", { value: "" }, "All statuses"),
        STATUSES.map((st) => h("option", { value: st, selected: st === filters.status }, st))),
      h("label", { class: "sr", for: "f-range" }, "Started"),
      h("select", { id: "f-range", name: "range", onchange: (e) => go({ range: e.target.value, cursor: "", back: "" }) },
        Object.entries(RANGES).map(([v, label]) => h("option", { value: v, selected: v === filters.range }, label))),
      h("form", { class: "search", role: "search", onsubmit: (e) => { e.preventDefault(); lookup(search.value.trim(), searchMsg); } },
        h("label", { class: "sr", for: "run-search" }, "Search"), search,
        h("button", { type: "submit" }, "Find"))),
    searchMsg,
    h("div", { class: "table-wrap" },
      h("table", { class: "runs" },
        h("thead", {}, h("tr", {}, ["Run", "Workflow", "Version", "Status", "Started", "Duration"].map((c) => h("th", { scope: "col" }, c)))),
        body)),
    status, pager);

  get("/v1/workflows?limit=500").then((page) => {
    for (const w of page.items) workflowSelect.append(h("option", { value: w.name, selected: w.name === filters.workflow }, w.name));
    if (filters.workflow && !page.items.some((w) => w.name === filters.workflow)) {
      workflowSelect.append(h("option", { value: filters.workflow, selected: true }, filters.workflow));
    }
  }).catch(() => {});

  // The range is a server-side filter (created_after), recomputed on each refresh.
  const since = () => (RANGE_MS[filters.range] ? new Date(Date.now() - RANGE_MS[filters.range]).toISOString() : "");

  async function refreshTable() {
    let page;
    try {
      page = await get(`/v1/runs${qs({ workflow: filters.workflow, status: filters.status, created_after: since(), limit: PAGE, cursor: filters.cursor })}`);
    } catch (err) {
      mount(status, errorBox(err));
      return;
    }
    const items = page.items;
    const next = page.next_cursor;
    mount(body, items.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, h("a", { href: `#/runs/${enc(r.id)}`, class: "mono" }, r.id)),
      h("td", {}, r.workflow),
      h("td", {}, `v${r.version}`),
      h("td", { class: "run-status" }, chip(r.status), r.paused && ["pending", "running"].includes(r.status) ? [" ", chip("paused")] : null),
      h("td", {}, fmtTime(r.started_at || r.created_at)),
      h("td", {}, fmtDuration(span(r.started_at, r.finished_at))))));
    mount(status, items.length ? "" : h("p", { class: "muted empty" }, "No runs match."));
    mount(pager,
      h("button", { type: "button", disabled: !filters.cursor, onclick: () => {
        const prev = back.slice(0, -1);
        go({ cursor: back[back.length - 1] === "-" ? "" : back[back.length - 1] || "", back: prev.join(",") });
      } }, "← Newer"),
      h("button", { type: "button", disabled: !next, onclick: () => {
        go({ cursor: next, back: [...back, filters.cursor || "-"].join(",") });
      } }, "Older →"));
  }

  async function refreshCounts() {
    // One request; the server counts each status up to its cap, so "n+" means at least n.
    const results = await get(`/v1/runs/counts${qs({ workflow: filters.workflow, created_after: since() })}`)
      .then((c) => STATUSES.map((st) => {
        const n = c.counts[st] ?? 0;
        return c.capped && n >= c.cap ? `${n}+` : String(n);
      }))
      .catch(() => STATUSES.map(() => "?"));
    mount(counts, STATUSES.map((st, i) => h("a", {
      href: hashFor({ ...filters, status: filters.status === st ? "" : st, cursor: "" }),
      class: `count st-${st}${filters.status === st ? " selected" : ""}`, "data-count": st,
    }, h("span", { class: "count-n" }, results[i]), h("span", { class: "count-label" }, st.replace("_", " ")))));
  }

  const stopTable = every(2000, refreshTable);
  const stopCounts = every(5000, refreshCounts);
  return () => { stopTable(); stopCounts(); };
}

async function lookup(q, out) {
  if (!q) return;
  try {
    const r = await get(`/v1/runs/${enc(q)}`);
    location.hash = `#/runs/${enc(r.id)}`;
    return;
  } catch (err) {
    if (err.status !== 404) { mount(out, errorBox(err)); return; }
  }
  try {
    const page = await get(`/v1/runs${qs({ idempotency_key: q, limit: 1 })}`);
    if (page.items.length) {
      location.hash = `#/runs/${enc(page.items[0].id)}`;
      return;
    }
  } catch (err) {
    mount(out, errorBox(err));
    return;
  }
  mount(out, h("p", { class: "alert" }, "No run has the id or idempotency key ", h("code", {}, q), "."));
}
