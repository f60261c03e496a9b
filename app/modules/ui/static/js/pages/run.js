// Run detail: live graph, timeline of attempts, task inspector, history and actions.

import { enc, get, post, qs } from "../api.js";
import { chip, confirmDialog, errorBox, every, fmtDuration, fmtTime, h, jsonBlock, mount, span } from "../dom.js";
import { attemptsFrom, drawGantt, placeBars } from "../gantt.js";
import { aggregate, drawGraph } from "../graph.js";
import { attemptHref, itemHref, runHref, taskHref, traceHref, uiSettings } from "../links.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "timed_out"]);
const HISTORY_PAGE = 500; // events per API request
const HISTORY_CAP = 20000; // stop following history past this (a timeline that big is paged anyway)
const ROWS = 100; // rows per page in the timeline, task list and history list
const RUN_LEVEL = "-"; // the history filter's value for entries of the run itself (no task)
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
  /** Every event of the run, past the cap too (for a download). */
  async whole() {
    const out = [];
    for (let cursor = ""; ;) {
      const page = await get(`/v1/runs/${enc(this.id)}/events${qs({ limit: HISTORY_PAGE, cursor })}`);
      out.push(...page.items);
      if (!page.next_cursor) return out;
      cursor = page.next_cursor;
    }
  }
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

/** What a waiting task waits for, in words (`TaskBody.waiting`); null when it does not wait. */
export function waitText(wait) {
  if (!wait) return null;
  const until = wait.until ? fmtTime(wait.until) : null;
  if (wait.reason === "signal") return `waiting for signal ${wait.signal}${until ? ` until ${until}` : ""}`;
  if (wait.reason === "sleep") return until ? `sleeping until ${until}` : "sleeping";
  if (wait.reason === "retry") return until ? `retrying at ${until}` : "retrying";
  if (wait.reason === "resume") return "waiting for the run to resume";
  return `waiting (${wait.reason})`;
}

/** A status chip, "waiting" for a task that waits for something, its reason in words beside. */
function taskState(task) {
  const text = waitText(task.waiting);
  return text ? [chip("waiting"), " ", h("span", { class: "wait-text" }, text)] : chip(task.status);
}

/** A trace id, linked to the tracing UI when `ui.trace_url_template` is set. */
function traceCell(traceId, template, cls) {
  if (!traceId) return "—";
  const href = traceHref(template, traceId);
  return href ? h("a", { href, class: `trace-link ${cls}`, target: "_blank", rel: "noopener noreferrer" }, traceId)
    : h("span", { class: cls }, traceId);
}

