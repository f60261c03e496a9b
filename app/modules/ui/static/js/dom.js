// Building DOM without HTML strings: every value lands as a text node or an attribute
// value, so user-provided strings (task names, inputs, errors) can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key.startsWith("on")) {
      throw new Error(`refusing string event handler ${key}`);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/x", class: "btn"}, "text", otherNode). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  return append(el, children);
}

/** An SVG element, same calling convention as `h`. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  return append(el, children);
}

/** Replace the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A status chip, coloured by the status word. */
export function chip(status) {
  return h("span", { class: `chip st-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

/** JSON pretty-printed into a <pre>, as text. */
export function jsonBlock(value, attrs = {}) {
  const text = value === undefined ? "" : JSON.stringify(value, null, 2);
  return h("pre", { class: "code", ...attrs }, text ?? "null");
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const sec = ms / 1000;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 2 : 1)} s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min}m ${Math.round(sec % 60)}s`;
  return `${Math.floor(min / 60)}h ${min % 60}m`;
}

/** Milliseconds between two ISO times; the end defaults to now for running things. */
export function span(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? Date.parse(endIso) : Date.now();
  return end - Date.parse(startIso);
}

const openDialogs = new Set(); // each open dialog's "answer no", for `dismissDialogs`

/** Answer "no" to every open dialog: a dialog belongs to the page it was opened on. */
export function dismissDialogs() {
  for (const dismiss of [...openDialogs]) dismiss();
}

/** A confirmation dialog; resolves true when confirmed. Body may hold extra nodes. */
export function confirmDialog(title, body, confirmLabel = "Confirm", danger = false, validate = null) {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "dialog", "aria-label": title });
    const problem = h("div", { class: "dialog-error", role: "alert" });
    const close = (answer) => {
      openDialogs.delete(dismiss);
      if (dlg.open) dlg.close();
      dlg.remove(); resolve(answer);
    };
    const dismiss = () => close(false);
    const done = (answer) => {
      if (answer && validate) {
        const why = validate();
        if (why) { mount(problem, why); return; }
      }
      close(answer);
    };
    openDialogs.add(dismiss);
    mount(dlg,
      h("h3", {}, title),
      h("div", { class: "dialog-body" }, body),
      problem,
      h("div", { class: "dialog-actions" },
        h("button", { type: "button", class: "ghost", onclick: () => done(false) }, "Cancel"),
        h("button", { type: "button", class: danger ? "danger" : "primary", "data-confirm": "1",
          onclick: () => done(true) }, confirmLabel)));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); dismiss(); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** A problem+json (or any) error as a readable alert box. */
export function errorBox(err) {
  const p = err && err.problem;
  const title = p ? `${p.status ?? ""} ${p.title ?? "Error"}`.trim() : "Error";
  const detail = p ? (p.detail ?? "") : String(err && err.message ? err.message : err);
  const issues = p && Array.isArray(p.errors) ? p.errors : [];
  return h("div", { class: "alert", role: "alert" },
    h("strong", {}, title), detail ? h("span", {}, ": ", detail) : null,
    issues.length ? h("ul", {}, issues.map((i) =>
      h("li", {}, h("code", {}, i.path ?? ""), " ", i.message ?? JSON.stringify(i)))) : null);
}

/** Call `fn` now and every `ms` after it settles, skipping while the tab is hidden; returns stop. */
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch (err) { console.error(err); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
