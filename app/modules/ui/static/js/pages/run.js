// Run detail: live graph, timeline of attempts, task inspector, history and actions.

import { enc, get, post, qs } from "../api.js";
import { chip, confirmDialog, errorBox, every, fmtDuration, fmtTime, h, jsonBlock, mount, span } from "../dom.js";
import { attemptsFrom, drawGantt, placeBars } from "../gantt.js";
import { aggregate, drawGraph } from "../graph.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
const HISTORY_PAGE = 500; // events per API request
const HISTORY_CAP = 20000; // stop following history past this (a timeline that big is paged anyway)
const ROWS = 100; // rows per page in the timeline, task list and history list
const definitions = new Map();

async function definitionOf(run) {
  const key = `${run.workflow}@${run.version}`;
  if (!definitions.has(key)) {
    definitions.set(key, get(`/v1/workflows/${enc(run.workflow)}/versions/${run.version}`)
      .then((v) => v.definition).catch(() => null));
  }
  return definitions.get(key);
}

/** Follows a run's history page by page, re-reading only the last page on each refresh. */
class History {
  constructor(id) { this.id = id; this.pages = []; this.truncated = false; }
  get items() { return this.pages.flatMap((p) => p.items); }
  async refresh() {
    let cursor = this.pages.length ? this.pages[this.pages.length - 1].cursor : "";
    this.pages.pop();
    for (;;) {
      const page = await get(`/v1/runs/${enc(this.id)}/events${qs({ limit: HISTORY_PAGE, cursor })}`);
      this.pages.push({ cursor, items: page.items });
      if (!page.next_cursor) return;
      if (this.pages.length * HISTORY_PAGE >= HISTORY_CAP) { this.truncated = true; return; }
      cursor = page.next_cursor;
    }
  }
}

const loadedValues = new Map(); // href -> a value fetched on request, kept across redraws

/** The server's `{"$elided": {bytes, href}}` stand-in for a large value, or null. */
function elidedOf(value) {
  if (!value || typeof value !== "object" || Array.isArray(value) || Object.keys(value).length !== 1) return null;
  const e = value.$elided;
  return e && typeof e.href === "string" && Number.isInteger(e.bytes) ? e : null;
}

/** A value as JSON; an elided one as its size and a button that fetches it. */
function valueBlock(value, attrs = {}) {
  const elided = elidedOf(value);
  if (!elided) return jsonBlock(value, attrs);
  if (loadedValues.has(elided.href)) return jsonBlock(loadedValues.get(elided.href), attrs);
  const box = h("div", { class: "elided", "data-href": elided.href });
  const load = async () => {
    try {
      const full = await get(elided.href);
      loadedValues.set(elided.href, full);
      mount(box, jsonBlock(full, attrs));
    } catch (err) {
      mount(box, errorBox(err));
    }
  };
  mount(box, h("span", { class: "muted" }, `${elided.bytes.toLocaleString("en")} bytes, too large to show inline. `),
    h("button", { type: "button", class: "link load-value", onclick: load }, "Load value"));
  return box;
}

function traceIdOf(events) {
  for (const e of events) {
    const d = e.data && typeof e.data === "object" ? e.data : {};
    if (d.trace_id) return String(d.trace_id);
    if (d.traceparent) return String(d.traceparent).split("-")[1] || String(d.traceparent);
  }
  return null;
}

// A handler's last heartbeat (`ctx.heartbeat(details)`), kept across its attempts.
function heartbeatWhen(beat) {
  return beat ? `${fmtTime(beat.at)} (attempt ${beat.attempt})` : "—";
}

function heartbeatTitle(beat) {
  const details = beat.details === null || beat.details === undefined ? "" : `: ${JSON.stringify(beat.details)}`;
  return `attempt ${beat.attempt}${details.length > 200 ? `${details.slice(0, 199)}…` : details}`;
}

function pager(total, page, setPage, label) {
  const pages = Math.ceil(total / ROWS);
  if (pages <= 1) return null;
  return h("div", { class: "pager", "aria-label": `${label} pages` },
    h("button", { type: "button", disabled: page === 0, onclick: () => setPage(page - 1) }, "←"),
    h("span", { class: "muted" }, `${page * ROWS + 1}–${Math.min(total, (page + 1) * ROWS)} of ${total}`),
    h("button", { type: "button", disabled: page >= pages - 1, onclick: () => setPage(page + 1) }, "→"));
}

