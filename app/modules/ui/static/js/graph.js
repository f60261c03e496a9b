// A workflow's graph laid out left to right by topological depth, drawn in SVG.

import { s } from "./dom.js";

const W = 150, H = 42, GX = 56, GY = 14, PAD = 12;

/** Columns of task ids: a task sits one column right of its deepest dependency. */
export function layout(tasks) {
  const ids = Object.keys(tasks || {});
  const depth = {};
  const visiting = new Set();
  const depthOf = (id) => {
    if (id in depth) return depth[id];
    if (visiting.has(id) || !(id in tasks)) return 0; // tolerate bad input rather than loop
    visiting.add(id);
    const after = (tasks[id] && tasks[id].after) || [];
    depth[id] = after.length ? 1 + Math.max(...after.map(depthOf)) : 0;
    visiting.delete(id);
    return depth[id];
  };
  const columns = [];
  for (const id of ids) (columns[depthOf(id)] ||= []).push(id);
  return columns.map((c) => c || []);
}

/** The status of each definition task, folding map children ("t[3]", "t.3", "t/3") into "t". */
export function aggregate(defTasks, runTasks) {
  const out = {};
  for (const id of Object.keys(defTasks || {})) out[id] = { status: "pending", children: null };
  for (const t of runTasks || []) {
    if (t.task_id in out) { out[t.task_id].status = t.status; continue; }
    const m = t.task_id.match(/^(.*?)[[./](.*)$/);
    const parent = m && m[1] in out ? m[1] : null;
    if (!parent) continue;
    const agg = (out[parent].children ||= { total: 0 });
    agg.total += 1;
    agg[t.status] = (agg[t.status] || 0) + 1;
  }
  return out;
}

function shorten(text, max = 18) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The SVG of a graph. `states` maps a task id to {status, children}; `onSelect(id)` is
 * called when a node is clicked; `selected` is highlighted.
 */
export function drawGraph(tasks, { states = {}, onSelect = null, selected = null } = {}) {
  const columns = layout(tasks);
  const pos = {};
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  columns.forEach((col, x) => {
    const offset = (height - (col.length * H + (col.length - 1) * GY)) / 2;
    col.forEach((id, y) => { pos[id] = { x: PAD + x * (W + GX), y: offset + y * (H + GY) }; });
  });
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX;
  const svg = s("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": "Workflow graph" });
  svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, s("path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" }))));
  for (const [id, task] of Object.entries(tasks || {})) {
    for (const dep of (task && task.after) || []) {
      if (!pos[dep] || !pos[id]) continue;
      const a = pos[dep], b = pos[id];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}`, "marker-end": "url(#arrow)" }));
    }
  }
  for (const [id, p] of Object.entries(pos)) {
    const st = states[id] || { status: "pending" };
    const kids = st.children;
    const label = kids ? `${shorten(id, 12)} ${(kids.completed || 0)}/${kids.total}` : shorten(id);
    const sub = (tasks[id] && (tasks[id].type || (tasks[id].handler ? "handler" : ""))) || "";
    const g = s("g", {
      class: `node st-${st.status}${selected === id ? " selected" : ""}`,
      transform: `translate(${p.x},${p.y})`, tabindex: onSelect ? 0 : null, role: onSelect ? "button" : null,
      "data-task": id, "data-status": st.status,
      onclick: onSelect ? () => onSelect(id) : null,
      onkeydown: onSelect ? (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onSelect(id); } } : null,
    },
    s("title", {}, `${id} — ${st.status}${kids ? ` (${kids.total} items)` : ""}`),
    s("rect", { width: W, height: H, rx: 8 }),
    s("text", { x: 10, y: 17, class: "node-label" }, label),
    s("text", { x: 10, y: 33, class: "node-sub" }, `${sub} · ${st.status}`));
    svg.append(g);
  }
  return svg;
}