/** Download `value` as a JSON file named `name`. */
function downloadJson(name, value) {
  const url = URL.createObjectURL(new Blob([JSON.stringify(value, null, 2)], { type: "application/json" }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

const ITEM_ROWS = 50; // items per page of a map's items table
const ITEM_STATUSES = ["pending", "scheduled", "running", "completed", "failed", "cancelled", "timed_out"];
const itemsPath = (runId, taskId, params) => `/v1/runs/${enc(runId)}/tasks/${enc(taskId)}/items${qs(params)}`;

/** A map item by index, in one read: the page that starts at it. */
async function mapItemAt(runId, taskId, index) {
  const page = await get(itemsPath(runId, taskId, { from_index: index, limit: 1 }));
  const found = page.items[0];
  return found && found.index === index ? found : null;
}

/** An item's error in one line, visible in its row (the traceback is one click away). */
function itemError(item) {
  if (!item.error) return "";
  const line = `${item.error.type}: ${item.error.message}`;
  return item.error.traceback
    ? h("details", { class: "item-error-row" }, h("summary", {}, line), h("pre", { class: "code traceback" }, item.error.traceback))
    : h("span", { class: "item-error-row" }, line);
}

function pager(total, page, setPage, label) {
  const pages = Math.ceil(total / ROWS);
  if (pages <= 1) return null;
  return h("div", { class: "pager", "aria-label": `${label} pages` },
    h("button", { type: "button", disabled: page === 0, onclick: () => setPage(page - 1) }, "←"),
    h("span", { class: "muted" }, `${page * ROWS + 1}–${Math.min(total, (page + 1) * ROWS)} of ${total}`),
    h("button", { type: "button", disabled: page >= pages - 1, onclick: () => setPage(page + 1) }, "→"));
}

export function render(root, target) {
  const id = target.id;
  const history = new History(id);
  const ui = { selected: target.task, attempt: target.attempt, item: target.item, ganttPage: 0, taskPage: 0,
    historyPage: 0, taskFilter: "", historyTask: "", historyType: "" };
  let run = null, def = null, stop = null, panelKey = "", historyKey = "", traceTemplate = null;
  uiSettings().then((s) => { traceTemplate = s.trace_url_template || null; panelKey = ""; draw(); });

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
      h("p", { class: "legend muted" }, h("span", { class: "key wait" }), " queued ", h("span", { class: "key run" }), " running / finished ",
        h("span", { class: "key st-waiting" }), " waiting"), ganttBox),
    h("section", { class: "card" }, h("h2", {}, "Input and output"), ioBox),
    h("section", { class: "card" }, h("h2", {}, "Tasks"), tasksBox),
    h("section", { class: "card" }, h("h2", {}, "History"), historyBox));
  mount(panel, h("p", { class: "muted" }, "Select a task in the graph, the timeline or the list."));

  // Selecting changes the URL; the router hands the new target to `show`.
  const select = (taskId, attempt) => {
    location.hash = attempt ? attemptHref(id, taskId, attempt) : taskHref(id, taskId);
  };
  let scrollPending = Boolean(target.task); // bring a linked task (or attempt) into view, once
  function show(next) {
    Object.assign(ui, { selected: next.task, attempt: next.attempt, item: next.item });
    panelKey = "";
    scrollPending = Boolean(next.task);
    draw();
  }

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
    const waiting = run ? run.tasks.filter((t) => t.waiting && t.waiting.reason === "signal") : [];
    const guess = waiting.length ? waiting[0].waiting.signal : "";
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
        run.paused && !done ? chip("paused") : null,
        done ? null : h("span", { class: "live" }, "live")),
      run.paused && !done ? h("p", { class: "paused-note muted" }, "Paused: results are recorded, but no task starts until the run is resumed.") : null,
      h("dl", { class: "meta" },
        h("dt", {}, "Workflow"), h("dd", {}, h("a", { href: `#/workflows/${enc(run.workflow)}` }, run.workflow), ` v${run.version}`),
        run.parent_run_id ? [h("dt", {}, "Parent"), h("dd", { class: "mono" },
          h("a", { class: "parent-link", href: run.parent_task_id ? taskHref(run.parent_run_id, run.parent_task_id) : runHref(run.parent_run_id) },
            run.parent_task_id ? `${run.parent_run_id} · ${run.parent_task_id}` : run.parent_run_id))] : null,
        h("dt", {}, "Created"), h("dd", {}, fmtTime(run.created_at)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(run.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(run.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, fmtDuration(span(run.started_at, run.finished_at))),
        Object.keys(run.tags || {}).length ? [h("dt", {}, "Tags"), h("dd", { class: "mono", id: "run-tags" }, Object.entries(run.tags).map(([k, v]) => `${k}:${v}`).join(", "))] : null,
        h("dt", {}, "Trace"), h("dd", { class: "mono" }, traceCell(traceIdOf(history.items), traceTemplate, "run-trace"))),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", id: "act-cancel", disabled: done, onclick: onCancel }, "Cancel"),
        h("button", { type: "button", id: "act-retry", disabled: !["failed", "timed_out", "cancelled"].includes(run.status),
          onclick: () => onSimple("Retry from failure", "retry", "Failed tasks run again; completed ones keep their output.") }, "Retry from failure"),
        h("button", { type: "button", id: "act-pause", disabled: done || run.paused, onclick: () => onSimple("Pause", "pause", "No new task starts until the run is resumed.") }, "Pause"),
        h("button", { type: "button", id: "act-resume", disabled: done || !run.paused, onclick: () => onSimple("Resume", "resume", "Tasks start again.") }, "Resume"),
        h("button", { type: "button", id: "act-signal", disabled: done, onclick: onSignal }, "Send signal")));
  }

  function drawPanel(rows) {
    const task = run.tasks.find((t) => t.task_id === ui.selected);
    if (!ui.selected) {
      if (panelKey !== "none") mount(panel, h("p", { class: "muted" }, "Select a task in the graph, the timeline or the list."));
      panelKey = "none";
      return;
    }
    const attempts = rows.filter((r) => r.task_id === ui.selected);
    const key = JSON.stringify([task, attempts, ui.attempt, ui.item, traceTemplate]);
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
      h("div", { class: "page-head" }, h("h3", { class: "task-title" }, task.task_id), taskState(task),
        h("a", { href: taskHref(id, task.task_id), class: "task-link muted", title: "A link to this task" }, "link")),
      h("dl", { class: "meta" },
        h("dt", {}, "Type"), h("dd", {}, task.type),
        task.child_run_id ? [h("dt", {}, "Child run"), h("dd", { class: "mono" },
          h("a", { class: "child-link", href: runHref(task.child_run_id) }, task.child_run_id))] : null,
        h("dt", {}, "Waiting for"), h("dd", { class: "task-waiting" }, waitText(task.waiting) || "—"),
        h("dt", {}, "Attempt"), h("dd", {}, String(task.attempt)),
        h("dt", {}, "Scheduled"), h("dd", {}, fmtTime(task.scheduled_at)),
        h("dt", {}, "Started"), h("dd", {}, fmtTime(task.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, fmtTime(task.finished_at)),
        h("dt", {}, "Queue wait"), h("dd", {}, fmtDuration(wait)),
        h("dt", {}, "Run time"), h("dd", {}, fmtDuration(task.started_at ? span(task.started_at, task.finished_at) : null)),
        h("dt", {}, "Trace id"), h("dd", { class: "mono" }, traceCell(traceIdOf(events) || traceIdOf(history.items), traceTemplate, "task-trace")),
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
        h("tbody", {}, attempts.map((a) => h("tr", { "data-attempt": a.attempt, class: a.attempt === ui.attempt ? "selected" : null },
          h("td", {}, h("a", { href: attemptHref(id, task.task_id, a.attempt), title: "A link to this attempt" }, String(a.attempt))),
          h("td", {}, chip(a.outcome || (a.started ? "running" : "scheduled"))),
          h("td", {}, fmtDuration(span(a.scheduled, a.started || a.finished))),
          h("td", {}, a.started ? fmtDuration(span(a.started, a.finished)) : "—"),
          h("td", {}, a.error ? h("details", { open: a.attempt === ui.attempt }, h("summary", {}, `${a.error.type}: ${a.error.message}`),
            a.error.traceback ? h("pre", { class: "code traceback" }, a.error.traceback) : null) : "")))))) : h("p", { class: "muted" }, "None yet."),
      task.type === "map" ? itemSection(task) : null);
    if (!scrollPending) return;
    scrollPending = false;
    const chosen = ui.attempt !== null && panel.querySelector(`tr[data-attempt="${ui.attempt}"]`);
    (chosen || panel).scrollIntoView({ block: "nearest" });
  }

  /** A map task's items: a table (paged by cursor, filtered by status), a form to open one
   * by index, and the item its URL names. */
  function itemSection(task) {
    const input = h("input", { type: "number", min: 0, id: "item-index", "aria-label": "Item index",
      value: ui.item ?? "", placeholder: "index" });
    const form = h("form", { class: "row item-open", onsubmit: (e) => {
      e.preventDefault();
      if (input.value !== "") location.hash = itemHref(id, task.task_id, Number(input.value));
    } }, h("label", { for: "item-index" }, "Item"), input, h("button", { type: "submit" }, "Open"));
    const table = itemTable(task);
    if (ui.item === null) return [h("h4", {}, "Map items"), table, form];
    const box = h("div", { class: "map-item", "data-index": ui.item }, h("p", { class: "muted" }, "Loading…"));
    const index = ui.item;
    mapItemAt(id, task.task_id, index).then((item) => {
      if (ui.item !== index) return;
      if (!item) { mount(box, h("p", { class: "muted" }, `No item ${index}.`)); return; }
      mount(box,
        h("div", { class: "page-head" }, h("h4", { class: "item-title" }, `${task.task_id}[${item.index}]`), chip(item.status),
          h("a", { href: itemHref(id, task.task_id, item.index), class: "muted" }, "link")),
        h("dl", { class: "meta" },
          h("dt", {}, "Attempt"), h("dd", {}, String(item.attempt)),
          h("dt", {}, "Started"), h("dd", {}, fmtTime(item.started_at)),
          h("dt", {}, "Finished"), h("dd", {}, fmtTime(item.finished_at)),
          h("dt", {}, "Run time"), h("dd", {}, item.started_at ? fmtDuration(span(item.started_at, item.finished_at)) : "—")),
        h("h4", {}, "Input"), valueBlock(item.input, { class: "code item-input" }),
        h("h4", {}, "Output"), valueBlock(item.output, { class: "code item-output" }),
        item.error ? [h("h4", {}, "Error"), h("p", { class: "error-line item-error" }, h("strong", {}, item.error.type), ": ", item.error.message),
          item.error.traceback ? h("pre", { class: "code traceback" }, item.error.traceback) : null] : null);
    }).catch((err) => mount(box, errorBox(err)));
    return [h("h4", {}, "Map items"), table, form, h("h4", {}, "Map item"), box];
  }

  /** The items table of a map task, one page of ITEM_ROWS read from the items endpoint;
   * `ui.items` keeps its filter and the cursors of the pages before, across redraws. */
  function itemTable(task) {
    if (!ui.items || ui.items.task !== task.task_id) ui.items = { task: task.task_id, status: "", cursors: [""] };
    const state = ui.items;
    const box = h("div", { class: "items-table" });
    const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    const filter = h("select", { id: "item-status", "aria-label": "Item status", onchange: (e) => {
      state.status = e.target.value; state.cursors = [""]; load();
    } }, h("option", { value: "" }, "Every status"),
    ITEM_STATUSES.map((st) => h("option", { value: st, selected: st === state.status }, st)));
    const load = async () => {
      const cursor = state.cursors[state.cursors.length - 1];
      let page;
      try {
        page = await get(itemsPath(id, task.task_id, { limit: ITEM_ROWS, cursor, status: state.status }));
      } catch (err) { mount(body, errorBox(err)); return; }
      const turn = (delta) => {
        if (delta > 0) state.cursors.push(page.next_cursor); else state.cursors.pop();
        load();
      };
      mount(body, page.items.length ? h("div", { class: "table-wrap" }, h("table", { class: "items" },
        h("thead", {}, h("tr", {}, ["#", "Status", "Attempts", "Run time", "Error"].map((c) => h("th", {}, c)))),
        h("tbody", {}, page.items.map((i) => h("tr", { "data-item": i.index, class: i.index === ui.item ? "selected" : null },
          h("td", {}, h("a", { href: itemHref(id, task.task_id, i.index) }, String(i.index))),
          h("td", {}, chip(i.status)), h("td", {}, String(i.attempt)),
          h("td", {}, i.started_at ? fmtDuration(span(i.started_at, i.finished_at)) : "—"),
          h("td", { class: "item-error-cell" }, itemError(i))))))) : h("p", { class: "muted empty" }, "No items match."),
      h("div", { class: "pager", "aria-label": "Item pages" },
        h("button", { type: "button", class: "items-prev", disabled: state.cursors.length < 2, onclick: () => turn(-1) }, "←"),
        h("span", { class: "muted" }, `page ${state.cursors.length}`),
        h("button", { type: "button", class: "items-next", disabled: !page.next_cursor, onclick: () => turn(1) }, "→")));
    };
    load();
    mount(box, h("div", { class: "toolbar" }, filter), body);
    return box;
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
          h("td", {}, h("a", { href: taskHref(id, t.task_id) }, t.task_id)),
          h("td", {}, t.type), h("td", { class: "task-status" }, taskState(t)), h("td", {}, String(t.attempt)),
          h("td", {}, fmtTime(t.started_at)), h("td", {}, t.started_at ? fmtDuration(span(t.started_at, t.finished_at)) : "—"),
          h("td", { class: "heartbeat", title: t.heartbeat ? heartbeatTitle(t.heartbeat) : null }, t.heartbeat ? `${fmtDuration(span(t.heartbeat.at))} ago` : "—")))))),
      pager(list.length, page, (p) => { ui.taskPage = p; drawTasks(); }, "Task"));
  }

  function historyFilters(all) {
    const choose = (field, label, values, name) => h("select", { id: `history-${field}`, "aria-label": label,
      onchange: (e) => { ui[name] = e.target.value; ui.historyPage = 0; drawHistory(); } },
    h("option", { value: "" }, `Every ${field}`),
    values.map((v) => h("option", { value: v, selected: v === ui[name] }, v === RUN_LEVEL ? "(the run itself)" : v)));
    const tasks = [...new Set(all.map((e) => e.task_id || RUN_LEVEL))].sort();
    const types = [...new Set(all.map((e) => e.type))].sort();
    return [choose("task", "History task", tasks, "historyTask"), choose("type", "History event type", types, "historyType")];
  }

  function drawHistory() {
    const all = history.items;
    const keep = (e) => (!ui.historyTask || (e.task_id || RUN_LEVEL) === ui.historyTask)
      && (!ui.historyType || e.type === ui.historyType);
    const items = all.filter(keep);
    const page = Math.min(ui.historyPage, Math.max(0, Math.ceil(items.length / ROWS) - 1));
    const filtered = ui.historyTask || ui.historyType;
    // Redraw only on a change: a redraw would close a filter's open drop-down.
    const key = JSON.stringify([all.length, ui.historyTask, ui.historyType, page, history.truncated]);
    if (key === historyKey) return;
    historyKey = key;
    const download = h("button", { type: "button", id: "history-download", onclick: async () => {
      const parts = [ui.historyTask, ui.historyType].filter(Boolean).map((v) => v.replace(/[^\w.-]+/g, "_"));
      download.disabled = true;
      try {
        // Past the cap the page follows only the first events; a download has them all.
        const events = history.truncated ? (await history.whole()).filter(keep) : items;
        downloadJson(`run-${id}-history${parts.length ? `-${parts.join("-")}` : ""}.json`, events);
      } catch (err) {
        mount(actionOut, errorBox(err));
      } finally {
        download.disabled = false;
      }
    } }, history.truncated ? "Download JSON (every event)" : `Download JSON (${items.length})`);
    mount(historyBox,
      h("div", { class: "toolbar" }, historyFilters(all), download,
        filtered ? h("span", { class: "muted history-count" }, `${items.length} of ${all.length} events`) : null),
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
    // A task that waits (for a signal, a sleep's end, a backoff) is drawn as waiting, not running.
    const shown = run.tasks.map((t) => (t.waiting ? { ...t, status: "waiting" } : t));
    mount(graphBox, drawGraph(tasks, { states: aggregate(tasks, shown), onSelect: select, selected: ui.selected }));
    const rows = attemptsFrom(history.items);
    const pages = Math.ceil(rows.length / ROWS);
    ui.ganttPage = Math.min(ui.ganttPage, Math.max(0, pages - 1));
    const waiting = new Set(run.tasks.filter((t) => t.waiting).map((t) => t.task_id));
    mount(ganttBox, drawGantt(rows, { page: ui.ganttPage, size: ROWS, onSelect: select, waiting }),
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
  let interval = 0, closed = false;
  function restart() {
    if (stop) stop();
    if (closed) return; // an action answered after the page was left: do not poll again
    lastDone = false;
    interval = pollMs();
    stop = every(interval, refresh);
  }
  restart();
  return { stop: () => { closed = true; if (stop) stop(); }, show, runId: id };
}