export function render(root, id) {
  const history = new History(id);
  const ui = { selected: null, ganttPage: 0, taskPage: 0, historyPage: 0, taskFilter: "" };
  let run = null, def = null, stop = null, panelKey = "";

  const head = h("div", { class: "run-head" });
  const actionOut = h("div", { class: "action-out", "aria-live": "polite" });
  const graphBox = h("div", { class: "graph-box" });
  const panel = h("div", { class: "task-panel", id: "task-panel" });
  const ganttBox = h("div");
  const tasksBox = h("div");
  const historyBox = h("div");
  const ioBox = h("div", { class: "io" });
  const problem = h("div");
  mount(root,
    h("p", {}, h("a", { href: "#/runs" }, "← Runs")), problem, head, actionOut,
    h("section", { class: "card" }, h("h2", {}, "Graph"), graphBox),
    h("section", { class: "card" }, h("h2", {}, "Task"), panel),
    h("section", { class: "card" }, h("h2", {}, "Timeline"),
      h("p", { class: "legend muted" }, h("span", { class: "key wait" }), " queued ", h("span", { class: "key run" }), " running / finished"), ganttBox),
    h("section", { class: "card" }, h("h2", {}, "Input and output"), ioBox),
    h("section", { class: "card" }, h("h2", {}, "Tasks"), tasksBox),
    h("section", { class: "card" }, h("h2", {}, "History"), historyBox));
  mount(panel, h("p", { class: "muted" }, "Select a task in the graph, the timeline or the list."));

  const select = (taskId) => { ui.selected = taskId; panelKey = ""; draw(); panel.scrollIntoView({ block: "nearest" }); };

  async function act(label, path, body, after) {
    mount(actionOut, h("p", { class: "muted" }, `${label}…`));
    try {
      await post(`/v1/runs/${enc(id)}/${path}`, body);
      mount(actionOut, h("p", { class: "ok", role: "status" }, `${label}: accepted.`));
      if (after) after();
      restart();
    } catch (err) {
      mount(actionOut, errorBox(err));
    }
  }

  async function onCancel() {
    const reason = h("input", { id: "cancel-reason", placeholder: "Reason (optional)" });
    if (await confirmDialog("Cancel this run?", [h("p", {}, "Running tasks are cancelled and nothing new starts."), reason], "Cancel run", true)) {
      act("Cancel", "cancel", reason.value ? { reason: reason.value } : {});
    }
  }
  async function onSimple(label, path, text) {
    if (await confirmDialog(`${label}?`, h("p", {}, text), label)) act(label, path, undefined);
  }
  async function onSignal() {
    const waiting = run ? run.tasks.filter((t) => !TERMINAL.has(t.status) && t.type === "signal") : [];
    const guess = waiting.length ? ((def && def.tasks[waiting[0].task_id]?.signal) || waiting[0].task_id) : "";
    const name = h("input", { id: "signal-name", value: guess, required: true, autocomplete: "off" });
    const payload = h("textarea", { id: "signal-payload", class: "json-editor", rows: 8, spellcheck: "false" }, "{\n  \n}");
    const status = h("div", { class: "json-status muted" });
    const check = () => {
      try { JSON.parse(payload.value); mount(status, "valid JSON"); status.className = "json-status ok"; return null; }
      catch (err) { mount(status, err.message); status.className = "json-status bad"; return `The payload is not valid JSON: ${err.message}`; }
    };
    payload.addEventListener("input", check);
    const format = h("button", { type: "button", class: "ghost", onclick: () => {
      if (!check()) payload.value = JSON.stringify(JSON.parse(payload.value), null, 2);
    } }, "Format");
    const ok = await confirmDialog("Send a signal", [
      h("label", { for: "signal-name" }, "Signal name"), name,
      h("label", { for: "signal-payload" }, "Payload (JSON)"), payload, h("div", { class: "row" }, status, format),
    ], "Send signal", false, () => (name.value.trim() ? check() : "The signal needs a name."));
    if (ok) act(`Signal ${name.value.trim()}`, `signals/${enc(name.value.trim())}`, JSON.parse(payload.value));
  }

  function drawHead() {
    const done = TERMINAL.has(run.status);
    mount(head,
      h("div", { class: "page-head" },
        h("h1", { class: "run-title" }, "Run ", h("span", { class: "mono" }, run.id)), chip(run.status),
        done ? null : h("span", { class: "live" }, "live")),
      h("dl", { class: "meta" },
        h("dt", {}, "Workflow"), h("dd", {}, h("a", { href: `#/workflows/${enc(run.workflow)}` }, run.workflow), ` v${run.version}`),
        h("dt", {}, "Created"), h("dd", {}, fmtTime(run.created_at)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(run.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(run.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, fmtDuration(span(run.started_at, run.finished_at))),
        h("dt", {}, "Trace"), h("dd", { class: "mono" }, traceIdOf(history.items) || "—")),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", id: "act-cancel", disabled: done, onclick: onCancel }, "Cancel"),
        h("button", { type: "button", id: "act-retry", disabled: !["failed", "timed_out", "cancelled"].includes(run.status),
          onclick: () => onSimple("Retry from failure", "retry", "Failed tasks run again; completed ones keep their output.") }, "Retry from failure"),
        h("button", { type: "button", id: "act-pause", disabled: done, onclick: () => onSimple("Pause", "pause", "No new task starts until the run is resumed.") }, "Pause"),
        h("button", { type: "button", id: "act-resume", disabled: done, onclick: () => onSimple("Resume", "resume", "Tasks start again.") }, "Resume"),
        h("button", { type: "button", id: "act-signal", disabled: done, onclick: onSignal }, "Send signal")));
  }

  function drawPanel(rows) {
    const task = run.tasks.find((t) => t.task_id === ui.selected);
    if (!ui.selected) return;
    const attempts = rows.filter((r) => r.task_id === ui.selected);
    const key = JSON.stringify([task, attempts]);
    if (key === panelKey) return;
    panelKey = key;
    if (!task) {
      const defTask = def && def.tasks[ui.selected];
      mount(panel, h("h3", {}, ui.selected), defTask ? h("p", { class: "muted" }, "Not reached yet.") : h("p", { class: "muted" }, "No such task."),
        defTask ? jsonBlock(defTask) : null);
      return;
    }
    const events = history.items.filter((e) => e.task_id === task.task_id);
    const wait = span(task.scheduled_at, task.started_at || task.finished_at);
    mount(panel,
      h("div", { class: "page-head" }, h("h3", { class: "task-title" }, task.task_id), chip(task.status)),
      h("dl", { class: "meta" },
        h("dt", {}, "Type"), h("dd", {}, task.type),
        h("dt", {}, "Attempt"), h("dd", {}, String(task.attempt)),
        h("dt", {}, "Scheduled"), h("dd", {}, fmtTime(task.scheduled_at)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(task.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(task.finished_at)),
        h("dt", {}, "Queue wait"), h("dd", {}, fmtDuration(wait)),
        h("dt", {}, "Run time"), h("dd", {}, fmtDuration(task.started_at ? span(task.started_at, task.finished_at) : null)),
        h("dt", {}, "Trace id"), h("dd", { class: "mono" }, traceIdOf(events) || traceIdOf(history.items) || "—"),
        h("dt", {}, "Last heartbeat"), h("dd", { class: "task-heartbeat-at" }, heartbeatWhen(task.heartbeat))),
      h("h4", {}, "Input"), valueBlock(task.input, { class: "code task-input" }),
      h("h4", {}, "Output"), valueBlock(task.output, { class: "code task-output" }),
      task.heartbeat ? [h("h4", {}, "Heartbeat details"), jsonBlock(task.heartbeat.details, { class: "code task-heartbeat" })] : null,
      task.error ? [h("h4", {}, "Error"),
        h("p", { class: "error-line" }, h("strong", {}, task.error.type), ": ", task.error.message),
        task.error.traceback ? h("pre", { class: "code traceback" }, task.error.traceback) : null] : null,
      h("h4", {}, `Attempts (${attempts.length})`),
      attempts.length ? h("div", { class: "table-wrap" }, h("table", { class: "attempts" },
        h("thead", {}, h("tr", {}, ["#", "Outcome", "Queued", "Ran", "Error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, attempts.map((a) => h("tr", {},
          h("td", {}, String(a.attempt)),
          h("td", {}, chip(a.outcome || (a.started ? "running" : "scheduled"))),
          h("td", {}, fmtDuration(span(a.scheduled, a.started || a.finished))),
          h("td", {}, a.started ? fmtDuration(span(a.started, a.finished)) : "—"),
          h("td", {}, a.error ? h("details", {}, h("summary", {}, `${a.error.type}: ${a.error.message}`),
            a.error.traceback ? h("pre", { class: "code traceback" }, a.error.traceback) : null) : "")))))) : h("p", { class: "muted" }, "None yet."));
  }

  function drawTasks() {
    const list = run.tasks.filter((t) => !ui.taskFilter || t.status === ui.taskFilter);
    const page = Math.min(ui.taskPage, Math.max(0, Math.ceil(list.length / ROWS) - 1));
    const filter = h("select", { "aria-label": "Task status", onchange: (e) => { ui.taskFilter = e.target.value; ui.taskPage = 0; drawTasks(); } },
      h("option", { value: "" }, `All (${run.tasks.length})`),
      [...new Set(run.tasks.map((t) => t.status))].map((st) => h("option", { value: st, selected: st === ui.taskFilter }, st)));
    mount(tasksBox, h("div", { class: "toolbar" }, filter),
      h("div", { class: "table-wrap" }, h("table", { class: "tasks" },
        h("thead", {}, h("tr", {}, ["Task", "Type", "Status", "Attempt", "Started", "Run time", "Heartbeat"].map((c) => h("th", {}, c)))),
        h("tbody", {}, list.slice(page * ROWS, page * ROWS + ROWS).map((t) => h("tr", { "data-task": t.task_id },
          h("td", {}, h("button", { type: "button", class: "link", onclick: () => select(t.task_id) }, t.task_id)),
          h("td", {}, t.type), h("td", {}, chip(t.status)), h("td", {}, String(t.attempt)),
          h("td", {}, fmtTime(t.started_at)), h("td", {}, t.started_at ? fmtDuration(span(t.started_at, t.finished_at)) : "—"),
          h("td", { class: "heartbeat", title: t.heartbeat ? heartbeatTitle(t.heartbeat) : null }, t.heartbeat ? `${fmtDuration(span(t.heartbeat.at))} ago` : "—")))))),
      pager(list.length, page, (p) => { ui.taskPage = p; drawTasks(); }, "Task"));
  }

  function drawHistory() {
    const items = history.items;
    const page = Math.min(ui.historyPage, Math.max(0, Math.ceil(items.length / ROWS) - 1));
    mount(historyBox,
      h("ol", { class: "history", start: page * ROWS + 1 }, items.slice(page * ROWS, page * ROWS + ROWS).map((e) => h("li", { "data-type": e.type },
        h("span", { class: "mono muted" }, fmtTime(e.at)), " ", h("strong", {}, e.type),
        e.task_id ? [" ", h("span", { class: "mono" }, e.task_id)] : null, e.attempt ? ` #${e.attempt}` : "",
        e.data !== null && e.data !== undefined ? h("details", {}, h("summary", {}, "data"), jsonBlock(e.data)) : null))),
      history.truncated ? h("p", { class: "muted" }, `Showing the first ${items.length} events.`) : null,
      pager(items.length, page, (p) => { ui.historyPage = p; drawHistory(); }, "History"));
  }

  function draw() {
    if (!run) return;
    drawHead();
    const tasks = def ? def.tasks : Object.fromEntries(run.tasks.map((t) => [t.task_id, {}]));
    mount(graphBox, drawGraph(tasks, { states: aggregate(tasks, run.tasks), onSelect: select, selected: ui.selected }));
    const rows = attemptsFrom(history.items);
    const pages = Math.ceil(rows.length / ROWS);
    ui.ganttPage = Math.min(ui.ganttPage, Math.max(0, pages - 1));
    mount(ganttBox, drawGantt(rows, { page: ui.ganttPage, size: ROWS, onSelect: select }),
      pager(rows.length, ui.ganttPage, (p) => { ui.ganttPage = p; draw(); }, "Timeline"));
    placeBars(ganttBox);
    drawPanel(rows);
    mount(ioBox, h("h4", {}, "Input"), valueBlock(run.input, { class: "code run-input" }),
      h("h4", {}, "Output"), valueBlock(run.output, { class: "code run-output" }),
      run.error ? [h("h4", {}, "Error"), h("p", { class: "error-line" }, h("strong", {}, run.error.type), ": ", run.error.message),
        run.error.traceback ? h("pre", { class: "code traceback" }, run.error.traceback) : null] : null);
    drawTasks();
    drawHistory();
  }

  let lastDone = false;
  async function refresh() {
    try {
      run = await get(`/v1/runs/${enc(id)}`);
      mount(problem);
    } catch (err) {
      mount(problem, errorBox(err));
      return;
    }
    def = def || (await definitionOf(run));
    await history.refresh().catch(() => {});
    draw();
    const done = TERMINAL.has(run.status);
    if (done && lastDone && stop) { stop(); stop = null; } // one more read after the end, then rest
    lastDone = done;
    if (stop && !done && pollMs() !== interval) restart();
  }

  // A big run (a wide map) is polled less often: each read carries every task.
  const pollMs = () => (run && run.tasks.length > 5000 ? 5000 : run && run.tasks.length > 500 ? 2000 : 700);
  let interval = 0;
  function restart() {
    if (stop) stop();
    lastDone = false;
    interval = pollMs();
    stop = every(interval, refresh);
  }
  restart();
  return () => { if (stop) stop(); };
}
