// Entry point: hash routing between pages, login on 401, theme toggle.

import { auth } from "./api.js";
import { dismissDialogs, h, mount } from "./dom.js";
import * as runs from "./pages/runs.js";
import * as run from "./pages/run.js";
import * as workflows from "./pages/workflows.js";
import * as schedules from "./pages/schedules.js";
import * as system from "./pages/system.js";
import * as workers from "./pages/workers.js";
import { RUN_ROUTE, targetOf } from "./links.js";

const root = document.getElementById("app");
let current = null; // the view on screen: {stop, show?, runId?}
let returnTo = "#/runs";

const ROUTES = [
  [RUN_ROUTE, (m) => run.render(root, targetOf(m))],
  [/^#\/runs(?:\?(.*))?$/, (m) => runs.render(root, new URLSearchParams(m[1] || ""))],
  [/^#\/workflows\/([^/]+)$/, (m) => workflows.renderOne(root, decodeURIComponent(m[1]))],
  [/^#\/workflows$/, () => workflows.render(root)],
  [/^#\/schedules$/, () => schedules.render(root)],
  [/^#\/workers$/, () => workers.render(root)],
  [/^#\/system$/, () => system.render(root)],
  [/^#\/login$/, () => renderLogin()],
];

/** A page's answer to render: nothing, a stop function, or {stop, show, runId}. */
const asView = (view) => (typeof view === "function" ? { stop: view } : view || { stop: () => {} });

function route() {
  dismissDialogs();
  const hash = location.hash || "#/runs";
  const section = hash.split(/[/?]/)[1] || "runs";
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === section);
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.getElementById("sign-out").hidden = !auth.key;
  const inRun = hash.match(RUN_ROUTE);
  if (inRun && current && current.show && current.runId === targetOf(inRun).id) {
    current.show(targetOf(inRun)); // another task or attempt of the run on screen
    return;
  }
  if (current) { current.stop(); current = null; }
  for (const [pattern, view] of ROUTES) {
    const m = hash.match(pattern);
    if (m) { current = asView(view(m)); return; }
  }
  location.hash = "#/runs";
}

function renderLogin() {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off",
    required: true, placeholder: "API key" });
  const form = h("form", { class: "card login", onsubmit: (e) => {
    e.preventDefault();
    auth.key = input.value.trim();
    location.hash = returnTo === "#/login" ? "#/runs" : returnTo;
  } },
  h("h2", {}, "Sign in"),
  h("p", { class: "muted" }, "This server asks for an API key. It is kept for this browser session only."),
  h("label", { for: "api-key" }, "API key"), input,
  h("button", { type: "submit", class: "primary" }, "Sign in"));
  mount(root, form);
  input.focus();
}

auth.onUnauthorized = () => {
  if (location.hash !== "#/login") returnTo = location.hash || "#/runs";
  auth.key = "";
  location.hash = "#/login";
};

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

applyTheme(localStorage.getItem("treadle.theme"));
document.getElementById("theme-toggle").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  localStorage.setItem("treadle.theme", next);
  applyTheme(next);
});
document.getElementById("sign-out").addEventListener("click", () => {
  auth.key = "";
  returnTo = "#/runs";
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
